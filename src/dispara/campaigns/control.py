"""Operator control of a running campaign: pause, resume, cancel, retry failed messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.errors import InputError
from dispara.states import ERROR_KINDS

SETTLE_S = 30.0  # how long pause and cancel wait for the sends in flight (an HTTP timeout's worth)
SETTLE_POLL_S = 0.02

# Which failed messages `retry` takes: never numbers that are not on WhatsApp unless asked to.
RETRY_KINDS = {
    "transient": ["transient"],
    "default": ["transient", "permanent"],
    "all": list(ERROR_KINDS),
}


def _status(conn: Connection, campaign_id: UUID) -> str:
    row = conn.execute(q("campaign_status_of"), {"campaign_id": campaign_id}).fetchone()
    return str(row[0]) if row else "missing"


def pause(conn: Connection, campaign_id: UUID, reason: str = "paused by the operator") -> str:
    """Stop sending the campaign's messages; returns the new status once the sends in flight are over."""
    with conn.transaction():
        row = conn.execute(q("campaign_pause"), {"campaign_id": campaign_id, "reason": reason}).fetchone()
        if row is None:
            raise InputError(
                f"campaign is {_status(conn, campaign_id)}: only a running or scheduled one can pause"
            )
    settle(conn, campaign_id)
    return str(row[0])


def settle(conn: Connection, campaign_id: UUID, timeout_s: float = SETTLE_S) -> int:
    """Wait until no worker holds a claimed job of the campaign, so that when pause or cancel returns no
    further message goes out. Workers hear of the change by NOTIFY and put back their claimed runs at once;
    a send already on the wire finishes. Returns how many were still held at the timeout (a dead worker's
    jobs, whose leases will lapse).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute(q("campaign_in_flight"), {"campaign_id": campaign_id}).fetchone()
        conn.commit()
        held = int(row[0]) if row else 0
        if held == 0 or time.monotonic() >= deadline:
            return held
        time.sleep(SETTLE_POLL_S)


def resume(conn: Connection, campaign_id: UUID) -> str:
    with conn.transaction():
        row = conn.execute(q("campaign_resume"), {"campaign_id": campaign_id}).fetchone()
        if row is None:
            raise InputError(f"campaign is {_status(conn, campaign_id)}, not paused")
    return str(row[0])


@dataclass(frozen=True)
class Cancelled:
    messages: int
    jobs: int


def cancel(conn: Connection, campaign_id: UUID, reason: str = "cancelled by the operator") -> Cancelled:
    with conn.transaction():
        row = conn.execute(q("campaign_cancel"), {"campaign_id": campaign_id, "reason": reason}).fetchone()
        assert row is not None
        if row[0] == 0:
            raise InputError(f"campaign is already {_status(conn, campaign_id)}")
    settle(conn, campaign_id)
    return Cancelled(messages=int(row[1]), jobs=int(row[2]))


def retry(conn: Connection, campaign_id: UUID, *, scope: str = "default") -> int:
    """Requeue failed messages of the kinds in RETRY_KINDS[scope]; returns how many."""
    with conn.transaction():
        if _status(conn, campaign_id) == "cancelled":
            raise InputError("campaign is cancelled: its failed messages are not retried")
        row = conn.execute(
            q("campaign_retry"), {"campaign_id": campaign_id, "kinds": RETRY_KINDS[scope]}
        ).fetchone()
    return int(row[0]) if row else 0
