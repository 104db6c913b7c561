"""Deleting a big campaign and pruning a big queue: `python bench/delete.py [N]` (default 1,000,000).

A fresh database with two campaigns of N messages and jobs: a finished one to delete and one whose jobs a
"worker" keeps touching meanwhile (a row update and commit every 10 ms on its own connection, as a worker's
completions do). Times `dispara campaign delete --yes` as a whole process, then the retention prune of N
completed jobs (`redrive`'s prune, in its batches), and prints the worker's longest wait during each: what
the deletion made it wait for, if anything (its longest wait with nothing else running is printed first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psycopg
from _common import fresh_database, seed


class Worker(threading.Thread):
    """Updates one job of the other campaign every 10 ms; `longest` is the slowest round trip seen."""

    def __init__(self, dsn: str, campaign: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.campaign = dsn, campaign
        self.stop, self.longest = threading.Event(), 0.0

    def run(self) -> None:
        with psycopg.connect(self.dsn) as conn:
            job = conn.execute("SELECT min(id) FROM jobs WHERE campaign_id = %s", (self.campaign,)).fetchone()
            while not self.stop.wait(0.01):
                started = time.perf_counter()
                conn.execute("UPDATE jobs SET updated_at = now() WHERE id = %s", job)
                conn.commit()
                self.longest = max(self.longest, time.perf_counter() - started)


def during(dsn: str, campaign: str, work: Callable[[], None]) -> tuple[float, float]:
    """Seconds `work` took, and the worker's longest wait meanwhile."""
    worker = Worker(dsn, campaign)
    worker.start()
    time.sleep(0.2)
    worker.longest = 0.0
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    worker.stop.set()
    worker.join()
    return elapsed, worker.longest


def waited(seconds: float) -> str:
    return f"worker's longest wait {seconds * 1000:.0f} ms"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    from dispara.queue.redrive import prune

    with fresh_database() as dsn:
        doomed, busy = seed(dsn, n, 10), seed(dsn, n, 10, tenant="busy")
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE campaigns SET status = 'completed' WHERE id = %s", (doomed,))
        _, idle = during(dsn, busy, lambda: time.sleep(3))
        print(f"nothing else running, 3 s: {waited(idle)}")
        env = dict(os.environ, DATABASE_URL=dsn)
        delete = [sys.executable, "-m", "dispara", "campaign", "delete", doomed, "--yes"]
        elapsed, wait = during(
            dsn, busy, lambda: subprocess.run(delete, env=env, check=True, capture_output=True)
        )
        print(f"campaign delete of {n:,} messages and jobs: {elapsed:.1f}s  {waited(wait)}")
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "UPDATE jobs SET status = 'completed', finished_at = now() - interval '40 days' "
                "WHERE id <> (SELECT min(id) FROM jobs)"
            )
            tenant = conn.execute("SELECT id FROM tenants WHERE name = 'busy'").fetchone()[0]  # type: ignore[index]

        def pruning() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                prune(conn, tenant, 30)

        elapsed, wait = during(dsn, busy, pruning)
        print(f"retention prune of {n - 1:,} completed jobs: {elapsed:.1f}s  {waited(wait)}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
