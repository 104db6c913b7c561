"""Pick-up latency: an idle `dispara worker`, one job inserted at a time; time from the insert's COMMIT
to the job's `started_at` (set by the claim statement). Prints p50/p99/max.

    python bench/pickup.py            # 200 jobs, outbox sender
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psycopg

from dispara import summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, fresh_database, seed, worker_env, write_config

INSERT_MESSAGE = (
    "INSERT INTO message_logs (tenant_id, campaign_id, phone_number, message_content, instance_name, status, "
    "queued_at) SELECT tenant_id, id, %s, 'Olá', 'bench-00', 'queued', now() FROM campaigns RETURNING id, "
    "tenant_id, campaign_id"
)
INSERT_JOB = (
    "INSERT INTO jobs (tenant_id, payload, instance, campaign_id, message_id, max_attempts) "
    "VALUES (%s, %s, 'bench-00', %s, %s, 3) RETURNING id"
)


def wait_started(
    conn: psycopg.Connection[tuple[object, ...]], job_id: int, timeout: float = 10.0
) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT started_at, status FROM jobs WHERE id = %s", (job_id,)).fetchone()
        conn.commit()
        if row and row[0] is not None and row[1] == "completed":
            assert isinstance(row[0], datetime)
            return row[0]
        time.sleep(0.0005)
    raise TimeoutError(f"job {job_id} was not picked up within {timeout}s")


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered):.1f} ms  p99 {p99:.1f} ms  max {ordered[-1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with fresh_database() as dsn, tempfile.TemporaryDirectory(prefix="dispara-pickup-") as tmp:
        seed(dsn, 0, 1)
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE campaigns SET total_messages = %s", (args.jobs + 1,))
            conn.commit()
        config = write_config(Path(tmp) / "dispara.yaml", poll_interval_s=1.0)
        worker = subprocess.Popen(
            [sys.executable, "-m", "dispara", "--config", str(config), "worker"],
            env=worker_env(dsn, Path(tmp) / "data"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        latencies: list[float] = []  # from the COMMIT's return (the job is visible) to started_at
        with_commit: list[float] = []  # the same, counted from just before the COMMIT was sent
        try:
            with psycopg.connect(dsn) as conn:
                for i in range(args.jobs + 1):  # the first one only warms the worker up
                    message_id, tenant_id, campaign_id = conn.execute(
                        INSERT_MESSAGE, (f"55119{i:08d}",)
                    ).fetchone()  # type: ignore[misc]
                    summary.add_ingested(conn, tenant_id, campaign_id, {"bench-00": 1}, "queued")
                    payload = json.dumps(
                        {
                            "run_location": "supabase",
                            "task_type": "send-message",
                            "data": {"message_id": message_id, "campaign_id": str(campaign_id)},
                        }
                    )
                    row = conn.execute(INSERT_JOB, (tenant_id, payload, campaign_id, message_id)).fetchone()
                    assert row is not None
                    before = time.time()
                    conn.commit()
                    committed = time.time()
                    started = wait_started(conn, int(row[0]), timeout=30 if i == 0 else 10)
                    if i:
                        latencies.append((started.timestamp() - committed) * 1000)
                        with_commit.append((started.timestamp() - before) * 1000)
                    time.sleep(random.uniform(0.01, 0.03))  # let the worker go idle again
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        print(f"pick-up latency over {len(latencies)} jobs:")
        print(f"  COMMIT returned -> started_at:   {percentiles(latencies)}")
        print(f"  COMMIT sent     -> started_at:   {percentiles(with_commit)}  (includes the fsync)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
