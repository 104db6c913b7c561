"""The tenants one worker serves: each one's sender, webhook and handler context, built on first use and
kept; a tenant's own settings (Evolution URL and key, webhook) win over the global config.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from uuid import UUID

from pydantic import SecretStr

from dispara import logs, tenant_settings
from dispara.config import Settings, reveal
from dispara.db import Connection
from dispara.errors import ConfigError
from dispara.providers.base import CredentialsRejectedError, OutgoingMessage, Sender, SendResult
from dispara.queue import handlers
from dispara.queue.backoff import RetryPolicy
from dispara.queue.webhooks import JobEvents, WebhookDispatcher, resolve_target

SenderFactory = Callable[[Settings, int], Sender]


@dataclass(frozen=True)
class Lane:
    """One tenant as the worker's threads see it."""

    tenant_id: UUID
    ctx: handlers.HandlerContext
    events: JobEvents


def evolution_settings(settings: Settings, values: Mapping[str, str]) -> Settings:
    """`settings` with the tenant's own Evolution URL and key, where it has them (a key alone is for the
    global server; with no server anywhere, messages go to the outbox as for every tenant).

    The global key goes to the global server only: a tenant that names its own server brings its own key,
    or sends none (a settings row a web-app user can write must not collect the operator's key).
    """
    own_url = values.get("evolution-url")
    url = own_url or settings.evolution.url
    global_key = reveal(settings.evolution.api_key) if url == settings.evolution.url else None
    key = values.get("evolution-apikey") or global_key
    if not url or (url, key) == (settings.evolution.url, reveal(settings.evolution.api_key)):
        return settings
    secret = SecretStr(key) if key is not None else None
    evolution = settings.evolution.model_copy(update={"url": url, "api_key": secret})
    return settings.model_copy(update={"evolution": evolution})


class Lanes:
    """Lanes by tenant, thread-safe. Senders are shared by the tenants that have the same Evolution URL
    and key (one HTTP client each); `default` is the sender of tenants with no Evolution settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str,
        concurrency: int,
        connection: Callable[[], Connection],
        default: Sender,
        make_sender: SenderFactory,
        tenant_first: bool,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.connection = connection
        self.policy = RetryPolicy.of(settings.worker)
        self.default = default
        self.make_sender = make_sender
        self.tenant_first = tenant_first  # webhook settings of the tenant win over JOB_WEBHOOK
        self._senders: dict[tuple[str | None, str | None], Sender] = {}
        self._lanes: dict[UUID, Lane] = {}
        self._stale: set[UUID] = set()  # tenants whose settings are read again before their next run
        self._lock = threading.Lock()

    def get(self, tenant: UUID) -> Lane:
        with self._lock:
            lane = self._lanes.get(tenant)
        return lane if lane is not None else self._build(tenant)

    def for_claimed(self, tenant: UUID) -> Lane:
        """The lane for runs just claimed: after a refused key, the tenant's settings are read again."""
        with self._lock:
            lane = self._lanes.get(tenant)
            stale = tenant in self._stale
            self._stale.discard(tenant)
        if lane is None:
            return self._build(tenant)
        return self._reread(self.connection(), lane) if stale else lane

    def rejected(self, tenant: UUID) -> None:
        """The server refused this tenant's key: read its settings again before its next claimed run (an
        operator fixes the key, then resumes the campaigns)."""
        with self._lock:
            self._stale.add(tenant)

    def all(self) -> list[Lane]:
        with self._lock:
            return list(self._lanes.values())

    def _build(self, tenant: UUID) -> Lane:
        values = tenant_settings.all_values(self.connection(), tenant)
        logs.mask(tenant_settings.secrets(values))
        own = evolution_settings(self.settings, values)
        dispatcher = WebhookDispatcher(self.settings, worker=self.worker_id, policy=self.policy)
        dispatcher.configure(resolve_target(self.settings, values, tenant_first=self.tenant_first))
        events = JobEvents(dispatcher, campaign_level=self.settings.webhook.campaign_events == "campaign")
        with self._lock:
            if tenant in self._lanes:  # built meanwhile by another thread
                dispatcher.close(0.0)
                return self._lanes[tenant]
            sender = self._sender(own)
            ctx = handlers.HandlerContext(
                self.settings,
                sender,
                self.policy,
                tenant_id=tenant,
                worker_id=self.worker_id,
                connection=self.connection,
            )
            lane = self._lanes[tenant] = Lane(tenant, ctx, events)
        dispatcher.start(tenant)
        return lane

    def _sender(self, own: Settings) -> Sender:
        if own is self.settings:
            return self.default
        key = (own.evolution.url, reveal(own.evolution.api_key))
        sender = self._senders.get(key)
        if sender is None:
            # Settings of this tenant that no sender can use pause its campaigns, not the whole worker.
            try:
                sender = self.make_sender(own, self.concurrency)
            except ConfigError as exc:
                sender = Unconfigured(f"the tenant's Evolution settings: {exc}")
            self._senders[key] = sender
        return sender

    def refresh(self, conn: Connection) -> None:
        """Re-read each tenant's settings: a changed webhook or Evolution key is used from now on (runs
        already claimed finish with the sender they started with).
        """
        for lane in self.all():
            self._reread(conn, lane)

    def _reread(self, conn: Connection, lane: Lane) -> Lane:
        values = tenant_settings.all_values(conn, lane.tenant_id)
        logs.mask(tenant_settings.secrets(values))
        lane.events.dispatcher.configure(
            resolve_target(self.settings, values, tenant_first=self.tenant_first)
        )
        with self._lock:
            sender = self._sender(evolution_settings(self.settings, values))
            if sender is not lane.ctx.sender:
                lane = self._lanes[lane.tenant_id] = replace(lane, ctx=replace(lane.ctx, sender=sender))
        return lane

    def close(self, webhook_timeout: float) -> None:
        """Deliver what is due, close every client built here (not `default`)."""
        for lane in self.all():
            lane.events.dispatcher.close(webhook_timeout)
            handlers.close_services(lane.ctx)
        for sender in self._senders.values():
            sender.close()


class Unconfigured:
    """The sender of a tenant whose own Evolution settings are unusable: every send is refused the way a
    rejected key is, so that tenant's campaigns pause with the reason while the other tenants go on.
    """

    label = "no sender (the tenant's Evolution settings are unusable)"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, msg: OutgoingMessage) -> SendResult:
        raise CredentialsRejectedError(self.reason, instance=msg.instance, status=None)

    def instance_state(self, instance: str) -> str:
        raise CredentialsRejectedError(self.reason, instance=instance, status=None)

    def close(self) -> None:
        pass
