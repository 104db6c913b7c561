"""Drain benchmark: seed N message jobs (no delays) across K instances, run ONE `dispara worker --once`,
and print jobs/s from the worker's first claim to its last completion, plus the process wall time.

    python bench/drain.py 50000                  # outbox sender
    python bench/drain.py 20000 --evolution      # EvolutionSender against the local stub
    python bench/drain.py 50000 --mapped         # dispara's names and renamed tables, alternated

Then, with the `bench` extra installed, PgQueuer drains N no-op jobs on the same server (several batch
sizes, ours among them) and the ratios are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    MAPPED,
    ROOT,
    evolution_stub,
    fresh_database,
    postgres_cpu,
    seed,
    stub_sends,
    worker_env,
    write_config,
)


@dataclass
class Run:
    stdout: str
    wall_s: float
    worker_cpu_s: float
    postgres_cpu_s: float | None
    delivered: int | None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=None, help="default: worker.concurrency (4)")
    parser.add_argument("--batch-size", type=int, default=100, help="worker.batch_size (run length)")
    parser.add_argument("--evolution", action="store_true", help="send through the local Evolution stub")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (the target is for one)")
    parser.add_argument("--profile", metavar="FILE", help="run the worker under cProfile, stats to FILE")
    parser.add_argument("--py-spy", metavar="FILE", help="sample the worker with py-spy (collapsed stacks)")
    parser.add_argument(
        "--mapped", action="store_true", help="also run on renamed tables (config tables:), alternating"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --mapped: runs of each kind")
    return parser.parse_args()


def run_worker(
    args: argparse.Namespace, dsn: str, tmp: Path, evolution_url: str | None, mapping: dict[str, str] | None
) -> Run:
    config = write_config(tmp / "dispara.yaml", tables=mapping, batch_size=args.batch_size)
    command = [sys.executable]
    if args.py_spy:
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--gil", "-f", "raw", "-o", args.py_spy, "-r", "200", "--", *command]
    if args.profile:
        command += ["-m", "cProfile", "-o", args.profile]
    command += ["-m", "dispara", "--config", str(config), "worker", "--once"]
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    pg_before = postgres_cpu(dsn)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # cumulative: --mapped runs several
    start = time.perf_counter()
    env = worker_env(dsn, tmp / "data", evolution_url)
    procs = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(args.workers)
    ]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"worker failed ({proc.returncode}):\n{out}{err}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_after = postgres_cpu(dsn)
    pg = pg_after - pg_before if pg_after is not None and pg_before is not None else None
    delivered = stub_sends(evolution_url) if evolution_url else None
    said = " | ".join(out.strip() for out, _ in outputs)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return Run(said, wall, cpu, pg, delivered)


PGQUEUER_BATCHES = (100, 1000, 5000)  # it gets faster with bigger batches: every one is shown


def pgqueuer_drain(dsn: str, n: int, batch_size: int) -> dict[int, float]:
    """PgQueuer's no-op jobs/s on this database per batch size; empty without the `bench` extra."""
    if importlib.util.find_spec("pgqueuer") is None:
        print("pgqueuer not installed (pip install -e '.[bench]'): no comparison")
        return {}
    script = Path(__file__).with_name("_pgqueuer.py")
    rates = {}
    for batch in sorted({batch_size, *PGQUEUER_BATCHES}):
        command = [sys.executable, str(script), dsn, str(n), str(batch)]
        rates[batch] = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        print(f"pgqueuer no-op drain, batch {batch}: {rates[batch]:,.0f} jobs/s (first job run -> all acked)")
    return rates


def compare(args: argparse.Namespace, dsn: str, ours: float) -> None:
    """The summary checked against message_logs, then PgQueuer on the same server."""
    from dispara import summary

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT id FROM campaigns").fetchone()
        assert row is not None
        differences = summary.verify(conn, row[0])
    print("summary: " + (f"DISAGREES: {differences}" if differences else "agrees with message_logs"))
    theirs = pgqueuer_drain(dsn, args.n, args.batch_size)
    if theirs:
        best = max(theirs, key=lambda b: theirs[b])
        print(
            f"ratio: {ours / theirs[args.batch_size]:.2f}x PgQueuer's no-op drain at the same batch, "
            f"{ours / theirs[best]:.2f}x its best (batch {best})"
        )


def report(args: argparse.Namespace, dsn: str, run: Run) -> tuple[float, float]:
    """Prints the run's figures; returns its jobs/s and worker CPU µs per job."""
    from dispara.db.tables import compose

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            compose(
                "SELECT count(*) FILTER (WHERE status = 'completed'), "
                "extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM {jobs}"
            )
        ).fetchone()
        counters = conn.execute(
            compose("SELECT status, sent_count, failed_count FROM {campaigns}")
        ).fetchone()
    assert row is not None
    done, busy = int(row[0]), float(row[1] or 0.0)
    sender = "evolution stub (HTTP)" if args.evolution else "outbox"
    print(
        f"sender: {sender}; {args.workers} worker process(es); concurrency {args.concurrency or 'default'}; "
        f"batch {args.batch_size}"
    )
    print(f"worker said: {run.stdout}")
    print(f"completed {done}/{args.n}; campaign (status, sent, failed) = {counters}")
    if run.delivered is not None:
        print(f"stub received {run.delivered} successful sends")
    print(f"throughput: {done / busy:,.0f} jobs/s (first claim -> last completion, {busy:.2f}s)")
    print(f"wall: {run.wall_s:.2f}s for the worker process ({done / run.wall_s:,.0f} jobs/s incl. start-up)")
    print(f"worker CPU: {run.worker_cpu_s:.2f}s ({run.worker_cpu_s / max(done, 1) * 1e6:.0f} µs per job)")
    if run.postgres_cpu_s is not None:
        per_job = run.postgres_cpu_s / max(done, 1) * 1e6
        print(f"postgres CPU: {run.postgres_cpu_s:.2f}s ({per_job:.0f} µs per job)")
    return done / busy, run.worker_cpu_s / max(done, 1) * 1e6


def one(args: argparse.Namespace, mapping: dict[str, str] | None) -> tuple[float, float]:
    """One seeded database drained once: its jobs/s and worker CPU µs per job."""
    with fresh_database(mapping) as dsn, tempfile.TemporaryDirectory(prefix="dispara-drain-") as tmp:
        started = time.perf_counter()
        seed(dsn, args.n, args.instances)
        print(
            f"seeded {args.n} jobs across {args.instances} instances in {time.perf_counter() - started:.1f}s"
            + (" (mapped table names)" if mapping else "")
        )
        if args.evolution:
            with evolution_stub() as url:
                run = run_worker(args, dsn, Path(tmp), url, mapping)
        else:
            run = run_worker(args, dsn, Path(tmp), None, mapping)
        figures = report(args, dsn, run)
        if mapping is None and not args.mapped:
            compare(args, dsn, figures[0])
        return figures


def main() -> int:
    args = parse_args()
    if not args.mapped:
        one(args, None)
        return 0
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):  # alternated, so a change in the machine's load hits both alike
        for mapped in (False, True):
            runs[mapped].append(one(args, MAPPED if mapped else None))
    for i, what in ((0, "jobs/s"), (1, "worker CPU µs per job")):
        plain, renamed = (sorted(r[i] for r in runs[k])[len(runs[k]) // 2] for k in (False, True))
        print(
            f"median {what}: dispara's names {plain:,.0f}, mapped {renamed:,.0f} ({renamed / plain - 1:+.1%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
