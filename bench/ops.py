"""Operations benchmark: the cost of the worker's log lines and metrics, and of a scrape's queue read.

python bench/ops.py 1000000      # queue of N pending jobs across 10 instances
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import fresh_database, seed

from dispara import logs, metrics
from dispara.config import Settings
from dispara.queue.complete import BatchResult
from dispara.queue.completer import describe, log_fields
from dispara.queue.model import ClaimedJob, Outcome


def outcomes(n: int) -> list[Outcome]:
    campaign = uuid.uuid4()
    now = datetime.now(UTC)
    payload = {"task_type": "send-message"}
    jobs = [
        ClaimedJob(i, f"bench-{i % 10:02d}", payload, 1, 3, campaign, i, now, 0.0, 0.0, "queued", *[None] * 2,
                   "text", None, None)
        for i in range(n)
    ]  # fmt: skip
    return [
        Outcome(job, "sent" if job.id % 10 else "failed", error_kind=None if job.id % 10 else "permanent")
        for job in jobs
    ]


def per_item_us(label: str, n: int, run: object) -> None:
    assert callable(run)
    started = time.perf_counter()
    run()
    print(f"{label}: {(time.perf_counter() - started) / n * 1e6:.2f} µs each ({n:,})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs", type=int, nargs="?", default=1_000_000)
    args = parser.parse_args()

    batch = outcomes(20_000)
    secrets = ["evo-key-0123456789", "db-password-42"]
    for fmt in (logs.JsonFormatter(secrets), logs.TextFormatter(secrets)):
        records = [
            logging.LogRecord("dispara.worker", logging.INFO, __file__, 1, "%s", (describe(o),), None)
            for o in batch
        ]
        for record, o in zip(records, batch, strict=True):
            record.__dict__.update(log_fields(o, "host:1:abcd"))
        per_item_us(
            f"{type(fmt).__name__}.format", len(records), lambda f=fmt, r=records: [f.format(x) for x in r]
        )
    per_item_us("metrics.record", len(batch), lambda: metrics.record(BatchResult(applied=batch)))

    with fresh_database() as dsn:
        started = time.perf_counter()
        seed(dsn, args.jobs, 10)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE jobs")  # what autovacuum does to a queue at rest
        print(f"seeded {args.jobs:,} pending jobs in {time.perf_counter() - started:.1f}s")
        collector = metrics.QueueCollector(Settings(database_url=dsn, data_dir=Path("/tmp")))
        times = []
        for _ in range(7):
            started = time.perf_counter()
            collector.read()
            times.append(time.perf_counter() - started)
        collector.close()
        depth = sum(n for _i, n in collector.depth)
        print(
            f"queue read at scrape ({depth:,} pending): first {times[0] * 1000:.1f} ms, "
            f"median of the next 6 {statistics.median(times[1:]) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
