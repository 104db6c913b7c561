"""Adopting a deployment's existing tables (config `tables:`): dispara adds what its migrations would have
created and nothing else; it never drops, renames or rewrites, and says what it leaves alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from psycopg import sql

from dispara.db import Connection, tables
from dispara.db.queries import q
from dispara.errors import ConfigError

# Where the migrations are applied to learn the shape they give each table; rolled back at once.
SCRATCH = "dispara_shape"
_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

# The web app's tables of seed 003 (§3), the ones an existing table may stand in for.
ADOPTABLE = ("tenants", "campaigns", "message_logs")


class _Migration(Protocol):
    @property
    def sql(self) -> str: ...


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None
    generated: bool


@dataclass(frozen=True)
class Constraint:
    name: str
    kind: str
    definition: str
    references: str | None  # the logical table a foreign key points at
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]
    on_delete: str

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two constraints the same, whatever they are called."""
        if self.kind == "f":
            return (self.kind, self.columns, self.references, self.ref_columns, self.on_delete)
        return (self.kind, self.definition) if self.kind == "c" else (self.kind, self.columns)


@dataclass(frozen=True)
class Shape:
    columns: dict[str, Column]
    constraints: list[Constraint]
    indexes: list[tuple[str, str, bool]]  # name, definition, unique


@dataclass
class Plan:
    """What adopting the existing tables takes: columns before the migrations run, the rest after."""

    tables: tuple[str, ...]
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)

    def header(self) -> str:
        lines = [f"-- adopting existing tables: {', '.join(tables.quoted(t) for t in self.tables)}"]
        lines += [f"-- left as it is: {note}" for note in self.untouched]
        return "\n".join(lines + [f"{s};" for s in self.before]) + "\n"

    def footer(self) -> str:
        return "".join(f"{s};\n" for s in self.after)


def existing(conn: Connection) -> tuple[str, ...]:
    """The renamed tables that exist already: the deployment's own, to be adopted.

    Only the web app's tables of seed 003 are adopted; the queue's tables hold dispara's own state, and a
    migration that changes one of them (`DROP CONSTRAINT jobs_status_check`) assumes dispara made it.
    """
    found = tuple(
        name
        for name in tables.renamed()
        if name != "dispara_migrations" and _oid(conn, tables.quoted(name)) is not None
    )
    foreign = [name for name in found if name not in ADOPTABLE]
    if foreign:
        raise ConfigError(
            f"tables.{foreign[0]}: {tables.quoted(foreign[0])} exists already, and dispara adopts an "
            f"existing table only for {', '.join(ADOPTABLE)}: name a table that does not exist yet"
        )
    return found


def plan(conn: Connection, migrations: Sequence[_Migration]) -> Plan | None:
    """The additive changes that give each existing table the shape the migrations would have given it."""
    found = existing(conn)
    if not found:
        return None
    target = _target_shapes(conn, migrations, found)
    oids = _oids(conn)
    result = Plan(found)
    for name in found:
        _diff(result, name, target[name], _shape(conn, tables.quoted(name), oids))
    return result


def tolerant(text: str, adopted: Iterable[str]) -> str:
    """A migration's text with its DDL on adopted tables made a no-op where the plan already did it."""
    for name in adopted:
        ident = re.escape(tables.quoted(name))
        text = re.sub(rf"CREATE TABLE ({ident}) \(", r"CREATE TABLE IF NOT EXISTS \1 (", text)
        text = re.sub(rf"(CREATE (?:UNIQUE )?INDEX) (\w+ ON {ident}\s)", r"\1 IF NOT EXISTS \2", text)
        text = re.sub(
            rf"ALTER TABLE {ident}\s[^;]*",
            lambda m: re.sub(r"ADD COLUMN (?!IF NOT EXISTS)", "ADD COLUMN IF NOT EXISTS ", m.group(0)),
            text,
        )
    return text


def keep_names(conn: Connection, adopted: Iterable[str]) -> None:
    """Checks and foreign keys of tables dispara created under another name get the names it gives them,
    which later migrations refer to (`jobs_status_check`); an adopted table's own keep theirs."""
    for name, parts in tables.renamed().items():
        if name in adopted or _oid(conn, tables.quoted(name)) is None:
            continue
        prefix = f"{parts[-1]}_"
        rows = conn.execute(q("adopt_rename_constraints"), {"rel": tables.quoted(name), "prefix": prefix})
        for (old,) in rows.fetchall():
            new = f"{name}_{old.removeprefix(prefix)}"
            statement = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}")
            conn.execute(statement.format(sql.Identifier(*parts), sql.Identifier(old), sql.Identifier(new)))


def _oid(conn: Connection, rel: str) -> int | None:
    row = conn.execute(q("adopt_oid"), {"rel": rel}).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _oids(conn: Connection) -> dict[int, str]:
    """oid -> logical name of every dispara table under the names in force."""
    found = {name: _oid(conn, tables.quoted(name)) for name in tables.LOGICAL}
    return {oid: name for name, oid in found.items() if oid is not None}


def _target_shapes(
    conn: Connection, migrations: Sequence[_Migration], names: Sequence[str]
) -> dict[str, Shape]:
    conn.execute("SAVEPOINT dispara_shape")
    try:
        conn.execute(f"CREATE SCHEMA {SCRATCH}")
        conn.execute(f"SET LOCAL search_path TO {SCRATCH}")
        with tables.using({name: f"{SCRATCH}.{name}" for name in tables.LOGICAL}):
            for migration in migrations:
                conn.execute(migration.sql.encode())  # bytes: package text, not input
            oids = _oids(conn)
            return {name: _shape(conn, tables.quoted(name), oids) for name in names}
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT dispara_shape")


def _shape(conn: Connection, rel: str, oids: dict[int, str]) -> Shape:
    columns = {r[0]: Column(*r) for r in conn.execute(q("adopt_columns"), {"rel": rel})}
    constraints = [
        Constraint(
            name, kind, definition, oids.get(ref) if ref else None, tuple(cols), tuple(refs), on_delete
        )
        for name, kind, definition, ref, cols, refs, on_delete in conn.execute(
            q("adopt_constraints"), {"rel": rel}
        )
    ]
    indexes = [(str(n), str(d), bool(u)) for n, d, u in conn.execute(q("adopt_indexes"), {"rel": rel})]
    return Shape(columns, constraints, indexes)


def _text(catalog: str) -> sql.SQL:
    # Definitions read from the catalog of dispara's own scratch schema: as trusted as the migrations.
    return sql.SQL(catalog)


def _diff(result: Plan, name: str, want: Shape, have: Shape) -> None:
    real = sql.Identifier(*tables.physical(name))
    label = tables.quoted(name)
    _diff_columns(result, real, label, want, have)
    _diff_constraints(result, real, label, want, have)
    _diff_indexes(result, real, want, have)


def _diff_columns(result: Plan, real: sql.Identifier, label: str, want: Shape, have: Shape) -> None:
    for column in want.columns.values():
        found = have.columns.get(column.name)
        if found is None:
            _add_column(result, real, label, column)
        else:
            _compare_column(result, real, label, column, found)
    for extra in have.columns.values():
        if extra.name not in want.columns:
            blocks = extra.not_null and extra.default is None and not extra.generated
            why = " (NOT NULL without a default: dispara's inserts will fail)" if blocks else ""
            result.untouched.append(f"{label}.{extra.name}, a column dispara does not use{why}")


def _compare_column(result: Plan, real: sql.Identifier, label: str, column: Column, found: Column) -> None:
    if found.type != column.type:
        result.untouched.append(f"{label}.{column.name} is {found.type} (dispara's is {column.type})")
        return
    if column.not_null and not found.not_null:
        result.untouched.append(f"{label}.{column.name} may be NULL (dispara's is NOT NULL)")
    if column.default is not None and found.default is None:  # dispara's inserts leave it to the default
        statement = sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}")
        result.before.append(_s(statement.format(real, sql.Identifier(column.name), _text(column.default))))


def _add_column(result: Plan, real: sql.Identifier, label: str, column: Column) -> None:
    if column.generated:
        result.untouched.append(f"{label} has no {column.name} (an identity column): not added")
        return
    parts: list[sql.Composable] = [real, sql.Identifier(column.name), _text(column.type)]
    statement = "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}"
    if column.default is not None:
        statement += " DEFAULT {}" + (" NOT NULL" if column.not_null else "")
        parts.append(_text(column.default))
    elif column.not_null:  # old rows have nothing to put there: new rows are held to it, old ones are not
        check = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID")
        table = label.rsplit(".", 1)[-1].strip(chr(34))  # "app"."msgs" -> msgs
        named = sql.Identifier(f"{table}_{column.name}_not_null"[:63])
        result.after.append(_s(check.format(real, named, sql.Identifier(column.name))))
    result.before.append(_s(sql.SQL(statement).format(*parts)))


def _diff_constraints(result: Plan, real: sql.Identifier, label: str, want: Shape, have: Shape) -> None:
    keys = {c.key for c in have.constraints}
    names = {c.name for c in have.constraints}
    for c in want.constraints:
        if c.key in keys:
            continue
        if c.kind == "p" or c.name in names:
            result.untouched.append(f"{label} has no constraint {c.definition}: not added")
            continue
        body = _fk(c) if c.kind == "f" else _text(c.definition)
        valid = sql.SQL(" NOT VALID") if c.kind in ("c", "f") else sql.SQL("")  # old rows are not checked
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}")
        result.after.append(_s(statement.format(real, sql.Identifier(c.name), body, valid)))
    wanted = {c.key for c in want.constraints}
    for c in have.constraints:
        if c.kind == "c" and c.key not in wanted:
            result.untouched.append(
                f"{label} constraint {c.name} {c.definition} (it holds dispara's rows too)"
            )


def _fk(c: Constraint) -> sql.Composable:
    assert c.references is not None
    return sql.SQL("FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}").format(
        sql.SQL(", ").join(map(sql.Identifier, c.columns)),
        sql.Identifier(*tables.physical(c.references)),
        sql.SQL(", ").join(map(sql.Identifier, c.ref_columns)),
        sql.SQL(_ON_DELETE[c.on_delete]),
    )


def _diff_indexes(result: Plan, real: sql.Identifier, want: Shape, have: Shape) -> None:
    present = {_tail(definition) for _name, definition, _unique in have.indexes}
    for name, definition, unique in want.indexes:
        if _tail(definition) in present:
            continue
        create = (
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} {}"
            if unique
            else "CREATE INDEX IF NOT EXISTS {} ON {} {}"
        )
        result.after.append(_s(sql.SQL(create).format(sql.Identifier(name), real, _text(_tail(definition)))))


def _tail(definition: str) -> str:
    """An index definition from `USING` on: what it indexes, whatever its name and table."""
    return definition[definition.index(" USING ") + 1 :]


def _s(statement: sql.Composable) -> str:
    return statement.as_string(None)
