"""Database access: the embedded server or DATABASE_URL, migrations, and named SQL queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]


def __getattr__(name: str) -> Any:
    # psycopg takes ~100 ms to import: a command that opens no connection (`db url`) does not pay for it.
    if name == "Connection":
        import psycopg
        from psycopg.rows import TupleRow

        return psycopg.Connection[TupleRow]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
