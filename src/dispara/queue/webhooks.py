"""Job start/finish webhooks, at least once: events are rows of `webhook_events`, written in the
transaction that stores what they report, and delivered from there by a thread of any worker of the
tenant, so a slow or dead receiver never holds up a send and a worker that exits or dies loses none.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from dispara import tenant_settings
from dispara.config import Settings, reveal
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.db.queries import q
from dispara.errors import DatabaseError
from dispara.providers.webhook import WebhookNotifier, job_event
from dispara.queue.backoff import RetryPolicy
from dispara.queue.claim import Run
from dispara.queue.complete import BatchResult, CampaignChange
from dispara.queue.handlers import SEND_MESSAGE
from dispara.queue.model import ClaimedJob

log = logging.getLogger("dispara.worker")

DELIVERY_BATCH = 50  # events taken per round trip
DELIVERY_LEASE_S = 60.0  # an event being delivered is left alone this long by other workers
IDLE_POLL_S = 1.0  # how often an idle deliverer looks for events other workers wrote


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str | None


def resolve_target(
    settings: Settings, values: Mapping[str, str], *, tenant_first: bool = False
) -> WebhookTarget | None:
    """settings.webhook.url (JOB_WEBHOOK in the environment), else the tenant setting JOB_WEBHOOK (the
    other way round with `tenant_first`, for a worker serving every tenant); `values`: the tenant's settings.
    """
    own = (
        WebhookTarget(values["JOB_WEBHOOK"], values.get("webhook-secret"))
        if "JOB_WEBHOOK" in values
        else None
    )
    if tenant_first and own is not None:
        return own
    url = settings.webhook.url or values.get("JOB_WEBHOOK")
    if not url:
        return None
    return WebhookTarget(url, reveal(settings.webhook.secret) or values.get("webhook-secret"))


def tenant_target(settings: Settings, conn: Connection, tenant_id: UUID) -> WebhookTarget | None:
    """resolve_target with the tenant's settings read from the database."""
    values: Mapping[str, str] = {}
    if not settings.webhook.url or not settings.webhook.secret:
        values = tenant_settings.all_values(conn, tenant_id)
    return resolve_target(settings, values)


@dataclass(frozen=True)
class EventRow:
    job_id: int | None
    campaign_id: UUID | None
    event: dict[str, Any]


def insert(conn: Connection, tenant_id: UUID, rows: Sequence[EventRow]) -> None:
    if not rows:
        return
    conn.execute(
        q("webhook_insert"),
        {
            "tenant_id": tenant_id,
            "job_ids": [r.job_id for r in rows],
            "campaign_ids": [r.campaign_id for r in rows],
            "events": [json.dumps(r.event, ensure_ascii=False, default=str) for r in rows],
        },
    )


class WebhookDispatcher:
    """Delivers the tenant's pending events to the current target; `configure` swaps the target."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: str,
        policy: RetryPolicy,
        factory: Callable[[WebhookTarget], WebhookNotifier] | None = None,
    ) -> None:
        self._settings = settings
        self._worker = worker
        self._policy = policy
        self._factory = factory or (lambda t: WebhookNotifier(t.url, secret=t.secret))
        self._target: WebhookTarget | None = None
        self._notifier: WebhookNotifier | None = None
        self._retired: list[WebhookNotifier] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._tenant: UUID | None = None

    @property
    def active(self) -> bool:
        return self._notifier is not None

    @property
    def label(self) -> str | None:
        return self._notifier.label if self._notifier is not None else None

    def configure(self, target: WebhookTarget | None) -> None:
        if target == self._target:
            return
        if self._notifier is not None:
            self._retired.append(self._notifier)  # closed at the end: a delivery may still use it
        self._target = target
        self._notifier = self._factory(target) if target is not None else None
        self._wake.set()

    def start(self, tenant_id: UUID) -> None:
        self._tenant = tenant_id
        self._thread = threading.Thread(target=self._loop, name="dispara-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Deliver what is due for up to `timeout` seconds; the rest stays queued for any worker."""
        if self._thread is not None and self.active:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(min(timeout, 1.0))
            if self._thread.is_alive():
                return  # stuck in a delivery: its client must stay open; the process exit ends it
        for notifier in [*self._retired, *([self._notifier] if self._notifier else [])]:
            notifier.close()

    def _loop(self) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            delivered = 0
            try:
                if self.active:
                    if conn is None or conn.closed or conn.broken:
                        conn = connect(self._settings, autocommit=True)
                    delivered = self._deliver_due(conn)
            except (psycopg.Error, DatabaseError) as exc:
                log.warning("webhook events: database unavailable (%s); retrying", exc)
                conn = None
            except Exception:  # a bug must not end deliveries for the rest of the run
                log.exception("webhook delivery failed")
            if delivered == 0:
                self._idle.set()
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
        if conn is not None:
            conn.close()

    def _deliver_due(self, conn: Connection) -> int:
        """One batch of due events, in order; returns how many were tried."""
        params = {
            "tenant_id": self._tenant,
            "worker": self._worker,
            "lease_s": DELIVERY_LEASE_S,
            "limit": DELIVERY_BATCH,
        }
        rows = conn.execute(q("webhook_claim"), params).fetchall()
        for event_id, event, attempts in rows:
            if self._stop.is_set() or (notifier := self._notifier) is None:
                conn.execute(q("webhook_release"), {"ids": [event_id]})
                continue
            error = notifier.deliver(event)
            if error is None:
                conn.execute(q("webhook_delivered"), {"id": event_id})
            else:
                delay = self._policy.webhook_retry_delay(attempts)
                final = attempts >= self._policy.webhook_attempts
                conn.execute(
                    q("webhook_failed"), {"id": event_id, "error": error, "delay_s": delay, "final": final}
                )
        return len(rows)


class JobEvents:
    """Which events a job or a campaign produces, and when; written as rows, delivered by the dispatcher.

    Per message by default; with `campaign_events: campaign`, campaign messages produce only one start
    event (the campaign's first claimed message) and one finish event (the campaign completed).
    """

    def __init__(self, dispatcher: WebhookDispatcher, *, campaign_level: bool) -> None:
        self.dispatcher = dispatcher
        self.campaign_level = campaign_level
        self._started_campaigns: set[UUID] = set()

    @property
    def active(self) -> bool:
        return self.dispatcher.active

    def wants_start(self, job: ClaimedJob) -> bool:
        return self.dispatcher.active and not (self.campaign_level and job.campaign_id is not None)

    def rows(self, started: Sequence[ClaimedJob], result: BatchResult | None) -> list[EventRow]:
        """The events of jobs just started and of a batch just stored."""
        if not self.dispatcher.active:
            return []
        rows = [
            EventRow(j.id, j.campaign_id, job_event(j.task_type, "processing", j.started_at, None, j.data))
            for j in started
            if self.wants_start(j)
        ]
        if result is None:
            return rows
        for done in result.finished:
            job = done.job
            if self.campaign_level and job.campaign_id is not None:
                continue
            event = job_event(job.task_type, done.status, job.started_at, done.finished_at, job.data)
            rows.append(EventRow(job.id, job.campaign_id, event))
        if self.campaign_level:
            rows += [
                _campaign_finish(c) for c in result.campaigns if c.status == "completed" and c.completed_at
            ]
        return rows

    def claimed(self, conn: Connection, tenant_id: UUID, runs: Sequence[Run]) -> None:
        """Campaign-level start events: marks campaigns started in the database, so once across workers."""
        if not (self.campaign_level and self.dispatcher.active):
            return
        ids = {
            j.campaign_id for r in runs for j in r.jobs if j.campaign_id is not None
        } - self._started_campaigns
        if not ids:
            return
        self._started_campaigns |= ids
        with conn.transaction():
            rows = conn.execute(q("queue_campaigns_first_claim"), {"ids": sorted(ids)}).fetchall()
            events = [
                EventRow(
                    None,
                    cid,
                    job_event(SEND_MESSAGE, "processing", first, None, _campaign_data(cid, name, total)),
                )
                for cid, name, total, first in rows
            ]
            insert(conn, tenant_id, events)
        self.dispatcher.wake()


def _campaign_data(cid: UUID, name: str, total: int) -> dict[str, Any]:
    return {"campaign_id": str(cid), "name": name, "total_messages": total}


def _campaign_finish(change: CampaignChange) -> EventRow:
    data = {
        **_campaign_data(change.id, change.name, change.total),
        "sent_count": change.sent,
        "failed_count": change.failed,
    }
    started = change.first_claimed_at or change.completed_at
    assert started is not None and change.completed_at is not None
    return EventRow(None, change.id, job_event(SEND_MESSAGE, "completed", started, change.completed_at, data))
