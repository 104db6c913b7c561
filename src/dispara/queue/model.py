"""The values that travel between the claim loop, the sender threads and the completer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from dispara.db import MessageId
from dispara.states import ErrorKind, JobStatus


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as the claim returned it, with its message and campaign pacing when it has them."""

    id: int
    instance: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    campaign_id: UUID | None
    message_id: MessageId | None
    started_at: datetime
    delay_min: float
    delay_max: float
    message_status: str | None
    phone: str | None
    content: str | None
    message_type: str | None
    media_url: str | None
    file_name: str | None
    tenant_id: UUID | None = None

    @property
    def task_type(self) -> str:
        return str(self.payload.get("task_type", ""))

    @property
    def data(self) -> dict[str, Any]:
        data = self.payload.get("data")
        return data if isinstance(data, dict) else {}

    @classmethod
    def from_row(cls, job: Mapping[str, Any], message: Mapping[str, Any] | None) -> ClaimedJob:
        """From a claim's job row (by column name) and, when it has a sendable message, that message's row."""
        payload = job["payload"]
        m = message or {}
        return cls(
            id=job["id"],
            instance=job["instance"],
            payload=payload if isinstance(payload, dict) else {},
            attempts=job["attempts"],
            max_attempts=job["max_attempts"],
            campaign_id=job["campaign_id"],
            message_id=job["message_id"],
            started_at=job["started_at"],
            delay_min=float(job.get("delay_min") or 0.0),
            delay_max=float(job.get("delay_max") or 0.0),
            message_status=m.get("status"),
            phone=m.get("phone_number"),
            content=m.get("message_content"),
            message_type=m.get("message_type"),
            media_url=m.get("media_url"),
            file_name=m.get("file_name"),
            tenant_id=job.get("tenant_id"),
        )


OutcomeKind = Literal["sent", "done", "failed", "retry", "release", "skip", "cancel"]


@dataclass(slots=True)
class Outcome:
    """What happened to one claimed job; the completer turns a batch of these into a few statements.

    sent/done: success (a message / any other job). failed: final. retry: back to pending after `delay_s`.
    These four spend the attempt. release: back to pending now, no attempt spent (shutdown, paused instance
    or campaign). skip: the message was no longer sendable, the job completes without sending. cancel: the
    campaign was cancelled while the job waited in a claimed run: job and message are cancelled unsent.
    """

    job: ClaimedJob
    kind: OutcomeKind
    error: str | None = None
    error_kind: ErrorKind | None = None
    delay_s: float = 0.0
    key_id: str | None = None
    response: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


@dataclass(slots=True)
class RunEnd:
    """A run on one instance is over: release its lease after a gap, or pause it for `pause_s`.

    `streak` is the instance's failures in a row after this run (0 once a send succeeded, None: unchanged);
    `probe` asks for a connectionState check before its next send (None: unchanged). `halt_reason`
    pauses every running campaign of the tenant (the server refused our key).
    """

    instance: str
    gap_s: float
    tenant_id: UUID | None = None  # None: the worker's own tenant
    pause: bool = False
    pause_s: float = 0.0
    pause_reason: str | None = None
    streak: int | None = None
    probe: bool | None = None
    halt_reason: str | None = None


@dataclass(slots=True)
class Started:
    """A job's send is starting now: its start webhook event is written with the next stored batch."""

    job: ClaimedJob


@dataclass(slots=True)
class Finished:
    """A job whose final outcome is stored, for the finish webhook and the log."""

    job: ClaimedJob
    status: JobStatus
    finished_at: datetime | None


@dataclass
class Tally:
    """Counts a worker run reports; guarded by the completer, which alone writes them."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    skipped: int = 0
    lost: int = 0
    instances_paused: int = 0
    campaigns_completed: int = 0
    campaigns_paused: int = 0
    leases_reset: int = 0
    extra: dict[str, int] = field(default_factory=dict)
