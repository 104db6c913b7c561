"""Claim statement cost: seed N due jobs per tenant across K instances each, then time the worker's claim
(`slots` runs of up to `run_size` jobs) many times, each in a transaction rolled back so that every round
claims the same. Prints the median and p90 per claim, and how many tenants the first claim served.

    python bench/claim.py                        # one tenant, 20000 jobs on 10 instances
    python bench/claim.py --tenants 20 --slots 4 # many tenants: each round serves the least recently claimed
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from uuid import UUID

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import fresh_database, seed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int, nargs="?", default=20000, help="due jobs per tenant")
    parser.add_argument("--instances", type=int, default=10, help="instances per tenant")
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--slots", type=int, default=4, help="free sender slots (worker.concurrency)")
    parser.add_argument("--run-size", type=int, default=100, help="worker.batch_size")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    from dispara.queue.claim import Claimer, claim

    with fresh_database() as dsn:
        for t in range(args.tenants):
            seed(dsn, args.n, args.instances, tenant=f"bench-{t:03d}")
        with psycopg.connect(dsn) as conn:
            tenants = [UUID(str(r[0])) for r in conn.execute("SELECT id FROM tenants ORDER BY name")]
            claimer = Claimer(tenants, "bench", 30.0, ["send-message"])
            times: list[float] = []
            served = jobs = n_runs = 0
            for i in range(args.rounds):
                start = time.perf_counter()
                runs = claim(conn, claimer, slots=args.slots, run_size=args.run_size)
                times.append(time.perf_counter() - start)
                if i == 0:
                    served = len({r.tenant_id for r in runs})
                    jobs, n_runs = sum(len(r.jobs) for r in runs), len(runs)
                conn.rollback()
    times.sort()
    median, p90 = statistics.median(times), times[int(len(times) * 0.9)]
    print(f"{args.tenants} tenant(s) x {args.n} jobs on {args.instances} instances; slots {args.slots}")
    print(f"first claim: {jobs} jobs in {n_runs} runs, {served} tenant(s) served")
    per_job = median / jobs * 1e6
    print(f"claim: median {median * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms ({per_job:.1f} µs per job)")


if __name__ == "__main__":
    main()
