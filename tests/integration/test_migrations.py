"""Migrations against a real PostgreSQL: create everything, twice is a no-op, --print writes nothing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dispara.config import Settings
from dispara.db import migrate
from dispara.db.connect import Database, connect, ensure_schema
from dispara.errors import SchemaBehindError, SchemaChangedError
from tests.helpers import run_cli

TABLES = {
    "tenants",
    "campaigns",
    "message_logs",
    "jobs",
    "instances",
    "settings",
    "optouts",
    "dispara_migrations",
}
SEED_JOB_COLUMNS = {"id", "payload", "status", "run_at", "attempts", "last_error", "created_at", "updated_at"}


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def env_db(monkeypatch: pytest.MonkeyPatch, empty_db_dsn: str, tmp_path: Path) -> str:
    monkeypatch.setenv("DATABASE_URL", empty_db_dsn)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DISPARA_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return empty_db_dsn


def test_migrate_yes_creates_every_table_and_function(
    env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "db", "migrate", "--yes")
    assert result.code == 0, result.err
    assert "applied 0001_schema" in result.out
    assert tables(env_db) >= TABLES
    with psycopg.connect(env_db) as conn:
        funcs = {
            r[0]
            for r in conn.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'increment_campaign_%'")
        }
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")}
    assert funcs == {"increment_campaign_sent_count", "increment_campaign_failed_count"}
    assert "jobs_runnable_instance" in indexes


def test_second_migrate_is_a_no_op(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "db", "migrate", "--yes").code == 0
    again = run_cli(capsys, "db", "migrate", "--yes")
    assert again.code == 0
    assert "schema is up to date" in again.out
    with psycopg.connect(env_db) as conn:
        assert conn.execute("SELECT count(*) FROM dispara_migrations").fetchone() == (
            len(migrate.available()),
        )


def test_print_shows_the_sql_and_writes_nothing(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "db", "migrate", "--print")
    assert result.code == 0
    assert "CREATE TABLE jobs" in result.out
    jobs_block = result.out.split("CREATE TABLE jobs", 1)[1].split(");", 1)[0]
    assert all(f"\n    {column} " in jobs_block for column in SEED_JOB_COLUMNS)
    assert tables(env_db) == set()


def test_print_all_needs_no_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nowhere")
    result = run_cli(capsys, "db", "migrate", "--print", "--all")
    assert result.code == 0
    assert result.out.count("-- migration ") == len(migrate.available())
    assert "INSERT INTO dispara_migrations" in result.out


def test_printed_script_applies_cleanly_and_is_recognised(
    env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = run_cli(capsys, "db", "migrate", "--print").out
    with psycopg.connect(env_db, autocommit=True) as conn:
        conn.execute(script.encode())
    assert run_cli(capsys, "db", "status").out.endswith("up to date\n")


def test_external_database_without_schema_is_refused(empty_db_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(SchemaBehindError, match="has no dispara schema: run `dispara db migrate`"):
        connect(Settings(database_url=empty_db_dsn, data_dir=tmp_path))
    assert tables(empty_db_dsn) == set()


def test_concurrent_migrations_apply_once(empty_db_dsn: str) -> None:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_dsn) as conn:
                migrate.apply(conn)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dispara_migrations").fetchone() == (
            len(migrate.available()),
        )


def test_notify_fires_once_per_insert_statement(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as listener, psycopg.connect(db_dsn) as writer:
        listener.execute("LISTEN dispara_jobs")
        tenant = writer.execute("INSERT INTO tenants (name) VALUES ('t') RETURNING id").fetchone()
        assert tenant is not None
        writer.execute(
            "INSERT INTO jobs (tenant_id, payload) SELECT %s, %s FROM generate_series(1, 50)",
            (tenant[0], '{"task_type": "noop"}'),
        )
        writer.commit()
        received = list(listener.notifies(timeout=2.0, stop_after=5))
    assert len(received) == 1
    assert received[0].channel == "dispara_jobs"


def test_a_changed_applied_migration_is_refused_naming_it(db_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE dispara_migrations SET checksum = 'edited' WHERE version = 2")
    second = migrate.available()[1]
    with pytest.raises(
        SchemaChangedError, match=f"migration 0002_{second.name} was changed after it was applied"
    ):
        connect(Settings(database_url=db_dsn, data_dir=tmp_path))


def test_a_changed_migration_stops_the_embedded_database_too(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE dispara_migrations SET checksum = 'edited' WHERE version = 1")
    with psycopg.connect(db_dsn) as conn, pytest.raises(SchemaChangedError, match="migration 0001_schema"):
        ensure_schema(Database(db_dsn, embedded=True), conn)


def test_an_applied_migration_this_dispara_does_not_ship_is_refused(db_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(db_dsn) as conn:  # version 0 is never shipped, and leaves the current version alone
        conn.execute("INSERT INTO dispara_migrations (version, name, checksum) VALUES (0, 'other', 'x')")
    with pytest.raises(SchemaChangedError, match="migration 0000_other is applied but this dispara"):
        connect(Settings(database_url=db_dsn, data_dir=tmp_path))


def test_the_cli_reports_a_changed_migration_in_one_line(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE dispara_migrations SET checksum = 'edited' WHERE version = 1")
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "jobs", "list")
    assert result.code == 5
    [line] = result.err.splitlines()
    assert line.startswith("dispara: error: the database ") and "0001_schema was changed" in line


def test_a_migration_missing_below_the_current_version_is_pending(db_dsn: str, tmp_path: Path) -> None:
    # A migration merged after a newer one was applied: the database is at the latest version without it.
    second = migrate.available()[1]
    with psycopg.connect(db_dsn) as conn:
        conn.execute("DELETE FROM dispara_migrations WHERE version = %s", (second.version,))
        assert [m.version for m in migrate.pending(conn)] == [second.version]
    with pytest.raises(SchemaBehindError, match=f"lacks migration\\(s\\) 0002_{second.name}: run"):
        connect(Settings(database_url=db_dsn, data_dir=tmp_path))
