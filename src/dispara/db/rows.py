"""Rows mapped by column name (psycopg's `class_row`/`dict_row`), so a reordered SELECT cannot swap fields.

The query's column names are the dataclass's field names; a missing or extra column is an error at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, LiteralString, TypeVar

from psycopg.rows import class_row, dict_row

from dispara.db import Connection

T = TypeVar("T")
Query = LiteralString  # a named query (dispara.db.queries)
Params = Mapping[str, Any] | None


def all_as(conn: Connection, cls: type[T], query: Query, params: Params = None) -> list[T]:
    """Every row of `query` as a `cls`, built from the columns by name."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        return cur.execute(query, params).fetchall()


def one_as(conn: Connection, cls: type[T], query: Query, params: Params = None) -> T | None:
    """The first row of `query` as a `cls`, or None when there is none."""
    with conn.cursor(row_factory=class_row(cls)) as cur:
        return cur.execute(query, params).fetchone()


def all_dicts(conn: Connection, query: Query, params: Params = None) -> list[dict[str, Any]]:
    """Every row of `query` as a dict of column name to value."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def one_dict(conn: Connection, query: Query, params: Params = None) -> dict[str, Any] | None:
    """The first row of `query` as a dict of column name to value, or None when there is none."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()
