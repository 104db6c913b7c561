"""Tenants: every row belongs to one, created on first use by name."""

from __future__ import annotations

from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q


def tenant_id(conn: Connection, name: str) -> UUID:
    """The id of the named tenant, creating it when it does not exist yet."""
    row = conn.execute(q("tenant_get_or_create"), {"name": name}).fetchone()
    if row is None:  # lost a race with a concurrent creator whose row is not visible yet; ask again
        row = conn.execute(q("tenant_get_or_create"), {"name": name}).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, UUID)
    return value
