"""A campaign's progress as one snapshot: counts from the summary, pacing, rates, ETA and top errors.

A few rows whatever the campaign's size; `status --verify` counts message_logs instead (dispara.summary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from dispara import summary
from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import all_dicts, one_dict
from dispara.errors import InputError, NotFoundError
from dispara.states import CAMPAIGN_FINISHED, MESSAGE_SENDABLE, MESSAGE_STATUSES

DEFAULT_ZONE = "America/Sao_Paulo"
# Due messages untouched this long (and never less than three pacing gaps) mean no worker is running.
STALL_AFTER_S = 120.0
_ID_PREFIX = re.compile(r"^[0-9a-f-]{4,36}$")


@dataclass
class Receipts:
    """What Evolution's webhooks reported about sent messages: delivered, read, replied (each once)."""

    delivered: int = 0
    read: int = 0
    replied: int = 0

    def as_json(self, sent: int) -> dict[str, Any]:
        def rate(n: int) -> float | None:
            return round(n / sent, 4) if sent else None

        return {
            "delivered": self.delivered,
            "read": self.read,
            "replied": self.replied,
            "delivered_rate": rate(self.delivered),
            "read_rate": rate(self.read),
            "reply_rate": rate(self.replied),
        }


@dataclass
class InstanceProgress:
    name: str
    sent: int = 0
    failed: int = 0
    pending: int = 0
    next_send_at: datetime | None = None
    paused_until: datetime | None = None
    pause_reason: str | None = None
    gap_s: float | None = None
    sent_today: int = 0
    receipts: Receipts = field(default_factory=Receipts)

    @property
    def paused(self) -> bool:
        return self.pause_reason is not None


@dataclass
class Snapshot:
    id: UUID
    name: str
    status: str
    transport: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    scheduled_for: datetime | None
    status_reason: str | None
    total: int
    counter_sent: int
    counter_failed: int
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)
    instances: list[InstanceProgress] = field(default_factory=list)
    errors: list[tuple[str, int]] = field(default_factory=list)
    sent_last_minute: int = 0
    eta_seconds: float | None = None
    zone: str = DEFAULT_ZONE
    """The campaign's send-window zone: times are shown in it."""
    daily_cap: int | None = None
    last_claim_at: datetime | None = None
    last_sent_at: datetime | None = None
    due: int = 0
    """Messages queued that no worker holds."""
    stalled_since: datetime | None = None
    """Set when messages are due but no worker has taken one since then: nothing is sending."""
    receipts: Receipts = field(default_factory=Receipts)

    @property
    def finished(self) -> bool:
        return self.status in CAMPAIGN_FINISHED

    @property
    def done(self) -> int:
        return self.counts["sent"] + self.counts["failed"] + self.counts["cancelled"]

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    @property
    def rate_per_min(self) -> float:
        return float(self.sent_last_minute)

    @property
    def rate_since_start_per_min(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or self.now
        minutes = max((end - self.started_at).total_seconds() / 60, 1 / 60)
        return self.counts["sent"] / minutes

    @property
    def counters_agree(self) -> bool:
        return (self.counter_sent, self.counter_failed) == (self.counts["sent"], self.counts["failed"])

    def as_json(self) -> dict[str, Any]:
        """The stable JSON shape of `dispara status --json`."""
        return {
            "id": str(self.id),
            "name": self.name,
            "status": self.status,
            "transport": self.transport,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "scheduled_for": _iso(self.scheduled_for),
            "status_reason": self.status_reason,
            "total": self.total,
            **{status: self.counts[status] for status in MESSAGE_STATUSES},
            **self.receipts.as_json(self.counts["sent"]),
            "percent_done": round(self.percent, 2),
            "rate_per_min": self.rate_per_min,
            "rate_since_start_per_min": _round(self.rate_since_start_per_min),
            "eta_seconds": _round(self.eta_seconds),
            "counters_agree": self.counters_agree,
            "zone": self.zone,
            "due": self.due,
            "last_claim_at": _iso(self.last_claim_at),
            "last_sent_at": _iso(self.last_sent_at),
            "stalled": self.stalled_since is not None,
            "stalled_since": _iso(self.stalled_since),
            "instances": [
                {
                    "name": i.name,
                    "sent": i.sent,
                    "failed": i.failed,
                    "pending": i.pending,
                    "next_send_at": _iso(i.next_send_at),
                    "paused": i.paused,
                    "paused_until": _iso(i.paused_until),
                    "pause_reason": i.pause_reason,
                    **i.receipts.as_json(i.sent),
                }
                for i in self.instances
            ],
            "errors": [{"message": message, "count": count} for message, count in self.errors],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def resolve(conn: Connection, tenant_id: UUID, ref: str) -> UUID:
    """The campaign an operator means by `ref`: an id, a unique id prefix, the `id` its file gave it, or a
    name (latest wins)."""
    ref = ref.strip()
    prefix = f"{ref.lower()}%" if _ID_PREFIX.match(ref.lower()) else None
    rows = all_dicts(conn, q("campaign_resolve"), {"tenant_id": tenant_id, "prefix": prefix, "ref": ref})
    by_id = [row for row in rows if row["by_id"]]
    if len(by_id) == 1:
        return UUID(str(by_id[0]["id"]))
    if len(by_id) > 1:
        shown = ", ".join(f"{str(row['id'])[:8]} ({row['name']})" for row in by_id[:5])
        raise InputError(f"campaign id prefix {ref!r} is ambiguous: {shown}; give more characters")
    if rows:
        return UUID(str(rows[0]["id"]))
    raise NotFoundError(f"no campaign {ref!r} in this tenant (see `dispara campaign list`)")


def snapshot(conn: Connection, tenant_id: UUID, campaign_id: UUID) -> Snapshot:
    row = one_dict(conn, q("campaign_snapshot"), {"campaign_id": campaign_id})
    if row is None:
        raise NotFoundError(f"campaign {campaign_id} no longer exists")
    delay_min, delay_max = float(row.pop("delay_min")), float(row.pop("delay_max"))
    snap = Snapshot(**{**row, "zone": row["zone"] or DEFAULT_ZONE})
    _count(conn, snap)
    _pacing(conn, snap, tenant_id, (delay_min + delay_max) / 2)
    _activity(conn, snap, delay_max)
    snap.errors = [
        (str(row["error"]), int(row["count"]))
        for row in all_dicts(conn, q("campaign_top_errors"), {"campaign_id": campaign_id})
    ]
    return snap


def _count(conn: Connection, snap: Snapshot) -> None:
    """Counts, receipts and the last claim and send, per instance, from the summary (a few rows)."""
    snap.counts = dict.fromkeys(MESSAGE_STATUSES, 0)
    for row in summary.by_instance(conn, snap.id):
        c = row.counts
        progress = InstanceProgress(row.instance or "-", sent=c["sent"], failed=c["failed"])
        progress.pending = sum(c[status] for status in MESSAGE_SENDABLE)
        progress.receipts = Receipts(c["delivered"], c["read"], c["replied"])
        snap.instances.append(progress)
        for status in MESSAGE_STATUSES:
            snap.counts[status] += c[status]
        snap.receipts.delivered += c["delivered"]
        snap.receipts.read += c["read"]
        snap.receipts.replied += c["replied"]
        snap.last_claim_at = _latest(snap.last_claim_at, row.last_claim_at)
        snap.last_sent_at = _latest(snap.last_sent_at, row.last_sent_at)
    snap.instances.sort(key=lambda i: i.name)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else a or b


def _pacing(conn: Connection, snap: Snapshot, tenant_id: UUID, delay_mean: float) -> None:
    by_name = {i.name: i for i in snap.instances}
    params = {"tenant_id": tenant_id, "names": list(by_name)}
    for row in all_dicts(conn, q("campaign_instances_state"), params):
        progress = by_name[row["name"]]
        progress.next_send_at, progress.paused_until = row["next_send_at"], row["paused_until"]
        progress.pause_reason, progress.sent_today = row["pause_reason"], int(row["sent_today"])
    for row in all_dicts(conn, q("summary_sent_recently"), {"campaign_id": snap.id}):
        name, recent, span_s = row["instance"], row["recent"], row["span_s"]
        snap.sent_last_minute += row["last_minute"]
        if name in by_name and recent >= 2 and span_s:
            by_name[name].gap_s = float(span_s) / (recent - 1)
    snap.eta_seconds = _eta(snap, delay_mean)


def _activity(conn: Connection, snap: Snapshot, delay_max: float) -> None:
    snap.due = snap.counts["queued"]
    if snap.status != "processing" or not snap.due or snap.counts["sending"]:
        return
    waiting = [i for i in snap.instances if i.pending]
    # A paused instance or one at its daily cap is waiting on purpose, not stalled.
    if waiting and all(i.paused or (snap.daily_cap and i.sent_today >= snap.daily_cap) for i in waiting):
        return
    row = conn.execute(q("summary_oldest_due"), {"campaign_id": snap.id}).fetchone()
    oldest_due = row[0] if row else None
    if oldest_due is None:  # what is queued waits for a retry time still ahead
        return
    idle_since = max(t for t in (snap.last_claim_at, oldest_due) if t is not None)
    if (snap.now - idle_since).total_seconds() >= max(STALL_AFTER_S, 3 * delay_max):
        snap.stalled_since = idle_since
        snap.eta_seconds = None


def _eta(snap: Snapshot, delay_mean: float) -> float | None:
    """Instances send in parallel, each one message at a time: the slowest instance sets the end."""
    if snap.finished:
        return 0.0
    if snap.status == "paused":
        return None
    etas = []
    for i in snap.instances:
        if i.pending == 0:
            continue
        gap = i.gap_s if i.gap_s is not None else delay_mean
        wait = 0.0
        for until in (i.next_send_at, i.paused_until):
            if until is not None and until > snap.now:
                wait = max(wait, (until - snap.now).total_seconds())
        if snap.scheduled_for and snap.scheduled_for > snap.now:
            wait = max(wait, (snap.scheduled_for - snap.now).total_seconds())
        etas.append(wait + i.pending * gap)
    return max(etas) if etas else None


def latest_failures(
    conn: Connection, campaign_id: UUID, limit: int = 5
) -> list[tuple[str, str, str, datetime]]:
    rows = conn.execute(
        q("campaign_latest_failures"), {"campaign_id": campaign_id, "limit": limit}
    ).fetchall()
    return [(str(p), str(i), str(e), t) for p, i, e, t in rows]
