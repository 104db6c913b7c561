"""Campaign counts kept as messages change: what status reads instead of counting every message.

The message_logs trigger appends each statement's changes as deltas; `compact` folds them into the
per-(campaign, instance) rows; `verify` counts message_logs the slow way and names any difference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

from dispara.db import Connection
from dispara.db.queries import q
from dispara.states import MESSAGE_STATUSES

log = logging.getLogger("dispara.summary")

COUNTED = ("pending", "queued", "sending", "sent", "failed", "cancelled", "delivered", "read", "replied")
COMPACT_EVERY_S = 1.0
COMPACT_LIMIT = 20_000  # deltas per compaction statement


@dataclass(frozen=True)
class InstanceCounts:
    instance: str
    counts: dict[str, int]
    last_claim_at: datetime | None
    last_sent_at: datetime | None


def add_ingested(
    conn: Connection, tenant_id: UUID, campaign_id: UUID, per_instance: Mapping[str, int], status: str
) -> None:
    """Count messages just inserted (all in `status`, per instance name; '' for none) into the summary."""
    names = sorted(per_instance)
    conn.execute(
        q("summary_ingest"),
        {
            "tenant_id": tenant_id,
            "campaign_id": campaign_id,
            "status": status,
            "instances": names,
            "counts": [per_instance[n] for n in names],
        },
    )


def by_instance(conn: Connection, campaign_id: UUID) -> list[InstanceCounts]:
    rows = conn.execute(q("summary_by_instance"), {"campaign_id": campaign_id}).fetchall()
    return [
        InstanceCounts(row[0], {k: int(v) for k, v in zip(COUNTED, row[1:10], strict=True)}, row[10], row[11])
        for row in rows
    ]


def counted(conn: Connection, campaign_id: UUID) -> dict[str, dict[str, int]]:
    """The same counts from message_logs itself: instance -> what -> how many (a full scan)."""
    out: dict[str, dict[str, int]] = {}
    for instance, status, n in conn.execute(q("campaign_counts_by_instance"), {"campaign_id": campaign_id}):
        entry = out.setdefault(instance or "", dict.fromkeys(COUNTED, 0))
        if status in MESSAGE_STATUSES:  # an adopted table may hold statuses of its own: not counted
            entry[status] += int(n)
    receipts = conn.execute(q("campaign_receipts_by_instance"), {"campaign_id": campaign_id})
    for instance, delivered, read, replied in receipts:
        entry = out.setdefault(instance, dict.fromkeys(COUNTED, 0))
        entry.update(delivered=int(delivered), read=int(read), replied=int(replied))
    return out


def verify(conn: Connection, campaign_id: UUID) -> list[str]:
    """Every (instance, count) where the summary and message_logs differ, as readable lines.

    Called outside a transaction, both are read in one snapshot, so sending workers cause no difference.
    """
    fresh = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if fresh:  # one snapshot for both readings, even while workers send
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        kept = {i.instance: i.counts for i in by_instance(conn, campaign_id)}
        truth = counted(conn, campaign_id)
    zero = dict.fromkeys(COUNTED, 0)
    differences = []
    for instance in sorted(set(kept) | set(truth)):
        mine, real = kept.get(instance, zero), truth.get(instance, zero)
        for what in COUNTED:
            if mine[what] != real[what]:
                name = instance or "-"
                differences.append(
                    f"{name}: {what} {mine[what]} in the summary, {real[what]} in message_logs"
                )
    return differences


class Compactor:
    """Folds deltas at most every COMPACT_EVERY_S; a failure is logged and retried next time."""

    def __init__(self) -> None:
        self.last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.last >= COMPACT_EVERY_S

    def maybe(self, conn: Connection) -> None:
        if not self.due():
            return
        self.last = time.monotonic()
        try:
            compact(conn)
        except psycopg.Error as exc:  # a deadlock with a campaign's deletion, a lost connection: next time
            log.warning("folding campaign counts failed (%s); retrying later", exc)


def compact(conn: Connection, limit: int = COMPACT_LIMIT) -> int:
    """Fold up to `limit` deltas into the summary in one transaction; how many were folded."""
    with conn.transaction():
        row = conn.execute(q("summary_compact"), {"limit": limit}).fetchone()
    return int(row[0]) if row else 0
