"""Named SQL queries, read from the package's .sql files.

A file holds blocks that start with `-- name: <query_name>`; names are unique across files. Table names
are `{placeholders}` filled in with the deployment's names (`dispara.db.tables`).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

from dispara.db import tables

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def _all() -> dict[str, str]:
    queries: dict[str, str] = {}
    for entry in sorted(resources.files("dispara.db").joinpath("sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        queries.update(_parse(entry.read_text(encoding="utf-8"), entry.name, queries))
    return queries


def _parse(text: str, filename: str, seen: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    marks = list(_NAME.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        name = mark.group(1)
        if name in seen or name in found:
            raise RuntimeError(f"{filename}: query {name!r} is defined twice")
        body = text[mark.end() : following.start() if following else len(text)]
        found[name] = body.strip().rstrip(";")
    return found


@cache
def _composed(name: str, names: tuple[tuple[str, tuple[str, ...]], ...]) -> LiteralString:
    return tables.compose(_all()[name])


def q(name: str) -> LiteralString:
    """The SQL text of a named query. It comes from the package, never from input, hence LiteralString."""
    if name not in _all():
        raise KeyError(f"no SQL query named {name!r}")
    return _composed(name, tables.key())
