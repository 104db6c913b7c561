"""Evolution webhook events per second one `dispara serve` records durably, and the lag to the counters.

A campaign of N sent messages; this script plays Evolution: SERVER_ACK / DELIVERY_ACK / READ receipts for
each (10% posted twice, 10% of messages in reverse order), C requests in flight. Every 200 means the event
is committed in the inbox; the lag is from the last answer until the campaign counters show every receipt,
and per event from its arrival to its processing (the inbox's own timestamps).

    python bench/webhooks.py 5000 --concurrency 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, fresh_database, post_lanes, postgres_cpu, seed, worker_env
from bench.serve import free_port, process_cpu
from tests.stubs.webhook_emitter import receipt_plan

SECRET = "bench-webhook-secret-0123456789abcdef"


def mark_sent(dsn: str, cid: str) -> list[tuple[str, str]]:
    """Every message of the campaign sent, with a key id as Evolution gives them."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "UPDATE message_logs SET status = 'sent', sent_at = now(), "
            "evolution_key = '3EB0' || lpad(upper(to_hex(id)), 18, '0') WHERE campaign_id = %s "
            "RETURNING instance_name, evolution_key",
            (cid,),
        ).fetchall()
        conn.execute("DELETE FROM jobs")
        conn.execute("ANALYZE")
    return [(str(i), str(k)) for i, k in rows]


def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float]:
    """POST every body once over `concurrency` keep-alive connections; latencies and wall time."""
    headers = {"Content-Type": "application/json", "X-Dispara-Secret": SECRET}
    lanes = [[(headers, raw) for raw in bodies[i::concurrency]] for i in range(concurrency)]
    return post_lanes(url, "/evolution/webhook", lanes)


def wait_serve(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("dispara serve did not start")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int, nargs="?", default=5000, help="messages (about 2.7 events each)")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with fresh_database() as dsn, tempfile.TemporaryDirectory() as tmp:
        cid = seed(dsn, args.n, args.instances)
        plan = receipt_plan(mark_sent(dsn, cid))
        bodies = [json.dumps(b).encode() for b in plan.bodies]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = worker_env(dsn, Path(tmp) / "data") | {
            "DISPARA_PUBLIC_URL": url,
            "DISPARA_API_KEY": "bench-serve-key-0123456789",
            "EVOLUTION_WEBHOOK_SECRET": SECRET,
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "dispara", "serve", "--port", str(port)], env=env, cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_serve(url)
            serve_cpu, pg_cpu = process_cpu(serve.pid), postgres_cpu(dsn)
            latencies, wall = post_all(url, bodies, args.concurrency)
            answered = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as conn:
                while True:
                    row = conn.execute(
                        "SELECT delivered_count, read_count FROM campaigns WHERE id = %s", (cid,)
                    ).fetchone()
                    if row == (len(plan.delivered), len(plan.read)):
                        break
                    if time.perf_counter() - answered > 300:
                        raise RuntimeError(f"counters stuck at {row}")
                    time.sleep(0.01)
                drained = time.perf_counter() - answered
                lags = conn.execute(
                    "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP "
                    "(ORDER BY extract(epoch FROM processed_at - received_at)) FROM evolution_inbox"
                ).fetchone()
            serve_cpu, pg_cpu = process_cpu(serve.pid) - serve_cpu, (postgres_cpu(dsn) or 0) - (pg_cpu or 0)
        finally:
            serve.terminate()
            serve.wait(30)
    n = len(bodies)
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    lag50, lag99 = (lags[0] if lags else None) or [0.0, 0.0]
    print(
        f"{n} events ({args.n} messages, {args.concurrency} in flight) recorded in {wall:.2f} s: "
        f"{n / wall:,.0f} events/s; answer p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms; "
        f"counters exact {drained:.2f} s after the last answer; arrival to processing p50 "
        f"{lag50 * 1000:.0f} ms, p99 {lag99 * 1000:.0f} ms; "
        f"CPU per event: serve {serve_cpu / n * 1e6:.0f} µs, PostgreSQL {pg_cpu / n * 1e6:.0f} µs; "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
