"""What one QStash delivery does: decide under the message's row lock, send through the worker's handler,
store the outcome with the worker's counter logic, and answer so QStash retries only what may succeed.

Idempotent on the message's status: a redelivery of a sent, failed or cancelled message changes nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg_pool import ConnectionPool

from dispara.config import Settings
from dispara.db import Connection, MessageId, message_id_json, parse_message_id
from dispara.db.queries import q
from dispara.providers.base import InstanceUnavailableError
from dispara.queue import handlers, webhooks
from dispara.queue.backoff import RetryPolicy
from dispara.queue.complete import BatchResult, apply_message_outcomes
from dispara.queue.model import ClaimedJob, Outcome
from dispara.queue.webhooks import JobEvents
from dispara.server.grouped import GroupCommit

log = logging.getLogger("dispara.serve")

NON_RETRYABLE = {"Upstash-NonRetryable-Error": "true"}
_FIELDS: dict[str, type | tuple[type, ...]] = {"message_id": (int, str), "campaign_id": str, "tenant_id": str}


def _stand_in_job_id(message_id: MessageId) -> int:
    # A delivery has no job: its message's id stands in, a uuid as a positive 63-bit number.
    return message_id if isinstance(message_id, int) else message_id.int >> 65


class BadDelivery(ValueError):
    """The body is not a delivery dispara published; the message names the field."""


@dataclass(frozen=True)
class DeliveryBody:
    message_id: MessageId
    campaign_id: UUID
    tenant_id: UUID

    @classmethod
    def parse(cls, raw: bytes) -> DeliveryBody:
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadDelivery("body: not JSON") from None
        if not isinstance(data, dict):
            raise BadDelivery("body: not a JSON object")
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DeliveryBody:
        for name, kind in _FIELDS.items():
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BadDelivery(
                    f"{name}: missing or not a {'number or uuid' if name == 'message_id' else 'str'}"
                )
        try:
            message_id = parse_message_id(data["message_id"])
        except ValueError:
            raise BadDelivery("message_id: not a number or a UUID") from None
        try:
            return cls(message_id, UUID(data["campaign_id"]), UUID(data["tenant_id"]))
        except ValueError:
            raise BadDelivery("campaign_id/tenant_id: not a UUID") from None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


@dataclass(frozen=True)
class _Locked:
    message_status: str
    stale: bool
    tenant_id: UUID
    campaign_id: UUID
    job: ClaimedJob
    campaign_status: str
    transport: str
    opted_out: bool


class Deliveries:
    """Handles deliveries and failure callbacks; safe to call from many threads at once."""

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Connection],
        ctx: handlers.HandlerContext,
        events: JobEvents,
        tenant: UUID,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.ctx = ctx
        self.events = events
        self.tenant = tenant
        self.policy = RetryPolicy.of(settings.worker)
        self.commits = GroupCommit(pool, self.policy, self._record_events, self._release_instances)

    def close(self) -> None:
        self.commits.close()

    def _record_events(self, conn: Connection, result: BatchResult) -> None:
        webhooks.insert(conn, self.tenant, self.events.rows([], result))
        self.events.dispatcher.wake()

    # ---- deliveries ------------------------------------------------------------------------------------
    def deliver(self, body: DeliveryBody, retried: int) -> Answer:
        with self.pool.connection() as conn:
            decided = self._decide(conn, body, retried)
        if isinstance(decided, Answer):
            return decided
        job = decided.job
        if self.events.wants_start(job):
            with self.pool.connection() as conn, conn.transaction():
                webhooks.insert(conn, self.tenant, self.events.rows([job], None))
            self.events.dispatcher.wake()
        try:
            outcome = handlers.execute(job, self.ctx)
        except InstanceUnavailableError as exc:
            return self._instance_unavailable(decided, exc)
        moved = self.commits.store(outcome, decided)
        return self._answer(outcome, moved)

    def _decide(self, conn: Connection, body: DeliveryBody, retried: int) -> _Locked | Answer:
        """Under the row lock: the message to send now (its instance taken), or the answer if none."""
        with conn.transaction():
            locked = self._lock(conn, body, retried)
            if isinstance(locked, Answer):
                return locked
            params = {"message_id": body.message_id}
            if locked.message_status in ("sent", "failed", "cancelled"):
                return Answer(200, {"status": locked.message_status, "changed": False})
            if locked.message_status == "sending" and not locked.stale:
                return Answer(503, {"status": "sending", "changed": False}, _retry_after(5))
            if locked.campaign_status == "cancelled" or locked.opted_out:
                reason = (
                    "campaign cancelled"
                    if not locked.opted_out
                    else "opted out after the campaign was queued"
                )
                conn.execute(q("qstash_delivery_cancel"), {**params, "reason": reason})
                return Answer(200, {"status": "cancelled", "changed": True})
            if locked.campaign_status not in ("pending", "scheduled", "processing"):
                reason = f"held: campaign {locked.campaign_status} when QStash delivered it"
                conn.execute(q("qstash_delivery_hold"), {**params, "reason": reason})
                return Answer(200, {"status": "held", "changed": True})
            if locked.job.instance is None:
                return locked  # nothing to pace or mark: the handler fails it for good
            if not self._take_instance(conn, locked):
                if locked.job.attempts >= locked.job.max_attempts:  # never burn a message on a busy number
                    conn.execute(q("qstash_delivery_hold"), {**params, "reason": "held: instance busy"})
                    return Answer(200, {"status": "held", "changed": True})
                return Answer(503, {"status": "instance busy", "changed": False}, _retry_after(1))
            return locked

    @staticmethod
    def _instance_params(locked: _Locked) -> dict[str, Any]:
        job = locked.job
        return {"tenant_id": locked.tenant_id, "name": job.instance, "holder": f"serve:{job.message_id}"}

    def _take_instance(self, conn: Connection, locked: _Locked) -> bool:
        """Take the instance's lease and mark the message `sending`; False if another send holds it."""
        params = {
            **self._instance_params(locked),
            "lease_s": self.settings.server.sending_lease_s,
            "campaign_id": locked.campaign_id,
            "message_id": locked.job.message_id,
        }
        if conn.execute(q("qstash_delivery_take"), params).fetchone() is not None:
            return True
        conn.execute(q("instances_ensure"), {"tenant_id": locked.tenant_id, "names": [locked.job.instance]})
        return conn.execute(q("qstash_delivery_take"), params).fetchone() is not None

    def _release_instance(self, conn: Connection, locked: _Locked, *, sent: bool) -> None:
        conn.execute(q("qstash_instance_release"), {**self._instance_params(locked), "sent": sent})

    @staticmethod
    def _release_instances(conn: Connection, stored: list[tuple[Outcome, Any]]) -> None:
        cols: dict[str, list[Any]] = {"tenant_ids": [], "names": [], "holders": [], "sent": []}
        for outcome, locked in stored:
            params = Deliveries._instance_params(locked)
            cols["tenant_ids"].append(params["tenant_id"])
            cols["names"].append(params["name"])
            cols["holders"].append(params["holder"])
            cols["sent"].append(outcome.kind == "sent")
        conn.execute(q("qstash_instances_release"), cols)

    def _lock(self, conn: Connection, body: DeliveryBody, retried: int) -> _Locked | Answer:
        row = conn.execute(
            q("qstash_delivery_lock"),
            {"message_id": body.message_id, "lease_s": self.settings.server.sending_lease_s},
        ).fetchone()
        if row is None:
            return Answer(489, {"error": "no such message"}, NON_RETRYABLE)
        (status, stale, m_tenant, campaign_id, phone, content, mtype, media, file_name, instance,
         c_status, c_tenant, retries, transport, dmin, dmax, opted_out) = row  # fmt: skip
        if body.tenant_id != c_tenant or body.tenant_id != m_tenant or body.campaign_id != campaign_id:
            log.warning("delivery of message %s refused: tenant or campaign does not match", body.message_id)
            return Answer(489, {"error": "tenant or campaign does not match the message"}, NON_RETRYABLE)
        if transport != "qstash":  # the jobs queue owns it: one transport per message
            return Answer(489, {"error": f"message belongs to a {transport} campaign"}, NON_RETRYABLE)
        job = ClaimedJob(
            id=_stand_in_job_id(body.message_id),
            instance=instance,
            payload={"task_type": handlers.SEND_MESSAGE,
                     "data": {"message_id": message_id_json(body.message_id),
                              "campaign_id": str(campaign_id)}},
            attempts=retried + 1,
            max_attempts=int(retries) + 1,
            campaign_id=campaign_id,
            message_id=body.message_id,
            started_at=datetime.now(UTC),
            delay_min=float(dmin),
            delay_max=float(dmax),
            message_status="sending",
            phone=phone,
            content=content,
            message_type=mtype,
            media_url=media,
            file_name=file_name,
        )  # fmt: skip
        return _Locked(status, bool(stale), m_tenant, campaign_id, job, c_status, transport, bool(opted_out))

    def _instance_unavailable(self, locked: _Locked, exc: InstanceUnavailableError) -> Answer:
        # The message is fine, the number is not: never burn it. On the last attempt dispara takes it back.
        job = locked.job
        params = {"message_id": job.message_id, "reason": f"instance unavailable: {exc}"}
        with self.pool.connection() as conn, conn.transaction():
            self._release_instance(conn, locked, sent=False)
            if job.attempts >= job.max_attempts:
                conn.execute(q("qstash_delivery_hold"), params)
                return Answer(200, {"status": "held", "changed": True})
            conn.execute(q("qstash_delivery_release"), params)
        return Answer(
            503, {"status": "instance unavailable", "changed": False}, _retry_after(exc.retry_after or 30)
        )

    @staticmethod
    def _answer(outcome: Outcome, moved: bool) -> Answer:
        changed = moved or outcome.kind == "retry"
        if outcome.kind == "retry":
            return Answer(503, {"status": "retry", "changed": changed}, _retry_after(outcome.delay_s))
        if outcome.kind == "failed":
            return Answer(200, {"status": "failed", "error_kind": outcome.error_kind, "changed": changed})
        if outcome.kind == "skip":
            return Answer(200, {"status": "skipped", "changed": False})
        return Answer(200, {"status": "sent", "changed": changed})

    # ---- failure callbacks -----------------------------------------------------------------------------
    def failed(self, callback: Mapping[str, Any]) -> Answer:
        """QStash gave up on a delivery: fail its message (once), unless it already finished."""
        try:
            source = base64.b64decode(str(callback.get("sourceBody") or ""), validate=False)
            body = DeliveryBody.parse(source)
        except (BadDelivery, ValueError) as exc:
            return Answer(200, {"status": "ignored", "error": f"sourceBody: {exc}"})
        retried = int(callback.get("retried") or 0)
        with self.pool.connection() as conn:
            with conn.transaction():
                locked = self._lock(conn, body, retried)
            if isinstance(locked, Answer):
                return Answer(200, {"status": "ignored", "error": locked.body.get("error")})
            if locked.message_status not in ("pending", "queued", "sending"):
                return Answer(200, {"status": locked.message_status, "changed": False})
            if locked.message_status == "sending" and not locked.stale:
                # Another delivery is sending it right now: its outcome decides; ask for the callback later.
                return Answer(503, {"status": "sending", "changed": False}, _retry_after(5))
            reason = (
                f"QStash gave up after {retried + 1} deliveries (last answer HTTP {callback.get('status')})"
            )
            outcome = Outcome(locked.job, "failed", reason, "transient")
            with conn.transaction():
                result = apply_message_outcomes(conn, [outcome], policy=self.policy)
                self._record_events(conn, result)
        return Answer(200, {"status": "failed", "changed": bool(result.finished)})
