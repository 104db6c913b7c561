"""Job start/finish webhooks, delivered by their own small thread pool so a slow or dead receiver
never holds up a send. Events beyond a bounded backlog are dropped with a warning, never blocked on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from dispara import tenant_settings
from dispara.config import Settings
from dispara.db import Connection
from dispara.db.queries import q
from dispara.providers.webhook import WebhookNotifier, job_event
from dispara.queue.claim import Run
from dispara.queue.complete import BatchResult
from dispara.queue.handlers import SEND_MESSAGE
from dispara.queue.model import ClaimedJob

log = logging.getLogger("dispara.worker")

DELIVERY_THREADS = 2
MAX_BACKLOG = 10_000


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str | None


def resolve_target(settings: Settings, conn: Connection, tenant_id: UUID) -> WebhookTarget | None:
    """settings.webhook.url (JOB_WEBHOOK in the environment), else the tenant setting JOB_WEBHOOK."""
    values: Mapping[str, str] = {}
    if not settings.webhook.url or not settings.webhook.secret:
        values = tenant_settings.all_values(conn, tenant_id)
    url = settings.webhook.url or values.get("JOB_WEBHOOK")
    if not url:
        return None
    return WebhookTarget(url, settings.webhook.secret or values.get("webhook-secret"))


class WebhookDispatcher:
    """Queues events for one target at a time; `configure` swaps the target when the setting changes."""

    def __init__(
        self,
        *,
        threads: int = DELIVERY_THREADS,
        max_backlog: int = MAX_BACKLOG,
        factory: Callable[[WebhookTarget], WebhookNotifier] | None = None,
    ) -> None:
        self._factory = factory or (lambda t: WebhookNotifier(t.url, secret=t.secret))
        self._queue: queue.Queue[tuple[WebhookNotifier, dict[str, Any]] | None] = queue.Queue(max_backlog)
        self._target: WebhookTarget | None = None
        self._notifier: WebhookNotifier | None = None
        self._retired: list[WebhookNotifier] = []
        self._dropped = 0
        self._threads = [
            threading.Thread(target=self._deliver, name=f"webhook-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

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
            self._retired.append(self._notifier)  # closed at the end: queued events still use it
        self._target = target
        self._notifier = self._factory(target) if target is not None else None

    def submit(self, event: dict[str, Any]) -> None:
        notifier = self._notifier
        if notifier is None:
            return
        try:
            self._queue.put_nowait((notifier, event))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("webhook backlog full: %d event(s) dropped so far", self._dropped)

    def close(self, timeout: float) -> None:
        """Deliver what is queued for up to `timeout` seconds, then give up on the rest."""
        deadline = time.monotonic() + timeout
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self._queue.qsize()
        if left:
            log.warning("webhook: %d event(s) not delivered before exit", left)
        for notifier in [*self._retired, *([self._notifier] if self._notifier else [])]:
            notifier.close()

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            notifier, event = item
            try:
                notifier.notify(event)
            except Exception:  # the notifier reports its own failures; anything else must not kill the thread
                log.warning("webhook delivery crashed", exc_info=True)


class JobEvents:
    """Which events a job or a campaign produces, and when; delivery is the dispatcher's business.

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

    def started(self, job: ClaimedJob) -> None:
        if not self.dispatcher.active or (self.campaign_level and job.campaign_id is not None):
            return
        self.dispatcher.submit(job_event(job.task_type, "processing", job.started_at, None, job.data))

    def finished(self, result: BatchResult) -> None:
        if not self.dispatcher.active:
            return
        for done in result.finished:
            if self.campaign_level and done.job.campaign_id is not None:
                continue
            job = done.job
            self.dispatcher.submit(
                job_event(job.task_type, done.status, job.started_at, done.finished_at, job.data)
            )
        if not self.campaign_level:
            return
        for change in result.campaigns:
            if change.status != "completed" or change.completed_at is None:
                continue
            data = {
                "campaign_id": str(change.id),
                "name": change.name,
                "total_messages": change.total,
                "sent_count": change.sent,
                "failed_count": change.failed,
            }
            started = change.first_claimed_at or change.completed_at
            self.dispatcher.submit(job_event(SEND_MESSAGE, "completed", started, change.completed_at, data))

    def claimed(self, conn: Connection, runs: Sequence[Run]) -> None:
        """Campaign-level start events: marks campaigns started in the database, so once across workers."""
        if not (self.campaign_level and self.dispatcher.active):
            return
        ids = {
            j.campaign_id for r in runs for j in r.jobs if j.campaign_id is not None
        } - self._started_campaigns
        if not ids:
            return
        self._started_campaigns |= ids
        rows = conn.execute(q("queue_campaigns_first_claim"), {"ids": sorted(ids)}).fetchall()
        for cid, name, total, first_claimed_at in rows:
            data = {"campaign_id": str(cid), "name": name, "total_messages": total}
            self.dispatcher.submit(job_event(SEND_MESSAGE, "processing", first_claimed_at, None, data))
