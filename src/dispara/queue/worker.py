"""The worker: a claim loop, sender threads sharing one Sender, a batching completer, LISTEN wake-ups,
lease heartbeats, and a graceful stop that puts back whatever did not start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from dispara.config import Settings
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.db.queries import q
from dispara.db.threadconn import ThreadConnections
from dispara.errors import DatabaseError
from dispara.providers.base import Sender
from dispara.queue import handlers, leases, scheduler
from dispara.queue.claim import Claimer, claim_paced, claim_unpaced
from dispara.queue.completer import Completer
from dispara.queue.model import Outcome, Tally
from dispara.queue.runner import Runner
from dispara.queue.shared import Shared
from dispara.queue.webhooks import JobEvents, WebhookDispatcher, resolve_target
from dispara.tenants import tenant_id as lookup_tenant

log = logging.getLogger("dispara.worker")

WEBHOOK_REFRESH_S = 30.0  # how soon a changed JOB_WEBHOOK tenant setting is picked up
WEBHOOK_DRAIN_S = 5.0  # how long a stopping worker waits for queued webhook deliveries
MAX_WAIT_S = 0.25  # longest sleep between looks at the stop flag
SCHEDULER_INTERVAL_S = 1.0  # how often scheduled starts and send windows are looked at


@dataclass
class WorkerSummary:
    """What one worker run did; `stopped` says why it ended: idle (--once), deadline, or signal."""

    worker: str
    sender: str
    claimed: int
    sent: int
    done: int
    failed: int
    retried: int
    released: int
    skipped: int
    lost: int
    instances_paused: int
    campaigns_completed: int
    campaigns_paused: int
    leases_reset: int
    elapsed_s: float
    stopped: str


def make_sender(settings: Settings, concurrency: int) -> Sender:
    """EvolutionSender when an Evolution URL is set, else the outbox file under the data dir."""
    evolution = settings.evolution
    if not evolution.url:
        from dispara.providers.outbox import OutboxSender, outbox_path

        return OutboxSender(outbox_path(settings.data_dir))
    from dispara.providers.evolution import EvolutionSender

    return EvolutionSender(
        evolution.url,
        evolution.api_key or "",
        typing_delay_ms=evolution.typing_delay_ms,
        timeout_extra_s=evolution.timeout_extra_s,
        max_connections=max(concurrency, 4),
    )


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    once: bool = False,
    max_seconds: float | None = None,
    stop_event: threading.Event | None = None,
    notice: Callable[[str], None] | None = None,
    sender: Sender | None = None,
) -> WorkerSummary:
    """Run until stopped (or, with `once`, until nothing is due); returns what was done.

    `stop_event` stops it gracefully (in-flight sends finish within worker.grace_s, the rest is put back).
    `notice` receives the start-up lines meant for the operator. `sender` replaces the configured one.
    """
    worker = _Worker(
        settings,
        concurrency=concurrency or settings.worker.concurrency,
        once=once,
        max_seconds=max_seconds,
        stop_event=stop_event or threading.Event(),
        notice=notice or (lambda _text: None),
        sender=sender,
    )
    return worker.run()


class _Worker:
    """One worker run. Threads: this one claims; `concurrency` Runners send; one Completer stores;
    one listener turns NOTIFY into wake-ups; the webhook dispatcher delivers events.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int,
        once: bool,
        max_seconds: float | None,
        stop_event: threading.Event,
        notice: Callable[[str], None],
        sender: Sender | None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.worker
        self.concurrency = concurrency
        self.once = once
        self.max_seconds = max_seconds
        self.stop_event = stop_event
        self.notice = notice
        self.given_sender = sender
        self.id = new_worker_id()
        from dispara.audio.handlers import install

        install()  # audio task types, before the claim filter is fixed
        self.task_types = handlers.task_types()
        self.webhooks = WebhookDispatcher()
        self.events = JobEvents(self.webhooks, campaign_level=settings.webhook.campaign_events == "campaign")
        self.webhook_checked = 0.0
        self.next_tick = 0.0  # monotonic time of the next campaign-scheduler tick
        self.threads: list[threading.Thread] = []
        self.sender: Sender | None = None
        self.shared: Shared | None = None
        self.conn: Connection
        self.handler_conns = ThreadConnections(settings)
        self.ctx: handlers.HandlerContext | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def run(self) -> WorkerSummary:
        started = time.monotonic()
        deadline = started + self.max_seconds if self.max_seconds else None
        self.conn = connect(self.settings, autocommit=True)
        stopped = "signal"
        try:
            tenant = lookup_tenant(self.conn, self.settings.tenant)
            self.shared = Shared(self.settings, self.id, tenant)
            self.sender = self.given_sender or make_sender(self.settings, self.concurrency)
            self.refresh_webhook()
            self.announce(self.sender)
            self.start_threads(self.shared, self.sender)
            leases.ensure_instances(self.conn, tenant_id=tenant)
            stopped = self.loop(self.shared, deadline)
        finally:
            self.shutdown()
            self.conn.close()
        return self.summary(time.monotonic() - started, stopped)

    def announce(self, sender: Sender) -> None:
        from dispara.providers.outbox import OutboxSender

        if isinstance(sender, OutboxSender):
            where = f"no Evolution URL set: messages go to the outbox file {sender.path}, not to WhatsApp"
        else:
            where = f"sending through {sender.label}"
        self.notice(f"worker {self.id}: {where}")
        if self.webhooks.label:
            self.notice(f"worker {self.id}: job events go to {self.webhooks.label}")
        elif self.settings.webhook.required:
            self.notice(
                f"worker {self.id}: webhook.required is set but no webhook is configured: jobs will fail"
            )

    def start_threads(self, shared: Shared, sender: Sender) -> None:
        ctx = handlers.HandlerContext(
            self.settings, sender, tenant_id=shared.tenant, worker_id=self.id, connection=self.handler_conns
        )
        self.ctx = ctx
        runner = Runner(shared, ctx, self.events)
        completer = Completer(shared, self.events)
        specs: list[tuple[str, Callable[[], None]]] = [
            (f"sender-{i}", runner.loop) for i in range(self.concurrency)
        ]
        specs += [("completer", completer.loop), ("listener", lambda: self.listen(shared))]
        for name, target in specs:
            # Daemon threads: a send stuck past the grace period must not keep the process alive.
            thread = threading.Thread(target=target, name=f"dispara-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def shutdown(self) -> None:
        shared = self.shared
        if shared is not None:
            self.drain(shared)
        self.webhooks.close(min(WEBHOOK_DRAIN_S, max(self.cfg.grace_s, 1.0)))
        if self.sender is not None and self.given_sender is None:
            self.sender.close()
        if self.ctx is not None:
            handlers.close_services(self.ctx)
        self.handler_conns.close()

    def drain(self, shared: Shared) -> None:
        """In-flight sends finish within grace_s (runs put the rest back); then the threads stop."""
        shared.draining.set()
        grace_end = time.monotonic() + self.cfg.grace_s
        next_beat = time.monotonic()
        while shared.busy_runs() and time.monotonic() < grace_end:
            if time.monotonic() >= next_beat:
                try:
                    self.heartbeat(shared)  # the grace period may outlast a short lease
                except psycopg.Error as exc:
                    log.warning("database error while stopping: %s", exc)
                next_beat = time.monotonic() + self.maintenance_interval()
            shared.wake.wait(min(MAX_WAIT_S, max(0.0, grace_end - time.monotonic())))
            shared.wake.clear()
        if shared.busy_runs():
            log.warning(
                "%d run(s) still sending after the %.0fs grace: their leases will expire",
                shared.busy_runs(),
                self.cfg.grace_s,
            )
        for _ in range(self.concurrency):
            shared.runs.put(None)
        shared.outcomes.put(None)
        self.join("dispara-completer", max(self.cfg.lease_s, 30.0))
        shared.closing.set()
        self.join("dispara-listener", 2.0)

    def join(self, name: str, timeout: float) -> None:
        for thread in self.threads:
            if thread.name == name:
                thread.join(timeout)

    def summary(self, elapsed: float, stopped: str) -> WorkerSummary:
        t = self.shared.tally if self.shared is not None else Tally()
        return WorkerSummary(
            worker=self.id,
            sender=self.sender.label if self.sender is not None else "-",
            claimed=t.claimed,
            sent=t.sent,
            done=t.extra.get("done", 0),
            failed=t.failed,
            retried=t.retried,
            released=t.released,
            skipped=t.skipped,
            lost=t.lost,
            instances_paused=t.instances_paused,
            campaigns_completed=t.campaigns_completed,
            campaigns_paused=t.campaigns_paused,
            leases_reset=t.leases_reset,
            elapsed_s=elapsed,
            stopped=stopped,
        )

    # ---- the claim loop --------------------------------------------------------------------------------
    def loop(self, shared: Shared, deadline: float | None) -> str:
        """The claim loop; a lost database connection is re-opened rather than ending the worker."""
        while True:
            try:
                return self.claim_until_done(shared, deadline)
            except psycopg.OperationalError as exc:
                if not self.reconnect(shared, exc, deadline):
                    return "signal" if self.stop_event.is_set() else "deadline"

    def reconnect(self, shared: Shared, error: Exception, deadline: float | None) -> bool:
        """Re-open the claim connection with backoff; False if asked to stop meanwhile.

        Gives up (DatabaseError) after a lease's length: by then every lease this worker held is gone.
        """
        log.warning("database connection lost (%s); reconnecting", str(error).strip() or type(error).__name__)
        self.conn.close()
        give_up = time.monotonic() + max(self.cfg.lease_s, 5.0)
        delay = 0.2
        while True:
            self.sleep(shared, delay)
            if self.stop_event.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            try:
                self.conn = connect(self.settings, autocommit=True)
                return True
            except DatabaseError:
                if time.monotonic() >= give_up:
                    raise
                delay = min(delay * 2, 5.0)

    def claim_until_done(self, shared: Shared, deadline: float | None) -> str:
        next_maintenance = 0.0
        while True:
            now = time.monotonic()
            if self.stop_event.is_set():
                return "signal"
            if deadline is not None and now >= deadline:
                return "deadline"
            if now >= next_maintenance:
                self.maintenance(shared)
                next_maintenance = time.monotonic() + self.maintenance_interval()
            if now >= self.next_tick:
                self.schedule()
            shared.wake.clear()
            free = self.concurrency - shared.busy_runs()
            claimed = self.claim(shared, free) if free > 0 else 0
            if claimed and claimed < free:
                continue  # slots left: another instance may be ready too
            timeout = self.cfg.poll_interval_s
            if not claimed and free > 0:
                if self.once and shared.idle() and not self.work_soon(shared):
                    return "once"
                due = leases.next_due_in(self.conn, tenant_id=shared.tenant)
                if due is not None:  # an instance's gap ends before the next poll
                    timeout = min(timeout, due + 0.001)
            timeout = min(timeout, next_maintenance - time.monotonic(), self.next_tick - time.monotonic())
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
            self.sleep(shared, timeout)

    def sleep(self, shared: Shared, seconds: float) -> None:
        """Until woken (NOTIFY, a run ended, outcomes stored) or `seconds` pass, or a stop is seen."""
        # The stop flag is set from a signal handler, which cannot wake a waiting thread: look at it often.
        end = time.monotonic() + seconds
        while not self.stop_event.is_set():
            left = end - time.monotonic()
            if left <= 0 or shared.wake.wait(min(left, MAX_WAIT_S)):
                return

    def work_soon(self, shared: Shared) -> bool:
        # --once also waits for work due within the horizon (retry backoff, a dead worker's expiring lease).
        return leases.has_work_soon(
            self.conn, tenant_id=shared.tenant, task_types=self.task_types, horizon_s=self.cfg.once_horizon_s
        )

    def claim(self, shared: Shared, free: int) -> int:
        """Claim up to `free` runs and hand them to the sender threads; returns how many."""
        runs = claim_paced(self.conn, self.claimer(shared), instances=free, run_size=self.cfg.batch_size)
        runs += claim_unpaced(self.conn, self.claimer(shared), limit=free - len(runs))
        if not runs:
            return 0
        shared.claimed(len(runs), sum(len(r.jobs) for r in runs))
        self.events.claimed(self.conn, runs)
        claimed_at = time.monotonic()
        for run in runs:
            shared.runs.put((run, claimed_at))
        return len(runs)

    def schedule(self) -> None:
        """Start campaigns whose time has come and hold those outside their send window."""
        try:
            result = scheduler.tick(self.conn, datetime.now(UTC))
        except psycopg.OperationalError:
            raise
        except Exception:  # one bad campaign document must not stop the sending of all the others
            log.exception("campaign scheduler failed")
            result = None
        self.next_tick = time.monotonic() + SCHEDULER_INTERVAL_S
        if result is None:
            return
        if result.started or result.held:
            log.info(
                "scheduler: %d campaign(s) started, %d held outside their window", result.started, result.held
            )
        if result.next_change is not None:
            due_in = (result.next_change - datetime.now(UTC)).total_seconds()
            self.next_tick = min(self.next_tick, time.monotonic() + max(0.0, due_in))

    def claimer(self, shared: Shared) -> Claimer:
        return Claimer(shared.tenant, self.id, self.cfg.lease_s, self.task_types)

    def maintenance(self, shared: Shared) -> None:
        """Every lease/3: renew our leases, take back dead workers' ones, re-read the webhook setting."""
        self.heartbeat(shared)
        reset = leases.reset_expired(
            self.conn, tenant_id=shared.tenant, worker=self.id, lease_s=self.cfg.lease_s
        )
        shared.tally.leases_reset += reset.jobs + len(reset.exhausted)
        if reset.jobs or reset.instances:
            log.info("reset %d expired job lease(s), %d instance lease(s)", reset.jobs, reset.instances)
        if reset.exhausted:
            shared.taken_over(len(reset.exhausted))
            failures = [Outcome(job, "failed", leases.EXHAUSTED, "transient") for job in reset.exhausted]
            shared.outcomes.put(list(failures))
        if time.monotonic() - self.webhook_checked >= WEBHOOK_REFRESH_S:
            self.refresh_webhook()

    def maintenance_interval(self) -> float:
        return max(0.05, self.cfg.lease_s / 3)

    def heartbeat(self, shared: Shared) -> None:
        leases.heartbeat(self.conn, tenant_id=shared.tenant, worker=self.id, lease_s=self.cfg.lease_s)
        shared.last_heartbeat = time.monotonic()

    def refresh_webhook(self) -> None:
        assert self.shared is not None
        self.webhook_checked = time.monotonic()
        self.webhooks.configure(resolve_target(self.settings, self.conn, self.shared.tenant))

    # ---- wake-ups --------------------------------------------------------------------------------------
    def listen(self, shared: Shared) -> None:
        """Thread body: LISTEN on its own connection; every NOTIFY wakes the claim loop."""
        while not shared.closing.is_set():
            try:
                with connect(self.settings, autocommit=True) as conn:
                    conn.execute(q("queue_listen"))
                    shared.wake.set()  # anything inserted while we were not listening
                    while not shared.closing.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            shared.wake.set()
            except Exception as exc:  # polling covers the gap; try again shortly
                if shared.closing.is_set():
                    return
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                shared.closing.wait(self.cfg.poll_interval_s)
