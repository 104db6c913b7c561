"""Campaign listing and the per-message export, streamed so a million rows need no memory.

The export puts the contact's own columns (name and the rest) beside each message's phone, status and times.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from uuid import UUID

from psycopg.rows import dict_row

from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import all_as
from dispara.errors import InputError

EXPORT_COLUMNS = (
    "phone", "instance", "status", "type", "content", "media_url", "queued_at", "sent_at",
    "evolution_key", "error", "retry_count", "updated_at",
    "delivery_status", "delivered_at", "read_at", "replied_at", "reply_text",
)  # fmt: skip


@dataclass(frozen=True)
class CampaignSummary:
    id: UUID
    name: str
    status: str
    transport: str
    total: int
    sent: int
    failed: int
    created_at: datetime
    completed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "name": self.name, "status": self.status, "transport": self.transport,
            "total": self.total, "sent": self.sent, "failed": self.failed,
            "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }  # fmt: skip


def list_campaigns(
    conn: Connection, tenant_id: UUID, *, status: str | None, limit: int
) -> list[CampaignSummary]:
    params = {"tenant_id": tenant_id, "status": status, "limit": limit}
    return all_as(conn, CampaignSummary, q("campaign_list"), params)


def _rows(conn: Connection, campaign_id: UUID, status: str | None) -> Iterator[dict[str, Any]]:
    # A named (server-side) cursor streams in chunks instead of loading the whole campaign.
    with conn.transaction(), conn.cursor(name="dispara_export", row_factory=dict_row) as cur:
        cur.itersize = 5000
        cur.execute(q("campaign_export"), {"campaign_id": campaign_id, "status": status})
        yield from cur


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def contact_fields(conn: Connection, campaign_id: UUID) -> list[str]:
    row = conn.execute(q("campaign_contact_fields"), {"campaign_id": campaign_id}).fetchone()
    if row is None:
        return []
    ordered, first = row
    return list(ordered) if ordered else list(first) if isinstance(first, dict) else []


def export_columns(conn: Connection, campaign_id: UUID, chosen: list[str] | None = None) -> list[str]:
    """The contact's columns, then the message's; `chosen` picks some of them, in its order.

    A contact column named like a message column (`status`) is exported as `contact_status`.
    """
    fields = [f"contact_{f}" if f in EXPORT_COLUMNS else f for f in contact_fields(conn, campaign_id)]
    available = [*fields, *EXPORT_COLUMNS]
    if chosen is None:
        return available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise InputError(f"--columns: no column {unknown[0]!r}; the columns are: {', '.join(available)}")
    return chosen


def _records(
    conn: Connection, campaign_id: UUID, status: str | None, columns: list[str]
) -> Iterator[list[Any]]:
    message = frozenset(EXPORT_COLUMNS)
    clashing = {f"contact_{name}": name for name in EXPORT_COLUMNS}
    contact_key = {name: clashing.get(name, name) for name in columns if name not in message}
    for row in _rows(conn, campaign_id, status):
        contact = row["contact"] or {}
        yield [
            _cell(row[name]) if name in message else contact.get(contact_key[name], "") for name in columns
        ]


def export(
    conn: Connection,
    campaign_id: UUID,
    out: IO[str],
    *,
    fmt: str,
    status: str | None,
    columns: list[str] | None = None,
) -> int:
    """Write the campaign's messages to `out` as csv, json (one array) or jsonl; returns the row count."""
    count = 0
    names = export_columns(conn, campaign_id, columns)
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(names)
        for record in _records(conn, campaign_id, status, names):
            writer.writerow(record)
            count += 1
        return count
    if fmt == "json":
        out.write("[")
    for values in _records(conn, campaign_id, status, names):
        line = json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False)
        if fmt == "json":
            out.write(f"{',' if count else ''}\n{line}")
        else:
            out.write(f"{line}\n")
        count += 1
    if fmt == "json":
        out.write("\n]\n")
    return count
