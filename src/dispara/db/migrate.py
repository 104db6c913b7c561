"""Schema migrations: ordered NNNN_name.sql files, applied under an advisory lock, recorded in a table."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from dispara.db import Connection, tables
from dispara.db.queries import q
from dispara.db.rows import all_dicts
from dispara.errors import SchemaChangedError

if TYPE_CHECKING:
    # Adopting tables is for the first migration only: commands that find the schema checked skip it.
    from dispara.db import adopt

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed 64-bit number works; it only has to be the same in every dispara process.
LOCK_ID = 0x64697370617261


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str

    @property
    def sql(self) -> str:
        """The migration with this deployment's table names."""
        return tables.compose(self.template)

    @property
    def checksum(self) -> str:
        # Over the text with dispara's own names, so a renamed table does not change it.
        return hashlib.sha256(tables.compose(self.template, shipped=True).encode()).hexdigest()[:16]

    def script(self) -> str:
        """The migration as one pasteable block, bookkeeping included."""
        return (
            f"-- migration {self.version:04d}_{self.name}\n{self.sql.rstrip()}\n"
            f"INSERT INTO {tables.quoted('dispara_migrations')} (version, name, checksum) "
            f"VALUES ({self.version}, '{self.name}', '{self.checksum}');\n"
        )


@cache
def available() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files("dispara.db").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return tuple(found)


def fingerprint() -> str:
    """The shipped migrations and the deployment's table names, hashed: what a schema check checks against."""
    digest = hashlib.sha256(repr(tables.key()).encode())
    for m in available():
        digest.update(f"{m.version}:{m.name}:{m.template}".encode())
    return digest.hexdigest()[:16]


def latest_version() -> int:
    return available()[-1].version


def _migrated(conn: Connection) -> bool:
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (tables.quoted("dispara_migrations"),)
    ).fetchone()
    return bool(exists and exists[0])


def current_version(conn: Connection) -> int:
    """The highest applied version; 0 on a database that has never been migrated."""
    if not _migrated(conn):
        return 0
    row = conn.execute(q("migrations_current")).fetchone()
    return int(row[0]) if row else 0


def applied(conn: Connection) -> list[tuple[int, str, str]]:
    """(version, name, checksum) of each migration the database has recorded."""
    if not _migrated(conn):
        return []
    rows = all_dicts(conn, q("migrations_applied"))
    return [(int(row["version"]), str(row["name"]), str(row["checksum"])) for row in rows]


def pending(conn: Connection) -> list[Migration]:
    """Migrations not applied yet, an older one merged after a newer one was applied included."""
    done = {version for version, _name, _checksum in applied(conn)}
    return [m for m in available() if m.version not in done]


def verify(conn: Connection) -> None:
    """Refuse a database whose applied migrations are not the files this dispara ships.

    An applied migration edited afterwards means the schema is not what the code expects; so does one
    this dispara does not know (up to its latest version; a newer database is told apart by its caller).
    """
    shipped = {m.version: m for m in available()}
    latest = latest_version()
    for version, name, checksum in applied(conn):
        label = f"{version:04d}_{name}"
        migration = shipped.get(version)
        if migration is None:
            if version <= latest:
                raise SchemaChangedError(f"migration {label} is applied but this dispara does not ship it")
        elif checksum != migration.checksum:
            raise SchemaChangedError(
                f"migration {label} was changed after it was applied (checksum {checksum} in the "
                f"database, {migration.checksum} in this dispara): restore the file, or migrate a new file"
            )


def bookkeeping_sql() -> str:
    return q("migrations_table") + ";\n"


def _adoption(conn: Connection, todo: list[Migration]) -> adopt.Plan | None:
    # Only a database dispara has never migrated has tables of the deployment's own to adopt.
    from dispara.db import adopt

    return adopt.plan(conn, available()) if todo and current_version(conn) == 0 else None


def preview(conn: Connection) -> tuple[list[Migration], str]:
    """The pending migrations and the SQL applying them runs, adoption of existing tables included."""
    from dispara.db import adopt

    todo = pending(conn)
    found = _adoption(conn, todo)
    adopted = found.tables if found else ()
    script = "".join(adopt.tolerant(m.script(), adopted) for m in todo)
    return todo, (found.header() + script + found.footer()) if found else script


def apply(conn: Connection) -> list[Migration]:
    """Apply every pending migration in one transaction; concurrent callers wait for the lock."""
    from dispara.db import adopt

    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute(q("migrations_table"))
        todo = pending(conn)
        found = _adoption(conn, todo)
        adopted = found.tables if found else ()
        for statement in found.before if found else []:
            conn.execute(statement.encode())
        # One transaction for all: a failure in migration N leaves the schema exactly as it was.
        for migration in todo:
            conn.execute(adopt.tolerant(migration.sql, adopted).encode())  # bytes: package text, not input
            adopt.keep_names(conn, adopted)
            conn.execute(q("migrations_record"), (migration.version, migration.name, migration.checksum))
            applied.append(migration)
        for statement in found.after if found else []:
            conn.execute(statement.encode())
    return applied
