"""The audio task types on the queue's registry; `install()` makes a worker claim and run them.

A job with `run_location: external` is handed whole to the external worker instead of run here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dispara.audio import transcribe, tts
from dispara.audio.payloads import TRANSCRIBE, TTS, validate
from dispara.audio.services import JobEnv, services
from dispara.errors import InputError, PermanentServiceError
from dispara.queue import handlers
from dispara.queue.model import ClaimedJob

Local = Callable[[ClaimedJob, JobEnv], dict[str, Any]]


def install() -> None:
    """Register the audio task types (again is harmless)."""
    handlers.register(TTS, lambda job, ctx: _run(job, ctx, tts.run))
    handlers.register(TRANSCRIBE, lambda job, ctx: _run(job, ctx, transcribe.run))


def _run(job: ClaimedJob, ctx: handlers.HandlerContext, local: Local) -> dict[str, Any]:
    location = job.payload.get("run_location") or "supabase"
    try:
        if location == "external":
            return external(job, ctx)
        if location != "supabase":
            raise PermanentServiceError(f"unknown run_location {location!r} (use supabase or external)")
        return local(job, JobEnv(ctx))
    except InputError as exc:  # a bad payload does not get better by retrying
        raise PermanentServiceError(str(exc)) from None


def external(job: ClaimedJob, ctx: handlers.HandlerContext) -> dict[str, Any]:
    """POST the job to EXTERNAL_WORKER_URL; its JSON answer is the result."""
    validate(job.task_type, job.data)
    client = services(ctx).external
    if client is None:
        raise PermanentServiceError("run_location external, but EXTERNAL_WORKER_URL is not set")
    body = {
        "job_id": job.id,
        "attempt": job.attempts,
        "run_location": "external",
        "task_type": job.task_type,
        "data": job.data,
    }
    return client.run(body)
