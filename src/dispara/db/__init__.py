"""Database access: the embedded server or DATABASE_URL, migrations, and named SQL queries."""

from uuid import UUID

import psycopg
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]

# A message's key: bigint in dispara's own message_logs, often a uuid in a web app's adopted one (0013).
MessageId = int | UUID


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
