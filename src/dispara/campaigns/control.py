"""Operator control of a running campaign: pause, resume, cancel, retry failed messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import one_dict
from dispara.errors import InputError
from dispara.states import ERROR_KINDS

SETTLE_S = 30.0  # how long pause and cancel wait for the sends in flight (an HTTP timeout's worth)
SETTLE_POLL_S = 0.02

# Which failed messages `retry` takes: never numbers that are not on WhatsApp unless asked to.
RETRY_KINDS: dict[str, list[str]] = {
    "transient": ["transient"],
    "default": ["transient", "permanent"],
    "all": list(ERROR_KINDS),
}


def _status(conn: Connection, campaign_id: UUID, *, lock: bool = False) -> str:
    query = q("campaign_status_for_update") if lock else q("campaign_status_of")
    row = conn.execute(query, {"campaign_id": campaign_id}).fetchone()
    return str(row[0]) if row else "missing"


RUNNING = frozenset({"pending", "scheduled", "processing"})


class Transition(str):
    """The campaign's status after a pause or resume; `changed` is False when it already was so."""

    changed: bool

    def __new__(cls, status: str, *, changed: bool) -> Transition:
        made = super().__new__(cls, status)
        made.changed = changed
        return made


def pause(conn: Connection, campaign_id: UUID, reason: str = "paused by the operator") -> Transition:
    """Stop sending the campaign's messages; returns once the sends in flight are over. A paused campaign
    stays as it is.
    """
    with conn.transaction():
        row = conn.execute(q("campaign_pause"), {"campaign_id": campaign_id, "reason": reason}).fetchone()
        if row is None:
            status = _status(conn, campaign_id)
            if status == "paused":
                return Transition(status, changed=False)
            raise InputError(f"campaign is {status}: only a running or scheduled one can pause")
    settle(conn, campaign_id)
    return Transition(str(row[0]), changed=True)


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


def resume(conn: Connection, campaign_id: UUID) -> Transition:
    """Let a paused campaign send again; a running one stays as it is."""
    with conn.transaction():
        row = conn.execute(q("campaign_resume"), {"campaign_id": campaign_id}).fetchone()
        if row is None:
            status = _status(conn, campaign_id)
            if status in RUNNING:
                return Transition(status, changed=False)
            raise InputError(f"campaign is {status}, not paused")
    return Transition(str(row[0]), changed=True)


@dataclass(frozen=True)
class Cancelled:
    messages: int
    jobs: int


def cancel(conn: Connection, campaign_id: UUID, reason: str = "cancelled by the operator") -> Cancelled:
    with conn.transaction():
        row = one_dict(conn, q("campaign_cancel"), {"campaign_id": campaign_id, "reason": reason})
        assert row is not None
        if row["cancelled"] == 0:
            raise InputError(f"campaign is already {_status(conn, campaign_id)}")
    settle(conn, campaign_id)
    return Cancelled(messages=int(row["messages"]), jobs=int(row["jobs"]))


def delete(conn: Connection, campaign_id: UUID) -> Deleted:
    """Remove a campaign with its message logs and jobs; refused while it may still send."""
    with conn.transaction():
        # The row lock keeps a worker from starting the campaign while it is being deleted.
        status = _status(conn, campaign_id, lock=True)
        if status == "processing":
            raise InputError("campaign is sending: pause or cancel it first (`dispara campaign cancel`)")
        in_flight = conn.execute(q("campaign_in_flight"), {"campaign_id": campaign_id}).fetchone()
        if in_flight and in_flight[0]:
            raise InputError(
                f"{in_flight[0]} of its messages are being sent right now: try again in a minute"
            )
        row = conn.execute(q("campaign_delete"), {"campaign_id": campaign_id}).fetchone()
    assert row is not None
    return Deleted(messages=int(row[0]), jobs=int(row[1]))


@dataclass(frozen=True)
class Deleted:
    messages: int
    jobs: int


def retry(conn: Connection, campaign_id: UUID, *, scope: str = "default") -> int:
    """Requeue failed messages of the kinds in RETRY_KINDS[scope]; returns how many."""
    with conn.transaction():
        if _status(conn, campaign_id) == "cancelled":
            raise InputError("campaign is cancelled: its failed messages are not retried")
        row = conn.execute(
            q("campaign_retry"), {"campaign_id": campaign_id, "kinds": RETRY_KINDS[scope]}
        ).fetchone()
    return int(row[0]) if row else 0
