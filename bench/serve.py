"""Deliveries per second one `dispara serve` sustains, and latency per delivery (p50/p99).

A QStash campaign of N messages over I instances; this script plays QStash: signed deliveries, one in
flight per instance (flow-control parallelism 1), I instances at once. Evolution is the local stub in its
own process, answering at once.

    python bench/serve.py 5000 --instances 32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from dispara import summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, evolution_stub, fresh_database, post_lanes, postgres_cpu, worker_env
from tests.stubs.qstash_stub import DEV_CURRENT_KEY, DEV_NEXT_KEY, sign

API_KEY = "bench-serve-key-0123456789"


def seed_qstash(dsn: str, n: int, instances: int) -> tuple[str, str, list[tuple[int, str, str]]]:
    """A processing QStash campaign with n queued messages; returns its id, the tenant and the messages."""
    with psycopg.connect(dsn) as conn:
        tid = conn.execute("INSERT INTO tenants (name) VALUES ('default') RETURNING id").fetchone()[0]  # type: ignore[index]
        names = [f"bench-{i:02d}" for i in range(instances)]
        cid = conn.execute(
            "INSERT INTO campaigns (tenant_id, name, status, total_messages, instances, transport, "
            "idempotency_key) VALUES (%s, 'bench', 'processing', %s, %s, 'qstash', %s) RETURNING id",
            (tid, n, names, uuid.uuid4().hex),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO instances (tenant_id, name) SELECT %s, x FROM unnest(%s::text[]) x", (tid, names)
        )
        rows = conn.execute(
            "INSERT INTO message_logs (tenant_id, campaign_id, phone_number, message_content, instance_name, "
            "status, queued_at, seq) SELECT %s, %s, '5511' || lpad(g::text, 9, '0'), 'Olá, oferta ' || g, "
            "(%s::text[])[1 + g %% %s], 'queued', now(), g FROM generate_series(1, %s) g "
            "RETURNING id, phone_number, instance_name",
            (tid, cid, names, instances, n),
        ).fetchall()
        summary.add_ingested(conn, tid, cid, Counter(r[2] for r in rows), "queued")
        conn.execute("ANALYZE")
    return str(cid), str(tid), [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def play_qstash(url: str, per_instance: dict[str, list[bytes]]) -> tuple[list[float], float]:
    """Deliver every instance's messages one after the other, all instances at once (signed beforehand);
    latencies and wall time.
    """
    target = f"{url}/qstash/messages"
    lanes = [[(dict(_headers(target, raw)), raw) for raw in bodies] for bodies in per_instance.values()]
    return post_lanes(url, "/qstash/messages", lanes)


def _headers(target: str, raw: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("Upstash-Signature", sign(DEV_CURRENT_KEY, target, raw)),
        ("Upstash-Retried", "0"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("--instances", type=int, default=32)
    args = parser.parse_args()
    with fresh_database() as dsn, evolution_stub() as evo, tempfile.TemporaryDirectory() as tmp:
        cid, tid, messages = seed_qstash(dsn, args.n, args.instances)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = Path(tmp) / "dispara.yaml"
        config.write_text(json.dumps({"evolution": {"typing_delay_ms": 0}}), encoding="utf-8")
        env = worker_env(dsn, Path(tmp) / "data", evo) | {
            "DISPARA_CONFIG": str(config),
            "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_KEY,
            "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_KEY,
            "DISPARA_PUBLIC_URL": url,
            "DISPARA_API_KEY": API_KEY,
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "dispara", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("dispara serve did not start")
                time.sleep(0.1)
            per_instance: dict[str, list[bytes]] = {}
            for mid, phone, instance in messages:
                body = {"message_id": mid, "phone_number": phone, "message_content": "Olá",
                        "instance_name": instance, "campaign_id": cid, "tenant_id": tid}  # fmt: skip
                per_instance.setdefault(instance, []).append(json.dumps(body).encode())
            serve_cpu, pg_cpu = process_cpu(serve.pid), postgres_cpu(dsn)
            latencies, wall = play_qstash(url, per_instance)
            serve_cpu, pg_cpu = process_cpu(serve.pid) - serve_cpu, (postgres_cpu(dsn) or 0) - (pg_cpu or 0)
        finally:
            serve.terminate()
            serve.wait(30)
        with psycopg.connect(dsn) as conn:
            sent = conn.execute("SELECT sent_count FROM campaigns WHERE id = %s", (cid,)).fetchone()[0]  # type: ignore[index]
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{args.n} deliveries over {args.instances} instances in {wall:.2f} s: "
        f"{args.n / wall:,.0f} deliveries/s; "
        f"latency p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms; "
        f"sent_count {sent}; CPU per delivery: serve {serve_cpu / args.n * 1e6:.0f} µs, "
        f"PostgreSQL {pg_cpu / args.n * 1e6:.0f} µs; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
