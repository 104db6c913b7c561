"""Operator control of a running campaign: pause, resume, cancel, retry failed messages."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.errors import InputError

# Which failed messages `retry` takes: never numbers that are not on WhatsApp unless asked to.
RETRY_KINDS = {
    "transient": ["transient"],
    "default": ["transient", "permanent"],
    "all": ["transient", "permanent", "not_on_whatsapp"],
}


def _status(conn: Connection, campaign_id: UUID) -> str:
    row = conn.execute(q("campaign_status_of"), {"campaign_id": campaign_id}).fetchone()
    return str(row[0]) if row else "missing"


def pause(conn: Connection, campaign_id: UUID, reason: str = "paused by the operator") -> str:
    """Stop claiming the campaign's messages; those in flight finish. Returns the new status."""
    with conn.transaction():
        row = conn.execute(q("campaign_pause"), {"campaign_id": campaign_id, "reason": reason}).fetchone()
        if row is None:
            raise InputError(
                f"campaign is {_status(conn, campaign_id)}: only a running or scheduled one can pause"
            )
    return str(row[0])


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
