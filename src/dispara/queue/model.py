"""The values that travel between the claim loop, the sender threads and the completer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
ErrorKind = Literal["transient", "permanent", "not_on_whatsapp"]

# Messages in these states may still be sent; anything else (cancelled, sent, failed) is left alone.
SENDABLE = frozenset({"pending", "queued", "sending"})


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as the claim returned it, with its message and campaign pacing when it has them."""

    id: int
    instance: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    campaign_id: UUID | None
    message_id: int | None
    started_at: datetime
    delay_min: float
    delay_max: float
    message_status: str | None
    phone: str | None
    content: str | None
    message_type: str | None
    media_url: str | None
    file_name: str | None

    @property
    def task_type(self) -> str:
        return str(self.payload.get("task_type", ""))

    @property
    def data(self) -> dict[str, Any]:
        data = self.payload.get("data")
        return data if isinstance(data, dict) else {}

    @classmethod
    def from_rows(cls, job: Sequence[Any], message: Sequence[Any] | None) -> ClaimedJob:
        """From a claim's 'j' row and, when it has a sendable message, that message's 'm' row."""
        (
            _,
            id_,
            instance,
            payload,
            attempts,
            max_attempts,
            campaign_id,
            message_id,
            started_at,
            delay_min,
            delay_max,
            *_rest,
        ) = job
        status, phone, content, message_type, media_url, file_name = (
            message[13:19] if message is not None else (None,) * 6
        )
        return cls(
            id=id_,
            instance=instance,
            payload=payload if isinstance(payload, dict) else {},
            attempts=attempts,
            max_attempts=max_attempts,
            campaign_id=campaign_id,
            message_id=message_id,
            started_at=started_at,
            delay_min=float(delay_min or 0.0),
            delay_max=float(delay_max or 0.0),
            message_status=status,
            phone=phone,
            content=content,
            message_type=message_type,
            media_url=media_url,
            file_name=file_name,
        )


OutcomeKind = Literal["sent", "done", "failed", "retry", "release", "skip"]


@dataclass(slots=True)
class Outcome:
    """What happened to one claimed job; the completer turns a batch of these into a few statements.

    sent/done: success (a message / any other job). failed: final. retry: back to pending after `delay_s`,
    attempt spent. release: back to pending now, attempt refunded (shutdown, paused instance). skip: the
    message was no longer sendable (cancelled meanwhile), the job completes without sending.
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
    """A run on one instance is over: release its lease after a gap, or pause it."""

    instance: str
    gap_s: float
    pause: bool = False
    pause_min_s: float = 0.0
    pause_reason: str | None = None


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
