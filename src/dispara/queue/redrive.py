"""`redrive`, for cron: take back dead workers' leases, re-arm retryable failures, resume rested instances,
prune old completed jobs, then drain what is due for a bounded time with the ordinary worker loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from dispara.config import Settings
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.db.queries import q
from dispara.queue import leases, spool
from dispara.queue.backoff import RetryPolicy
from dispara.queue.complete import apply_batch
from dispara.queue.worker import WorkerSummary, new_worker_id, run_worker
from dispara.tenants import tenant_id as lookup_tenant


@dataclass(frozen=True)
class RedriveReport:
    leases_reset: int
    rearmed: int
    resumed: int
    pruned: int
    summary: WorkerSummary
    elapsed_s: float


PRUNE_BATCH = 10_000


def prune(conn: Connection, tenant: UUID, days: int) -> int:
    """Delete completed jobs older than `days` (0 keeps everything); returns how many."""
    if days <= 0:
        return 0
    total = 0
    while True:
        params = {"tenant_id": tenant, "days": days, "limit": PRUNE_BATCH}
        deleted = conn.execute(q("queue_prune_completed"), params).rowcount
        total += deleted
        if deleted < PRUNE_BATCH:
            return total


def redrive(
    settings: Settings,
    *,
    max_seconds: float = 50.0,
    stop_event: threading.Event | None = None,
    notice: Callable[[str], None] | None = None,
) -> RedriveReport:
    """Repair the queue, then run the worker with `once` for at most what is left of `max_seconds`."""
    started = time.monotonic()
    worker = new_worker_id()
    with connect(settings, autocommit=True) as conn:
        tenant = lookup_tenant(conn, settings.tenant)
        policy = RetryPolicy.of(settings.worker)
        spool.replay(conn, settings.data_dir, policy)
        reset = leases.reset_expired(
            conn, tenants=[tenant], worker=worker, lease_s=settings.worker.lease_s, policy=policy
        )
        if reset.exhausted:
            # Poison jobs: fail them the normal way, so their messages are counted exactly once.
            apply_batch(conn, worker=worker, tenant_id=tenant, outcomes=reset.failures(policy), policy=policy)
        row = conn.execute(q("queue_rearm_failed"), {"tenant_id": tenant}).fetchone()
        rearmed = int(row[0]) if row else 0
        resumed = conn.execute(q("queue_resume_instances"), {"tenant_id": tenant}).rowcount
        pruned = prune(conn, tenant, settings.worker.retention_days)
    left = max(0.1, max_seconds - (time.monotonic() - started))
    summary = run_worker(settings, once=True, max_seconds=left, stop_event=stop_event, notice=notice)
    return RedriveReport(
        leases_reset=reset.jobs + len(reset.exhausted) + summary.leases_reset,
        rearmed=rearmed,
        resumed=resumed,
        pruned=pruned,
        summary=summary,
        elapsed_s=time.monotonic() - started,
    )
