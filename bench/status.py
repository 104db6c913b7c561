"""Status latency by campaign size: campaigns of 10k, 100k and 1M messages (60% sent, a third of those
delivered, paused), each read with `dispara.status.snapshot` (what `dispara status` and serve's
`/campaigns/{id}` run) while ONE `dispara worker` drains another campaign on the same server.

    python bench/status.py                       # sizes 10000 100000 1000000
    python bench/status.py 10000 100000 --reads 500

Aim: p50 flat within 2x across sizes, p99 at most 30 ms. `status --verify` (a full count) is timed once each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, fresh_database, seed, worker_env, write_config

from dispara import summary
from dispara.status import snapshot


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--reads", type=int, default=1000, help="snapshots timed per campaign")
    parser.add_argument("--drained", type=int, default=300_000, help="messages the worker sends meanwhile")
    return parser.parse_args()


def prepare(dsn: str, n: int) -> UUID:
    """A paused campaign of n messages, 60% sent (a third of those delivered), the rest still queued."""
    cid = seed(dsn, n, 10, tenant="default")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE campaigns SET status = 'paused', sent_count = %s WHERE id = %s", (n * 6 // 10, cid)
        )
        conn.execute(
            "UPDATE message_logs SET status = 'sent', sent_at = now() - (seq %% 600) * interval '1 second', "
            "delivered_at = CASE WHEN seq %% 3 = 0 THEN now() END WHERE campaign_id = %s AND seq %% 10 < 6",
            (cid,),
        )
        conn.execute(
            "UPDATE jobs j SET status = 'completed', finished_at = now() FROM message_logs m "
            "WHERE m.id = j.message_id AND m.campaign_id = %s AND m.status = 'sent'",
            (cid,),
        )
        conn.commit()
        while summary.compact(conn):
            pass
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return UUID(cid)


def time_reads(dsn: str, cid: UUID, reads: int) -> tuple[list[float], float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT tenant_id FROM campaigns WHERE id = %s", (cid,)).fetchone()
        assert row is not None
        for _ in range(20):  # warm the connection's plans
            snapshot(conn, row[0], cid)
        times = []
        for _ in range(reads):
            started = time.perf_counter()
            snapshot(conn, row[0], cid)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        differences = summary.verify(conn, cid)
        verify_s = time.perf_counter() - started
    assert not differences, differences
    return times, verify_s


def completed(dsn: str, campaign_id: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'completed' AND campaign_id = %s", (campaign_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_draining(dsn: str, campaign_id: str) -> None:
    deadline = time.monotonic() + 60
    while completed(dsn, campaign_id) == 0:
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not start draining within 60 s")
        time.sleep(0.1)


def main() -> int:
    args = parse_args()
    with fresh_database() as dsn, tempfile.TemporaryDirectory(prefix="dispara-status-") as tmp:
        campaigns = {n: prepare(dsn, n) for n in args.sizes}
        drained = seed(dsn, args.drained, 10)
        config = write_config(Path(tmp) / "dispara.yaml")
        command = [sys.executable, "-m", "dispara", "--config", str(config), "worker", "--once"]
        env = worker_env(dsn, Path(tmp) / "data")
        worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait_draining(dsn, drained)
            results = {n: time_reads(dsn, cid, args.reads) for n, cid in campaigns.items()}
            sent = completed(dsn, drained)
            draining = worker.poll() is None
        finally:
            worker.terminate()
            worker.wait(60)
        report(results, draining, sent)
    return 0


def report(results: dict[int, tuple[list[float], float]], draining: bool, completed: int) -> None:
    print(f"worker still draining at the end: {draining} ({completed:,} jobs completed by then)")
    print(f"{'messages':>10}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  {'--verify ms':>11}")
    p50s: list[float] = []
    for n, (times, verify_s) in results.items():
        ms = sorted(t * 1000 for t in times)
        p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        p50s.append(p50)
        print(f"{n:>10,}  {p50:>7.2f}  {p99:>7.2f}  {ms[-1]:>7.2f}  {verify_s * 1000:>11.0f}")
    print(f"p50 of the largest campaign / of the smallest: {p50s[-1] / p50s[0]:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
