"""Database access: the embedded server or DATABASE_URL, migrations, and named SQL queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]

# A message's key: bigint in dispara's own message_logs, often a uuid in a web app's adopted one (0013).
MessageId = int | UUID


def __getattr__(name: str) -> Any:
    # psycopg takes ~100 ms to import: a command that opens no connection (`db url`) does not pay for it.
    if name == "Connection":
        import psycopg
        from psycopg.rows import TupleRow

        return psycopg.Connection[TupleRow]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def message_id_json(value: MessageId) -> int | str:
    """A message id as JSON carries it: a number, or a uuid's text."""
    return value if isinstance(value, int) else str(value)


def parse_message_id(value: object) -> MessageId:
    """A message id read back from JSON; ValueError when it is neither a number nor a uuid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return UUID(value)
    raise ValueError(f"not a message id: {value!r}")
