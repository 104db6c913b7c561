"""Tenants: every row belongs to one. Commands that write create theirs on first use; reads never do.

With `tables.tenants` mapped, the tenants are the web app's rows: named by id or name, never created.
"""

from __future__ import annotations

from uuid import UUID

from dispara.db import Connection, tables
from dispara.db.queries import q
from dispara.errors import NotFoundError

DEFAULT_TENANT = "default"
# What a read in the default tenant gets before anything was written to it: an id no row has, so it
# finds nothing, as an empty tenant would, without creating the tenant.
NO_TENANT = UUID(int=0)


def tenant_id(conn: Connection, name: str, *, create: bool = True) -> UUID:
    """The id of the named tenant; created when missing if `create`, else `NotFoundError` naming the known."""
    if not create or "tenants" in tables.renamed():
        return _existing(conn, name, writing=create)
    row = conn.execute(q("tenant_get_or_create"), {"name": name}).fetchone()
    if row is None:  # lost a race with a concurrent creator whose row is not visible yet; ask again
        row = conn.execute(q("tenant_get_or_create"), {"name": name}).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, UUID)
    return value


def _existing(conn: Connection, name: str, *, writing: bool = False) -> UUID:
    row = conn.execute(q("tenant_find"), {"name": name, "id": _as_uuid(name)}).fetchone()
    if row is not None:
        value = row[0]
        assert isinstance(value, UUID)
        return value
    if name == DEFAULT_TENANT and not writing:
        return NO_TENANT
    known = [str(r[0]) for r in conn.execute(q("tenant_names"))]
    listed = ", ".join(known) if known else "none yet"
    raise NotFoundError(f"no tenant {name!r} (known tenants: {listed}); check --tenant or DISPARA_TENANT")


def _as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def all_ids(conn: Connection) -> list[UUID]:
    """Every tenant's id (`worker --all-tenants` serves them all)."""
    return [row[0] for row in conn.execute(q("tenant_ids"))]
