"""dispara's logical table names and the names they have in this deployment (config `tables:`).

SQL files write a table as `{jobs}`; the placeholder is filled in with psycopg's SQL composition when
the text is loaded, so a renamed table costs nothing per query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, LiteralString

if TYPE_CHECKING:
    from psycopg import sql

LOGICAL: tuple[LiteralString, ...] = (
    "tenants",
    "campaigns",
    "message_logs",
    "jobs",
    "instances",
    "settings",
    "optouts",
    "webhook_events",
    "evolution_inbox",
    "evolution_replies",
    "campaign_summary",
    "campaign_summary_deltas",
    "campaign_sends",
    "dispara_migrations",
)

_renamed: dict[str, tuple[str, ...]] = {}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def check_name(name: str) -> str:
    """`name` if it is `table` or `schema.table` of plain identifiers, else ValueError.

    Plain identifiers only: some SQL names a table inside a string (`'{message_logs}'::regclass`), where a
    quote in the name would end the string.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r}: write a table as table or schema.table (letters, digits and _)")
    return name


def use(mapping: Mapping[str, str]) -> None:
    """Install a deployment's names: logical name -> `table` or `schema.table`."""
    unknown = sorted(set(mapping) - set(LOGICAL))
    if unknown:
        raise ValueError(f"unknown table {unknown[0]!r}; dispara's tables are: {', '.join(LOGICAL)}")
    for name in mapping.values():
        check_name(name)
    _renamed.clear()
    _renamed.update({k: tuple(v.split(".", 1)) for k, v in mapping.items() if v != k})


@contextmanager
def using(mapping: Mapping[str, str]) -> Iterator[None]:
    """Other names for a while (a scratch copy of the schema), the deployment's again afterwards."""
    before = {k: ".".join(v) for k, v in _renamed.items()}
    use(mapping)
    try:
        yield
    finally:
        use(before)


def key() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The names in force, hashable: caches of composed text key on it."""
    return tuple(sorted(_renamed.items()))


def physical(logical: str) -> tuple[str, ...]:
    """(schema, table) or (table,) as the deployment names it."""
    return _renamed.get(logical, (logical,))


def renamed() -> dict[str, tuple[str, ...]]:
    return dict(_renamed)


def quoted(logical: str) -> str:
    """The table's name as SQL text (for `to_regclass`), quoted where it is renamed."""
    from psycopg import sql  # imported on use: every command sets the names, few compose SQL

    parts = _renamed.get(logical)
    return sql.Identifier(*parts).as_string(None) if parts else logical


def identifier(logical: LiteralString) -> sql.Composable:
    # Unrenamed tables stay bare words, so the default text is byte for byte what the files say
    # (and the migrations' checksums do not depend on the deployment).
    from psycopg import sql

    parts = _renamed.get(logical)
    return sql.Identifier(*parts) if parts else sql.SQL(logical)


def compose(template: str, *, shipped: bool = False) -> LiteralString:
    """The template's `{table}` placeholders filled in; `{{`/`}}` stand for literal braces.

    `shipped` fills in dispara's own names whatever the deployment's are.
    """
    from psycopg import sql

    names = {name: sql.SQL(name) if shipped else identifier(name) for name in LOGICAL}
    # Package text plus identifiers quoted by psycopg: as trusted as the file itself, hence LiteralString.
    return sql.SQL(template).format(**names).as_string(None)
