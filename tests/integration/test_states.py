"""The states module and the schema agree: each CHECK constraint allows exactly the values `states` lists."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from dispara import states

# (table, column) -> the values the code knows for it
EXPECTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("campaigns", "status"): states.CAMPAIGN_STATUSES,
    ("campaigns", "transport"): states.TRANSPORTS,
    ("message_logs", "status"): states.MESSAGE_STATUSES,
    ("message_logs", "message_type"): states.MESSAGE_TYPES,
    ("message_logs", "error_kind"): states.ERROR_KINDS,
    ("jobs", "status"): states.JOB_STATUSES,
    ("jobs", "error_kind"): states.ERROR_KINDS,
    ("webhook_events", "status"): states.WEBHOOK_EVENT_STATUSES,
}
_LIST_CHECK = re.compile(r"= ANY \(\(?ARRAY\[(.*)\]")


def list_checks(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], set[str]]:
    """Every one-column CHECK of the form `col IN ('a', 'b')` in the public schema, with its values."""
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, a.attname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE c.contype = 'c' AND n.nspname = 'public' AND cardinality(c.conkey) = 1
        """
    ).fetchall()
    found: dict[tuple[str, str], set[str]] = {}
    for table, column, definition in rows:
        match = _LIST_CHECK.search(definition)
        if match:
            found[(table, column)] = set(re.findall(r"'([^']*)'::text", match.group(1)))
    return found


def test_every_value_list_of_the_schema_is_the_one_in_states(conn: psycopg.Connection[Any]) -> None:
    found = list_checks(conn)
    assert set(found) == set(EXPECTED), "a CHECK (col IN ...) was added or removed: list it in dispara.states"
    for key, values in EXPECTED.items():
        assert found[key] == set(values), key
        assert len(values) == len(set(values)), key


@pytest.mark.parametrize(
    ("frozen", "within"),
    [
        (states.CAMPAIGN_FINISHED, states.CAMPAIGN_STATUSES),
        (states.JOB_FINAL, states.JOB_STATUSES),
        (states.MESSAGE_SENDABLE, states.MESSAGE_STATUSES),
    ],
)
def test_the_derived_sets_name_only_known_states(frozen: frozenset[str], within: tuple[str, ...]) -> None:
    assert frozen < set(within)
