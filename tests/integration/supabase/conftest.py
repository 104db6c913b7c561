"""Supabase as the tests stand it up on a plain PostgreSQL: its client roles, a recording net.http_post in
place of pg_net, a minimal Vault; and the PG15 cluster with pg_cron preloaded that `.ci/run` starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from dispara.db import migrate

Conn = psycopg.Connection[Any]
PGCRON_ENV = "DISPARA_TEST_PGCRON_URL"
DISPATCH_KEY = "dispatch-key-0123456789"

# Supabase's roles: PostgREST logs in as authenticator and switches to anon or authenticated per request.
ROLES_SQL = """
DO $$
BEGIN
    CREATE ROLE anon NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
"""
# What Supabase's default privileges give the client roles on everything in public.
GRANTS_SQL = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
"""

# Test-only stand-in for pg_net: records each request instead of queueing it for a background worker.
FAKE_NET_SQL = """
CREATE SCHEMA net;
CREATE TABLE net.calls (
    id bigserial PRIMARY KEY, url text, body jsonb, params jsonb, headers jsonb,
    timeout_milliseconds int, relayed_status int
);
CREATE FUNCTION net.http_post(
    url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}',
    headers jsonb DEFAULT '{"Content-Type": "application/json"}', timeout_milliseconds int DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.calls (url, body, params, headers, timeout_milliseconds)
    VALUES (url, body, params, headers, timeout_milliseconds) RETURNING id;
$$;
"""

# Test-only stand-in for Supabase Vault: the two functions and the view dispara uses, unencrypted.
FAKE_VAULT_SQL = """
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text UNIQUE, secret text NOT NULL, description text
);
CREATE VIEW vault.decrypted_secrets AS SELECT id, name, secret AS decrypted_secret FROM vault.secrets;
CREATE FUNCTION vault.create_secret(
    new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '', new_key_id uuid DEFAULT NULL
) RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO vault.secrets (name, secret, description) VALUES (new_name, new_secret, new_description)
    RETURNING id;
$$;
CREATE FUNCTION vault.update_secret(
    secret_id uuid, new_secret text DEFAULT NULL, new_name text DEFAULT NULL,
    new_description text DEFAULT NULL, new_key_id uuid DEFAULT NULL
) RETURNS void LANGUAGE sql AS $$
    UPDATE vault.secrets SET secret = coalesce(new_secret, secret) WHERE id = secret_id;
$$;
"""


def supabase_like(conn: Conn) -> None:
    """Give a migrated database Supabase's roles and grants."""
    conn.execute(ROLES_SQL)
    conn.execute(GRANTS_SQL)
    conn.commit()


def calls(conn: Conn) -> list[dict[str, Any]]:
    conn.commit()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM net.calls ORDER BY id").fetchall()
    conn.commit()
    return rows


@pytest.fixture
def supa(db_dsn: str) -> Iterator[Conn]:
    """A migrated database with Supabase's roles and a recording net.http_post."""
    with psycopg.connect(db_dsn) as conn:
        supabase_like(conn)
        conn.execute(FAKE_NET_SQL)
        conn.commit()
        yield conn


def require_pgcron() -> str:
    """The pg_cron cluster's URL; skips the test when there is none."""
    url = os.environ.get(PGCRON_ENV)
    if not url:
        pytest.skip(
            f"{PGCRON_ENV} is not set: these tests need PostgreSQL 15 with pg_cron preloaded "
            "(apt-get install postgresql-15-cron; .ci/pgcron-cluster start DIR PORT prints the URL)"
        )
    return url


def _reset(conn: Conn) -> None:
    """The pg_cron database back to empty: cron runs in this one database, so tests share it in turn."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
    conn.execute("DELETE FROM cron.job_run_details")
    conn.execute("DROP SCHEMA IF EXISTS public, net, vault, dispara_private CASCADE")
    conn.execute("CREATE SCHEMA public")
    conn.execute(ROLES_SQL)


@contextlib.contextmanager
def cron_database(url: str) -> Iterator[Conn]:
    """The pg_cron cluster's database, migrated, Supabase-like, with the recording net.http_post."""
    with psycopg.connect(url, autocommit=True) as admin:
        _reset(admin)
        admin.execute(FAKE_NET_SQL)
    with psycopg.connect(url) as conn:
        migrate.apply(conn)
        supabase_like(conn)
        yield conn


@pytest.fixture
def pgcron_url() -> str:
    return require_pgcron()


@pytest.fixture
def cron_db(pgcron_url: str) -> Iterator[Conn]:
    with cron_database(pgcron_url) as conn:
        yield conn


class PgNetRelay:
    """Plays pg_net's background worker: POSTs each recorded net.http_post request to its URL, after
    the transaction that made it has committed (only then is the row visible here), and keeps the answer.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pg_net-relay", daemon=True)

    def __enter__(self) -> PgNetRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn, httpx.Client() as http:
            while not self.stop.wait(0.05):
                pending = conn.execute(
                    "SELECT id, url, body, headers, timeout_milliseconds FROM net.calls"
                    " WHERE relayed_status IS NULL ORDER BY id"
                ).fetchall()
                for call_id, url, body, headers, timeout_ms in pending:
                    try:
                        status = http.post(
                            url, json=body, headers=headers, timeout=timeout_ms / 1000
                        ).status_code
                    except httpx.HTTPError:
                        status = 0  # pg_net records a failed request and moves on
                    conn.execute("UPDATE net.calls SET relayed_status = %s WHERE id = %s", (status, call_id))
