"""Connections to the database in use: DATABASE_URL when set, else the embedded server.

The embedded database migrates itself; an external one must be migrated on purpose (`dispara db migrate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from dispara.config import Settings, mask_dsn
from dispara.db import Connection, embedded, migrate
from dispara.errors import DatabaseError, SchemaBehindError, SchemaChangedError

_ready: set[str] = set()  # DSNs whose schema this process has already checked


@dataclass(frozen=True)
class Database:
    dsn: str
    embedded: bool

    @property
    def shown(self) -> str:
        return mask_dsn(self.dsn)


def locate(settings: Settings) -> Database:
    """The database these settings point at, starting the embedded one when needed."""
    if settings.database_url:
        return Database(settings.database_url, embedded=False)
    return Database(embedded.ensure_running(settings.data_dir), embedded=True)


def open_connection(db: Database, *, autocommit: bool = False) -> Connection:
    try:
        return psycopg.connect(db.dsn, autocommit=autocommit, application_name="dispara")
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot connect to the database {db.shown}: {reason}") from exc


def ensure_schema(db: Database, conn: Connection) -> None:
    """Migrate the embedded database; refuse an external one whose schema is missing or behind."""
    if db.dsn in _ready:
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
