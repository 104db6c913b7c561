"""The worker: a claim loop, sender threads sharing one Sender, a batching completer, LISTEN wake-ups,
lease heartbeats, and a graceful stop that puts back whatever did not start.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import psycopg
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential

from dispara import logs, metrics
from dispara.config import Settings, reveal
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.db.queries import q
from dispara.db.threadconn import ThreadConnections
from dispara.errors import DatabaseError
from dispara.providers.base import Sender
from dispara.queue import handlers, leases, scheduler, spool
from dispara.queue.claim import Claimer, Run, claim
from dispara.queue.completer import Completer
from dispara.queue.model import RunEnd, Tally
from dispara.queue.runner import Runner, released
from dispara.queue.shared import Shared
from dispara.queue.tenancy import Lanes
from dispara.supabase import pooler
from dispara.tenants import all_ids
from dispara.tenants import tenant_id as lookup_tenant

log = logging.getLogger("dispara.worker")

SETTINGS_REFRESH_S = 30.0  # how soon changed tenant settings (webhook, Evolution key), new tenants are seen
WEBHOOK_DRAIN_S = 5.0  # how long a stopping worker waits for queued webhook deliveries
MAX_WAIT_S = 0.25  # longest sleep between looks at the stop flag
STORE_AT_EXIT_S = 10.0  # how long a stopping worker tries to store outcomes before spooling them
CAMPAIGN_STATUS_CHANNEL = "dispara_campaign_status"
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
    left: list[leases.Left] = field(default_factory=list)  # with --once: what is still queued, and why


def make_sender(settings: Settings, concurrency: int) -> Sender:
    """EvolutionSender when an Evolution URL is set, else the outbox file under the data dir."""
    evolution = settings.evolution
    if not evolution.url:
        from dispara.providers.outbox import OutboxSender, outbox_path

        return OutboxSender(outbox_path(settings.data_dir))
    from dispara.providers.evolution import EvolutionSender

    return EvolutionSender(
        evolution.url,
        reveal(evolution.api_key) or "",
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
    all_tenants: bool = False,
) -> WorkerSummary:
    """Run until stopped (or, with `once`, until nothing is due); returns what was done.

    `stop_event` stops it gracefully (in-flight sends finish within worker.grace_s, the rest is put back).
    `notice` receives the start-up lines meant for the operator. `sender` replaces the configured one
    (for tenants without Evolution settings of their own). `all_tenants` serves every tenant, not just
    settings.tenant.
    """
    worker = _Worker(
        settings,
        concurrency=concurrency or settings.worker.concurrency,
        once=once,
        max_seconds=max_seconds,
        stop_event=stop_event or threading.Event(),
        notice=notice or (lambda _text: None),
        sender=sender,
        all_tenants=all_tenants,
    )
    return worker.run()


class _Worker:
    """One worker run. Threads: this one claims; `concurrency` Runners send; one Completer stores;
    one listener turns NOTIFY into wake-ups; a webhook dispatcher per tenant served delivers events.
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
        all_tenants: bool = False,
    ) -> None:
        self.settings = settings
        self.cfg = settings.worker
        self.concurrency = concurrency
        self.once = once
        self.max_seconds = max_seconds
        self.stop_event = stop_event
        self.notice = notice
        self.given_sender = sender
        self.all_tenants = all_tenants
        self.tenants: list[UUID] = []
        self.unpaced_served: dict[UUID, float] = {}  # tenant -> when its last unpaced job was claimed
        self.id = new_worker_id()
        logs.bind(worker=self.id)
        from dispara.audio.handlers import install

        install()  # audio task types, before the claim filter is fixed
        self.task_types = handlers.task_types()
        self.lanes: Lanes | None = None
        self.settings_checked = 0.0
        self.next_tick = 0.0  # monotonic time of the next campaign-scheduler tick
        self.threads: list[threading.Thread] = []
        self.sender: Sender | None = None
        self.shared: Shared | None = None
        self.conn: Connection
        self.handler_conns = ThreadConnections(settings)

    # ---- lifecycle -------------------------------------------------------------------------------------
    def run(self) -> WorkerSummary:
        started = time.monotonic()
        deadline = started + self.max_seconds if self.max_seconds else None
        self.conn = connect(self.settings, autocommit=True)
        try:
            tenant = lookup_tenant(self.conn, self.settings.tenant)
            self.shared = Shared(self.settings, self.id, tenant)
            spool.replay(self.conn, self.settings.data_dir, self.shared.policy)
            self.sender = self.given_sender or make_sender(self.settings, self.concurrency)
            self.lanes = self.make_lanes(self.sender)
            self.refresh_tenants()
            self.announce(self.sender, self.lanes)
            self.start_threads(self.shared, self.lanes)
            stopped = self.loop(self.shared, deadline)
        except BaseException:
            self.shutdown()
            self.conn.close()
            raise
        self.shutdown()
        summary = self.summary(time.monotonic() - started, stopped)
        try:
            if self.once and self.shared is not None:
                summary.left = leases.left(self.conn, tenants=self.tenants)
        except (psycopg.Error, DatabaseError) as exc:
            log.warning("could not tell what is left in the queue: %s", exc)
        finally:
            self.conn.close()
        return summary

    def make_lanes(self, sender: Sender) -> Lanes:
        return Lanes(
            self.settings,
            worker_id=self.id,
            concurrency=self.concurrency,
            connection=self.handler_conns,
            default=sender,
            make_sender=make_sender,
            tenant_first=self.all_tenants,
        )

    def announce(self, sender: Sender, lanes: Lanes) -> None:
        from dispara.providers.outbox import OutboxSender

        if isinstance(sender, OutboxSender):
            where = f"no Evolution URL set: messages go to the outbox file {sender.path}, not to WhatsApp"
        else:
            where = f"sending through {sender.label}"
        if self.all_tenants:
            where = f"serving every tenant ({len(self.tenants)} now); without settings of their own, {where}"
            self.notice(f"worker {self.id}: {where}")
            return
        self.notice(f"worker {self.id}: {where}")
        lane = lanes.get(self.tenants[0])
        if lane.ctx.sender is not sender:
            self.notice(
                f"worker {self.id}: the tenant's own settings: sending through {lane.ctx.sender.label}"
            )
        if lane.events.dispatcher.label:
            self.notice(f"worker {self.id}: job events go to {lane.events.dispatcher.label}")
        elif self.settings.webhook.required:
            self.notice(
                f"worker {self.id}: webhook.required is set but no webhook is configured: jobs will fail"
            )

    def start_threads(self, shared: Shared, lanes: Lanes) -> None:
        runner = Runner(shared, lanes)
        completer = Completer(shared, lanes)
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
        if self.lanes is not None:
            self.lanes.close(min(WEBHOOK_DRAIN_S, max(self.cfg.grace_s, 1.0)))
        if self.sender is not None and self.given_sender is None:
            self.sender.close()
        self.handler_conns.close()

    def drain(self, shared: Shared) -> None:
        """Put back at once every job not started; wait for the sends in flight (up to the sender's own
        timeout, so none is abandoned mid-request); then store what is left and stop the threads.
        """
        shared.draining.set()
        self.put_back_unstarted(shared)
        in_flight_end = time.monotonic() + max(self.cfg.grace_s, self.send_timeout())
        next_beat = time.monotonic()
        while shared.busy_runs() and time.monotonic() < in_flight_end:
            if time.monotonic() >= next_beat:
                try:
                    self.heartbeat(shared)  # the wait may outlast a short lease
                except (psycopg.Error, DatabaseError) as exc:
                    log.warning("database error while stopping: %s", exc)
                next_beat = time.monotonic() + self.maintenance_interval()
            shared.wake.wait(min(MAX_WAIT_S, max(0.0, in_flight_end - time.monotonic())))
            shared.wake.clear()
        if shared.busy_runs():
            log.warning(
                "%d send(s) still in flight past the sender's timeout: their leases will expire "
                "and they will be sent again",
                shared.busy_runs(),
            )
        for _ in range(self.concurrency):
            shared.runs.put(None)
        shared.outcomes.put(None)
        completer = self.thread("dispara-completer")
        if completer is not None:
            completer.join(STORE_AT_EXIT_S)
            if completer.is_alive():  # the database is still unreachable: spool, never drop
                shared.abandon.set()
                completer.join(STORE_AT_EXIT_S)
        shared.closing.set()
        self.join("dispara-listener", 2.0)

    def put_back_unstarted(self, shared: Shared) -> None:
        """Jobs not started yet, in runs being sent and in runs no sender has taken: released now."""
        for state in shared.active_runs():
            rest = state.take_rest()
            if rest:
                shared.outcomes.put(released(rest))
        while True:
            try:
                item = shared.runs.get_nowait()
            except queue.Empty:
                return
            if item is None:
                continue
            state = item
            items = released(state.take_rest())
            if state.run.instance is not None:
                items.append(RunEnd(state.run.instance, 0.0, tenant_id=state.run.tenant_id))
            shared.outcomes.put(items)
            shared.run_finished(state)

    def send_timeout(self) -> float:
        timeout = getattr(self.sender, "timeout_s", 0.0)
        return float(timeout) if isinstance(timeout, int | float) else 0.0

    def thread(self, name: str) -> threading.Thread | None:
        return next((t for t in self.threads if t.name == name), None)

    def join(self, name: str, timeout: float) -> None:
        thread = self.thread(name)
        if thread is not None:
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
            except (psycopg.OperationalError, DatabaseError) as exc:
                if not self.reconnect(shared, exc, deadline):
                    return "signal" if self.stop_event.is_set() else "deadline"

    def reconnect(self, shared: Shared, error: Exception, deadline: float | None) -> bool:
        """Re-open the claim connection, however long the database takes; False if asked to stop meanwhile.

        Nothing is lost while it is away: outcomes wait in the completer, and leases that lapse get a
        lease's grace after a server restart (see queue_reset_expired_jobs).
        """
        log.warning("database connection lost (%s); reconnecting", str(error).strip() or type(error).__name__)
        self.conn.close()

        def stopped(_state: object) -> bool:
            return self.stop_event.is_set() or (deadline is not None and time.monotonic() >= deadline)

        retrying = Retrying(
            retry=retry_if_exception_type((DatabaseError, psycopg.OperationalError)),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            stop=stopped,
            sleep=lambda seconds: self.sleep(shared, seconds),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if stopped(None):
                        return False
                    self.conn = connect(self.settings, autocommit=True)
        except RetryError:
            return False
        log.info("database connection is back")
        return True

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
            idle = not claimed and free > 0
            if idle and self.once and shared.idle() and not self.work_soon(shared):
                return "once"
            self.sleep(
                shared,
                self.poll_timeout(
                    shared, idle, min(next_maintenance, math.inf if deadline is None else deadline)
                ),
            )

    def poll_timeout(self, shared: Shared, idle: bool, until: float) -> float:
        """How long to wait for a wake-up: the poll interval, cut short by what is due before it."""
        timeout = self.cfg.poll_interval_s
        if idle:
            due = leases.next_due_in(self.conn, tenants=self.tenants)
            if due is not None:  # an instance's gap ends before the next poll
                timeout = min(timeout, due + 0.001)
        return min(timeout, until - time.monotonic(), self.next_tick - time.monotonic())

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
            self.conn, tenants=self.tenants, task_types=self.task_types, horizon_s=self.cfg.once_horizon_s
        )

    @metrics.timed_claim
    def claim(self, shared: Shared, free: int) -> int:
        """Claim up to `free` runs and hand them to the sender threads; returns how many."""
        mark = shared.halt_mark()
        runs = claim(self.conn, self.claimer(), slots=free, run_size=self.cfg.batch_size)
        if not runs:
            return 0
        now = time.monotonic()
        states = shared.claimed(runs, now, mark)
        self.unpaced_served |= {r.tenant_id: now for r in runs if r.instance is None and r.tenant_id}
        self.campaigns_claimed(shared, runs)
        for state in states:
            shared.runs.put(state)
        return len(runs)

    def campaigns_claimed(self, shared: Shared, runs: list[Run]) -> None:
        """Campaign-level start events, per tenant; builds the lanes of tenants claimed the first time."""
        assert self.lanes is not None
        by_tenant: dict[UUID, list[Run]] = {}
        for run in runs:
            by_tenant.setdefault(run.tenant_id or shared.tenant, []).append(run)
        for tenant, part in by_tenant.items():
            self.lanes.for_claimed(tenant).events.claimed(self.conn, tenant, part)

    def schedule(self) -> None:
        """Start campaigns whose time has come and hold those outside their send window.

        Decided on the database's clock, never this host's: a worker with a skewed clock decides the same.
        """
        try:
            result = scheduler.tick(self.conn)
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
            due_in = (result.next_change - result.now).total_seconds()
            self.next_tick = min(self.next_tick, time.monotonic() + max(0.0, due_in))

    def claimer(self) -> Claimer:
        # Unpaced jobs go to the tenant served least recently first (instances take turns in SQL).
        tenants = sorted(self.tenants, key=lambda t: self.unpaced_served.get(t, 0.0))
        return Claimer(tenants, self.id, self.cfg.lease_s, self.task_types)

    def maintenance(self, shared: Shared) -> None:
        """Every lease/3: renew our leases, take back dead workers' ones, re-read the webhook setting."""
        self.heartbeat(shared)
        reset = leases.reset_expired(
            self.conn, tenants=self.tenants, worker=self.id, lease_s=self.cfg.lease_s, policy=shared.policy
        )
        shared.tally.leases_reset += reset.jobs + len(reset.exhausted)
        if reset.jobs or reset.instances:
            log.info("reset %d expired job lease(s), %d instance lease(s)", reset.jobs, reset.instances)
        if reset.exhausted:
            shared.taken_over(reset.exhausted)
            shared.outcomes.put(list(reset.failures(shared.policy)))
        if time.monotonic() - self.settings_checked >= SETTINGS_REFRESH_S:
            self.refresh_tenants()

    def maintenance_interval(self) -> float:
        return max(0.05, self.cfg.lease_s / 3)

    def heartbeat(self, shared: Shared) -> None:
        jobs, instances = shared.held()
        leases.heartbeat(
            self.conn,
            worker=self.id,
            lease_s=self.cfg.lease_s,
            jobs=jobs,
            instances=instances,
        )
        shared.last_heartbeat = time.monotonic()

    def refresh_tenants(self) -> None:
        """The tenants served (new ones get their instance rows), and each one's webhook setting."""
        assert self.shared is not None and self.lanes is not None
        self.settings_checked = time.monotonic()
        tenants = all_ids(self.conn) if self.all_tenants else [self.shared.tenant]
        for tenant in sorted(set(tenants) - set(self.tenants)):
            leases.ensure_instances(self.conn, tenant_id=tenant)
        self.tenants = tenants
        if not self.all_tenants:
            self.lanes.get(self.shared.tenant)
        self.lanes.refresh(self.conn)

    # ---- wake-ups --------------------------------------------------------------------------------------
    def listen(self, shared: Shared) -> None:
        """Thread body: LISTEN on its own connection; a NOTIFY wakes the claim loop, and a campaign that
        stops running (paused, cancelled, held) is noted so its claimed runs stop before their next send.
        """
        while not shared.closing.is_set():
            try:
                with connect(self.settings, autocommit=True) as conn:
                    if not pooler.listen(
                        conn, q("queue_listen"), then=f"every {self.cfg.poll_interval_s:g}s"
                    ):
                        return
                    shared.wake.set()  # anything inserted while we were not listening
                    while not shared.closing.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.channel == CAMPAIGN_STATUS_CHANNEL:
                                campaign, _, status = note.payload.partition(":")
                                shared.campaign_changed(UUID(campaign), status)
                            shared.wake.set()
            except Exception as exc:  # polling covers the gap; try again shortly
                if shared.closing.is_set():
                    return
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                shared.closing.wait(self.cfg.poll_interval_s)
