"""Connections to the database in use: DATABASE_URL when set, else the embedded server.

The embedded database migrates itself; an external one must be migrated on purpose (`dispara db migrate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dispara.config import Settings, mask_dsn
from dispara.db import embedded
from dispara.errors import ConfigError, DatabaseError, SchemaBehindError, SchemaChangedError

CONNECT_TIMEOUT_S = 10
_SERVER_PREFIX = re.compile(
    r"^(?:connection (?:failed|is bad): )?(?:connection to server (?:at|on) .*? failed: )?"
)

if TYPE_CHECKING:
    from dispara.db import Connection

_ready: set[str] = set()  # DSNs whose schema this process has already checked


@dataclass(frozen=True)
class Database:
    dsn: str
    embedded: bool
    data_dir: Path | None = None
    """The embedded server's data directory, where a schema check is remembered across processes."""

    @property
    def shown(self) -> str:
        return mask_dsn(self.dsn)


def locate(settings: Settings) -> Database:
    """The database these settings point at, starting the embedded one when needed."""
    if settings.database_url:
        check_url(settings.database_url)
        return Database(settings.database_url, embedded=False)
    return Database(embedded.ensure_running(settings.data_dir), embedded=True, data_dir=settings.data_dir)


def check_url(dsn: str) -> None:
    """Refuse a DATABASE_URL that is not a PostgreSQL connection string, before trying to connect."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    example = "postgresql://user:password@host:5432/database"
    shown = mask_dsn(dsn)
    if "://" in dsn and dsn.split("://", 1)[0].lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"DATABASE_URL {shown}: not a PostgreSQL URL (expected {example})")
    try:
        # Parsing errors quote the string, password included: none of their text is shown.
        options = conninfo_to_dict(dsn)
    except ProgrammingError:
        raise ConfigError(f"DATABASE_URL {shown}: malformed (expected {example})") from None
    port = str(options.get("port") or "5432")
    if not all(part.isdigit() and 0 < int(part) < 65536 for part in port.split(",")):
        raise ConfigError(f"DATABASE_URL {shown}: port {port!r} is not a port number (expected {example})")


def _reason(exc: Exception) -> str:
    """The server's or libpq's one-line reason, without the host prefix libpq repeats."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    fatal = next((line for line in lines if "FATAL" in line), lines[0])
    return _SERVER_PREFIX.sub("", fatal).replace("FATAL:  ", "").strip()


def open_connection(db: Database, *, autocommit: bool = False) -> Connection:
    import psycopg

    from dispara.supabase import pooler

    try:
        return psycopg.connect(
            db.dsn,
            autocommit=autocommit,
            application_name="dispara",
            connect_timeout=CONNECT_TIMEOUT_S,
            **pooler.connect_options(db.dsn),
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database {db.shown}: {_reason(exc)}") from exc


def ensure_schema(db: Database, conn: Connection) -> None:
    """Migrate the embedded database; refuse an external one whose schema is missing or behind."""
    from dispara.db import migrate

    if db.dsn in _ready:
        return
    schema = migrate.fingerprint()
    if db.data_dir is not None and embedded.schema_checked(db.data_dir, schema):
        _ready.add(db.dsn)
        return
    version = migrate.current_version(conn)
    latest = migrate.latest_version()
    if version > latest:
        raise SchemaBehindError(
            f"the database {db.shown} is at schema version {version}, "
            f"newer than this dispara ({latest}): upgrade dispara"
        )
    try:
        migrate.verify(conn)
    except SchemaChangedError as exc:
        raise SchemaChangedError(f"the database {db.shown}: {exc}") from None
    todo = migrate.pending(conn)
    conn.rollback()
    if todo and not db.embedded:
        missing = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        state = "has no dispara schema" if version == 0 else f"lacks migration(s) {missing}"
        raise SchemaBehindError(f"the database {db.shown} {state}: run `dispara db migrate`")
    if todo:
        migrate.apply(conn)
    conn.commit()
    if db.data_dir is not None:
        embedded.remember_schema(db.data_dir, schema)
    _ready.add(db.dsn)


def connect(settings: Settings, *, autocommit: bool = False) -> Connection:
    """A connection to a database whose schema is current."""
    db = locate(settings)
    conn = open_connection(db)
    try:
        ensure_schema(db, conn)
    except BaseException:
        conn.close()
        raise
    conn.autocommit = autocommit
    return conn
