"""What running one job means: `send-message` through the Sender, other task types through a registry.

Errors become outcomes here: permanent -> failed at once, transient -> retry with backoff until attempts
run out. `InstanceUnavailableError` is re-raised: the caller pauses the instance instead.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from dispara.config import Settings
from dispara.db import Connection
from dispara.errors import PermanentServiceError, ServiceError
from dispara.providers.base import InstanceUnavailableError, OutgoingMessage, Sender
from dispara.queue.backoff import DEFAULT_POLICY, RetryPolicy
from dispara.queue.model import ClaimedJob, Outcome
from dispara.states import MESSAGE_SENDABLE, MESSAGE_TYPES, ErrorKind

log = logging.getLogger("dispara.worker")

SEND_MESSAGE = "send-message"


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use: the settings, the WhatsApp sender and, for registered task types, the
    tenant, the lease holder's id, `connection()` (this thread's autocommit connection; never close it)
    and `services`, where a handler keeps the clients it builds once per worker (see dispara.audio).
    """

    settings: Settings
    sender: Sender
    policy: RetryPolicy = DEFAULT_POLICY
    tenant_id: UUID | None = None
    worker_id: str = "dispara"
    connection: Callable[[], Connection] | None = None
    services: dict[str, Any] = field(default_factory=dict, compare=False)


def close_services(ctx: HandlerContext) -> None:
    """Close the clients handlers kept in `ctx.services` (each one that has a close())."""
    for service in ctx.services.values():
        close = getattr(service, "close", None)
        if callable(close):
            close()


Handler = Callable[[ClaimedJob, HandlerContext], dict[str, Any] | None]
"""Runs a job of some other task type; returns its result, or raises a ServiceError."""

_HANDLERS: dict[str, Handler] = {}


def register(task_type: str, handler: Handler) -> None:
    """Let the worker claim and run jobs of `task_type` (audio jobs, ...)."""
    if task_type == SEND_MESSAGE:
        raise ValueError(f"{SEND_MESSAGE} is built in")
    _HANDLERS[task_type] = handler


def task_types() -> list[str]:
    """The task types this worker claims; jobs of any other type are left for a worker that knows them."""
    return [SEND_MESSAGE, *sorted(_HANDLERS)]


def execute(job: ClaimedJob, ctx: HandlerContext) -> Outcome:
    """Run one job and say what happened; raises InstanceUnavailableError for the caller to handle."""
    try:
        if job.task_type == SEND_MESSAGE:
            return _send_message(job, ctx.sender)
        handler = _HANDLERS.get(job.task_type)
        if handler is None:
            return Outcome(job, "failed", f"no handler for task type {job.task_type!r}", "permanent")
        return Outcome(job, "done", result=handler(job, ctx))
    except InstanceUnavailableError:
        raise
    except ServiceError as exc:
        return failure(job, exc, ctx.policy)
    except Exception as exc:  # a bug or an unwrapped library error: retry a few times, never crash the worker
        log.warning("job %d: unexpected %s", job.id, type(exc).__name__, exc_info=True)
        return failure(job, exc, ctx.policy)


def failure(job: ClaimedJob, exc: BaseException, policy: RetryPolicy = DEFAULT_POLICY) -> Outcome:
    """The outcome of a failed attempt: fail now, or retry later while attempts remain."""
    text = str(exc) or type(exc).__name__
    transient = not isinstance(exc, ServiceError) or exc.transient
    if not transient:
        kind: ErrorKind = "not_on_whatsapp" if _not_on_whatsapp(exc) else "permanent"
        return Outcome(job, "failed", text, kind)
    if policy.exhausted(job.attempts, job.max_attempts):
        return Outcome(job, "failed", f"{text} (gave up after {job.attempts} attempts)", "transient")
    retry_after = getattr(exc, "retry_after", None)
    hint = retry_after if isinstance(retry_after, int | float) else None
    delay = policy.retry_delay(job.attempts, hint)
    return Outcome(job, "retry", text, delay_s=delay)


def _not_on_whatsapp(exc: BaseException) -> bool:
    # NotOnWhatsAppError carries the flag; the text check covers errors from other senders.
    return bool(getattr(exc, "not_on_whatsapp", False)) or "is not on WhatsApp" in str(exc)


def _send_message(job: ClaimedJob, sender: Sender) -> Outcome:
    if job.message_id is None or job.phone is None:
        return Outcome(job, "failed", "send-message job without its message_logs row", "permanent")
    if job.message_status not in MESSAGE_SENDABLE:
        # The claim returns no message when it was cancelled, sent or failed in the meantime.
        return Outcome(job, "skip", result={"skipped": "message no longer queued (cancelled or finished)"})
    if job.instance is None:
        return Outcome(job, "failed", "send-message job without an instance", "permanent")
    if job.message_type not in MESSAGE_TYPES:
        return Outcome(job, "failed", f"unknown message type {job.message_type!r}", "permanent")
    message_type = job.message_type
    is_text = message_type == "text"
    msg = OutgoingMessage(
        instance=job.instance,
        number=job.phone,
        message_type=message_type,
        text=job.content if is_text else None,
        media_url=None if is_text else media_source(job.media_url),
        caption=None if is_text or message_type == "audio" else job.content,
        file_name=job.file_name,
    )
    result = sender.send(msg)
    return Outcome(job, "sent", key_id=result.key_id, response=result.response)


def media_source(media: str | None) -> str | None:
    """What Evolution accepts as media: an http(s) URL as is, a local file as plain base64."""
    if media is None or media.startswith(("http://", "https://")):
        return media
    path = Path(media)
    try:
        stat = path.stat()
    except OSError:
        raise PermanentServiceError(f"media file {media} is not readable on this worker") from None
    return _encoded(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _encoded(path: str, mtime_ns: int, size: int) -> str:
    # Keyed on mtime and size too, so an edited file is read again; a campaign sends the same few files.
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")
