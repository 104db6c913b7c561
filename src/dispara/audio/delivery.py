"""Delivering an audio job's result on WhatsApp through the job's instance, never alongside a campaign send.

The delivery takes the instance's lease (the one campaign runs hold while they send), waits briefly when a
campaign holds it, and otherwise hands the job back to the queue to try later.
"""

from __future__ import annotations

import logging
import threading
import time
from uuid import UUID

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
BUSY_RETRY_S = 5.0  # an instance that stayed busy is not tried again sooner than this


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
    evo = env.settings.evolution
    send_s = evo.typing_delay_ms / 1000 + evo.timeout_extra_s
    lease_s = send_s + LEASE_MARGIN_S
    params = {"tenant_id": env.tenant_id, "name": msg.instance, "holder": f"{env.ctx.worker_id}:audio"}
    params["lease_s"] = lease_s
    wait_s = env.settings.audio.instance_wait_s
    deadline = time.monotonic() + wait_s
    gate = _gate(env.tenant_id, msg.instance)
    if not gate.enter(wait_s):
        raise _busy(msg.instance, wait_s)
    try:
        # The database lease passes from one delivery of this process to the next while any is waiting,
        # and is renewed before it could run out during a send.
        if time.monotonic() + send_s + 5.0 > gate.leased_until:
            _lease(env, params, deadline)
            gate.leased_until = time.monotonic() + lease_s
        try:
            return env.ctx.sender.send(msg)
        finally:
            if not gate.others_waiting():
                gate.leased_until = 0.0
                try:
                    env.conn().execute(q("audio_instance_release"), params)
                except Exception:  # the lease expires by itself; the send has happened and is not redone
                    log.warning("job %d: could not release instance %s (lease expires)", job.id, msg.instance)
    finally:
        gate.lock.release()


class _Gate:
    """This process's deliveries on one instance: one at a time, queued on a lock rather than polling."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
        self.leased_until = 0.0  # monotonic time until which this process holds the database lease

    def enter(self, timeout: float) -> bool:
        with _guard:
            self.waiting += 1
        try:
            return self.lock.acquire(timeout=timeout)
        finally:
            with _guard:
                self.waiting -= 1

    def others_waiting(self) -> bool:
        with _guard:
            return self.waiting > 0


_gates: dict[tuple[UUID, str], _Gate] = {}
_guard = threading.Lock()


def _gate(tenant_id: UUID, instance: str) -> _Gate:
    with _guard:
        return _gates.setdefault((tenant_id, instance), _Gate())


def _busy(instance: str, wait_s: float) -> TransientServiceError:
    return TransientServiceError(
        f"instance {instance} stayed busy with another send for {wait_s:g}s; delivery retried later",
        retry_after=max(BUSY_RETRY_S, wait_s),
    )


def _lease(env: JobEnv, params: dict[str, object], deadline: float) -> None:
    pause = 0.02
    while env.conn().execute(q("audio_instance_lease"), params).fetchone() is None:
        if time.monotonic() >= deadline:
            raise _busy(str(params["name"]), env.settings.audio.instance_wait_s)
        time.sleep(pause)  # another process's send (a campaign run) holds it; its lease ends with its run
        pause = min(pause * 2, 0.5)
