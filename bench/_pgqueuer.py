"""PgQueuer's drain of N no-op jobs on a database, for bench/drain.py's comparison (the `bench` extra).

python bench/_pgqueuer.py DSN N [BATCH]      # prints jobs/s (first job run -> drained)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time


async def drain(dsn: str, n: int, batch_size: int) -> float:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(dsn)
    driver = AsyncpgDriver(conn)
    queries = Queries(driver)
    with contextlib.suppress(asyncpg.exceptions.DuplicateObjectError):  # installed by an earlier run
        await queries.install()
    for start in range(0, n, 10_000):
        k = min(10_000, n - start)
        await queries.enqueue(["noop"] * k, [None] * k, [0] * k)
    qm = QueueManager(queries)

    runs: list[float] = []

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        runs.append(time.perf_counter())

    await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)  # returns once all are acknowledged
    drained = time.perf_counter()
    await conn.close()
    return len(runs) / (drained - min(runs))


def main() -> int:
    dsn, n = sys.argv[1], int(sys.argv[2])
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    print(f"{asyncio.run(drain(dsn, n, batch)):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
