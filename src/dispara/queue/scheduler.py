"""Campaign start times and send windows, applied while the queue runs.

A due `scheduled` campaign becomes `processing`; one whose window has closed goes back to `scheduled`
until the window's next opening, so its messages wait without each job being touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dispara.campaigns.schedule import window_from_document
from dispara.db import Connection
from dispara.db.clock import db_now
from dispara.db.queries import q
from dispara.db.rows import all_dicts


@dataclass(frozen=True)
class Tick:
    started: int
    held: int
    next_change: datetime | None
    """The earliest moment a held or scheduled campaign is due: when the worker should look again."""
    now: datetime
    """The database's clock when the tick ran: every decision here is taken on it, never a host's."""


def tick(conn: Connection, now: datetime | None = None) -> Tick:
    """Start due campaigns and hold those outside their window, as of `now` (default: the database's
    clock); commits.
    """
    started = held = 0
    upcoming: list[datetime] = []
    with conn.transaction():
        now = now or db_now(conn)
        for row in all_dicts(conn, q("scheduler_candidates")):
            campaign_id, status, scheduled_for = row["id"], row["status"], row["scheduled_for"]
            window = window_from_document(row["document"])
            due = max(now, scheduled_for) if scheduled_for else now
            opens = window.next_open(due) if window else due
            if opens <= now:
                if status == "scheduled":
                    started += conn.execute(q("scheduler_start"), {"id": campaign_id}).rowcount
                continue
            upcoming.append(opens)
            if status == "processing" or opens != scheduled_for:
                reason = (
                    f"outside the send window until {opens.isoformat(timespec='minutes')}" if window else None
                )
                params = {"id": campaign_id, "status": status, "until": opens, "reason": reason}
                changed = conn.execute(q("scheduler_hold"), params).rowcount
                held += changed if status == "processing" else 0
    return Tick(started, held, min(upcoming) if upcoming else None, now)
