"""Following one job to its end (`--wait`): LISTEN for its completion, and run it here when no worker has.

Running it here goes the same way as in a worker: claim (lease), execute, store the outcome, webhooks; so a
job followed on a machine with no worker still runs, and one a worker took is simply waited for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from psycopg.rows import dict_row

from dispara.config import Settings
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.db.queries import q
from dispara.db.threadconn import ThreadConnections
from dispara.errors import NotFoundError
from dispara.providers.base import InstanceUnavailableError
from dispara.queue import handlers, webhooks
from dispara.queue.backoff import DEFAULT_POLICY, RetryPolicy
from dispara.queue.complete import apply_batch
from dispara.queue.model import ClaimedJob, Outcome
from dispara.queue.runner import WEBHOOK_MISSING
from dispara.queue.webhooks import JobEvents, WebhookDispatcher, tenant_target
from dispara.queue.worker import make_sender, new_worker_id
from dispara.states import JOB_FINAL
from dispara.supabase import pooler

log = logging.getLogger("dispara.worker")

RECHECK_S: Final = 5.0  # longest wait between looks while another worker holds the job
RUN_LEASE_EXTRA_S: Final = 300.0  # no heartbeat here: the lease covers the slowest provider call
WEBHOOK_DRAIN_S: Final = 5.0


@dataclass(frozen=True)
class JobState:
    id: int
    status: str
    result: dict[str, Any] | None
    last_error: str | None
    error_kind: str | None
    attempts: int
    max_attempts: int
    due_in_s: float
    lease_left_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINAL


def job_state(conn: Connection, tenant_id: UUID, job_id: int) -> JobState:
    row = conn.execute(q("jobs_state"), {"id": job_id, "tenant_id": tenant_id}).fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id} not found")
    status, result, error, kind, attempts, max_attempts, due_in, lease_left = row
    result = result if isinstance(result, dict) else None
    lease = float(lease_left) if lease_left is not None else None
    return JobState(job_id, status, result, error, kind, attempts, max_attempts, float(due_in or 0.0), lease)


def claim_by_id(
    conn: Connection,
    tenant_id: UUID,
    job_id: int,
    *,
    worker: str,
    lease_s: float,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> ClaimedJob | None:
    """Lease the job if it is pending, due and unpaced; None when it is not (or someone else has it)."""
    params = {
        "id": job_id,
        "tenant_id": tenant_id,
        "worker": worker,
        "lease_s": lease_s,
        "max_expiries": policy.max_lease_expiries,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q("jobs_claim_by_id"), params).fetchone()
    return ClaimedJob.from_row(row, None) if row is not None else None


class _Runner:
    """What running a job here needs: worker id, sender, connections, webhooks; made on first use."""

    def __init__(self, settings: Settings, conn: Connection, tenant_id: UUID) -> None:
        self.settings = settings
        self.conn = conn
        self.tenant_id = tenant_id
        self.worker = new_worker_id()
        self.ctx: handlers.HandlerContext | None = None
        self.conns = ThreadConnections(settings)
        self.dispatcher: WebhookDispatcher | None = None
        self.events: JobEvents | None = None
        self.policy = RetryPolicy.of(settings.worker)

    def start(self) -> tuple[handlers.HandlerContext, JobEvents]:
        if self.ctx is None or self.events is None:
            self.dispatcher = WebhookDispatcher(self.settings, worker=self.worker, policy=self.policy)
            self.dispatcher.configure(tenant_target(self.settings, self.conn, self.tenant_id))
            self.dispatcher.start(self.tenant_id)
            campaign_level = self.settings.webhook.campaign_events == "campaign"
            self.events = JobEvents(self.dispatcher, campaign_level=campaign_level)
            self.ctx = handlers.HandlerContext(
                self.settings,
                make_sender(self.settings, 1),
                self.policy,
                tenant_id=self.tenant_id,
                worker_id=self.worker,
                connection=self.conns,
            )
        return self.ctx, self.events

    def run(self, job: ClaimedJob) -> None:
        ctx, events = self.start()
        with self.conn.transaction():
            webhooks.insert(self.conn, self.tenant_id, events.rows([job], None))
        events.dispatcher.wake()
        if self.settings.webhook.required and not events.active:
            outcome = Outcome(job, "failed", WEBHOOK_MISSING, "permanent")
        else:
            try:
                outcome = handlers.execute(job, ctx)
            except InstanceUnavailableError as exc:  # nothing to pause here: retry like any failure
                outcome = handlers.failure(job, exc, self.policy)
        with self.conn.transaction():  # the outcome and the events that report it, together
            stored = apply_batch(
                self.conn,
                worker=self.worker,
                tenant_id=self.tenant_id,
                outcomes=[outcome],
                policy=self.policy,
            )
            webhooks.insert(self.conn, self.tenant_id, events.rows([], stored))
        events.dispatcher.wake()

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close(WEBHOOK_DRAIN_S)
        if self.ctx is not None:
            handlers.close_services(self.ctx)
            self.ctx.sender.close()
        self.conns.close()


def follow(
    settings: Settings,
    tenant_id: UUID,
    job_id: int,
    *,
    run_here: bool = True,
    notice: Callable[[str], None] | None = None,
) -> JobState:
    """Wait until the job is completed, failed or cancelled, running it here whenever it is due and free."""
    say = notice or (lambda _text: None)
    with connect(settings, autocommit=True) as conn:
        # before the first look: no completion can slip between
        pooler.listen(conn, q("jobs_listen_done"), then=f"every {RECHECK_S:g}s")
        runner = _Runner(settings, conn, tenant_id)
        try:
            while True:
                state = job_state(conn, tenant_id, job_id)
                if state.finished:
                    return state
                due = state.status == "pending" and state.due_in_s <= 0
                if run_here and (due or state.status == "processing"):  # a dead worker's job is taken over
                    lease = settings.worker.lease_s + RUN_LEASE_EXTRA_S
                    job = claim_by_id(
                        conn, tenant_id, job_id, worker=runner.worker, lease_s=lease, policy=runner.policy
                    )
                    if job is not None:
                        say(f"job {job_id}: running it here (attempt {job.attempts}/{job.max_attempts})")
                        runner.run(job)
                        continue
                wait = RECHECK_S
                if state.status == "pending" and state.due_in_s > 0:
                    wait = state.due_in_s
                elif state.status == "processing" and state.lease_left_s is not None:
                    wait = min(RECHECK_S, max(0.0, state.lease_left_s) + 0.01)
                if state.status == "pending" and state.due_in_s > 0:
                    say(
                        f"job {job_id}: attempt {state.attempts} failed ({state.last_error}); "
                        f"next in {wait:.0f}s"
                    )
                _wait_done(conn, job_id, wait)
        finally:
            runner.close()


def _wait_done(conn: Connection, job_id: int, timeout: float) -> None:
    """Until a completion of this job is notified, or `timeout` seconds pass."""
    deadline = time.monotonic() + max(0.01, timeout)
    wanted = str(job_id)
    while (left := deadline - time.monotonic()) > 0:
        for note in conn.notifies(timeout=left, stop_after=1):
            if note.payload == wanted:
                return
