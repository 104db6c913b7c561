"""Delivering an audio job's result on WhatsApp through the job's instance, never alongside a campaign send.

The delivery takes the instance's lease (the one campaign runs hold while they send), waits briefly when a
campaign holds it, and otherwise hands the job back to the queue to try later.
"""

from __future__ import annotations

import logging
import time

from dispara.audio.services import JobEnv
from dispara.db.queries import q
from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.base import OutgoingMessage, SendResult
from dispara.providers.outbox import OutboxSender
from dispara.providers.storage import LocalStorage, Storage
from dispara.queue.model import ClaimedJob

log = logging.getLogger("dispara.audio")

OUTBOX_INSTANCE = "outbox"
LEASE_MARGIN_S = 30.0


def instance_for(env: JobEnv, named: str | None) -> str:
    """The job's instance, else audio.instance; the outbox needs none."""
    instance = named or env.settings.audio.instance
    if instance:
        return instance
    if isinstance(env.ctx.sender, OutboxSender):
        return OUTBOX_INSTANCE
    raise PermanentServiceError(
        "no WhatsApp instance to deliver with: set audio.instance in the configuration or give --instance"
    )


def media_for(env: JobEnv, storage: Storage, bucket: str, path: str) -> str:
    """What the sender gets for a stored file: a signed URL, base64, or (outbox) the local path."""
    if isinstance(env.ctx.sender, OutboxSender) and isinstance(storage, LocalStorage):
        return str(storage.file(bucket, path))  # the outbox records where the file is, not megabytes of it
    return storage.media_source(bucket, path, expires_s=env.settings.audio.signed_url_ttl_s)


def deliver(env: JobEnv, job: ClaimedJob, msg: OutgoingMessage) -> SendResult:
    """Send `msg` while holding its instance's lease; TransientServiceError if the instance stays busy."""
    holder = f"{env.ctx.worker_id}:audio:{job.id}"
    evo = env.settings.evolution
    params = {
        "tenant_id": env.tenant_id,
        "name": msg.instance,
        "holder": holder,
        "lease_s": evo.typing_delay_ms / 1000 + evo.timeout_extra_s + LEASE_MARGIN_S,
    }
    _lease(env, params)
    try:
        return env.ctx.sender.send(msg)
    finally:
        try:
            env.conn().execute(q("audio_instance_release"), params)
        except Exception:  # the lease expires by itself; the send has happened and must not be redone
            log.warning("job %d: could not release instance %s (lease expires)", job.id, msg.instance)


def _lease(env: JobEnv, params: dict[str, object]) -> None:
    deadline = time.monotonic() + env.settings.audio.instance_wait_s
    pause = 0.02
    while env.conn().execute(q("audio_instance_lease"), params).fetchone() is None:
        if time.monotonic() >= deadline:
            raise TransientServiceError(
                f"instance {params['name']} stayed busy with another send for "
                f"{env.settings.audio.instance_wait_s:g}s; delivery retried later"
            )
        time.sleep(pause)  # a campaign send takes well under a second; its lease ends with its run
        pause = min(pause * 2, 0.5)
