"""Campaign listing and the per-message export, streamed so a million rows need no memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q

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
    return [CampaignSummary(*row) for row in conn.execute(q("campaign_list"), params)]


def _rows(conn: Connection, campaign_id: UUID, status: str | None) -> Iterator[tuple[Any, ...]]:
    # A named (server-side) cursor streams in chunks instead of loading the whole campaign.
    with conn.transaction(), conn.cursor(name="dispara_export") as cur:
        cur.itersize = 5000
        cur.execute(q("campaign_export"), {"campaign_id": campaign_id, "status": status})
        yield from cur


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def export(conn: Connection, campaign_id: UUID, out: IO[str], *, fmt: str, status: str | None) -> int:
    """Write the campaign's messages to `out` as csv, json (one array) or jsonl; returns the row count."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for row in _rows(conn, campaign_id, status):
            writer.writerow([_cell(v) for v in row])
            count += 1
        return count
    if fmt == "json":
        out.write("[")
    for row in _rows(conn, campaign_id, status):
        record = json.dumps(dict(zip(EXPORT_COLUMNS, map(_cell, row), strict=True)), ensure_ascii=False)
        if fmt == "json":
            out.write(f"{',' if count else ''}\n{record}")
        else:
            out.write(f"{record}\n")
        count += 1
    if fmt == "json":
        out.write("\n]\n")
    return count
