"""The completer thread: stores outcomes in batches, one transaction each, then counts and notifies."""

from __future__ import annotations

import logging
import queue
import time
from uuid import UUID

import psycopg
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential

from dispara import metrics, summary
from dispara.db import Connection
from dispara.db.connect import connect
from dispara.errors import DatabaseError
from dispara.queue import spool, webhooks
from dispara.queue.complete import BatchResult, apply_batch
from dispara.queue.model import ClaimedJob, Outcome, RunEnd, Started
from dispara.queue.shared import Shared
from dispara.queue.tenancy import Lanes

log = logging.getLogger("dispara.worker")

MAX_FLUSH = 2000  # outcomes per completion transaction
FLUSH_INTERVAL_S = 0.025  # small batches are stored at most this often
_TALLY_FIELD = {
    "sent": "sent",
    "failed": "failed",
    "retry": "retried",
    "release": "released",
    "skip": "skipped",
    "cancel": "skipped",
}


class _Abandoned(Exception):
    """The worker is exiting while the database is still unreachable."""


class Completer:
    def __init__(self, shared: Shared, lanes: Lanes) -> None:
        self.shared = shared
        self.lanes = lanes
        self.conn: Connection | None = None
        self.last_flush = 0.0
        self.compactor = summary.Compactor()

    def loop(self) -> None:
        """Thread body: store batches until the stop sentinel."""
        finished = False
        while not finished:
            items, finished = self.next_batch()
            if items:
                self.flush(items)
        if self.conn is not None:
            self.conn.close()

    def next_batch(self) -> tuple[list[Outcome | RunEnd | Started], bool]:
        """The next outcomes to store, and whether the stop sentinel was seen.

        Everything handed over since the previous flush goes into this one. Each flush costs a few round
        trips and a commit whatever its size, so small batches wait out FLUSH_INTERVAL_S to grow (one
        sleep, not a wake-up per hand-over); a few milliseconds delay no pacing decision noticeably.
        """
        outcomes = self.shared.outcomes
        first = outcomes.get()
        if first is None:
            return [], True
        items = list(first)
        wait = self.last_flush + FLUSH_INTERVAL_S - time.monotonic()
        if wait > 0 and len(items) < MAX_FLUSH // 4 and not self.shared.draining.is_set():
            time.sleep(wait)
        while len(items) < MAX_FLUSH:
            try:
                more = outcomes.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return items, True
            items += more
        self.last_flush = time.monotonic()
        return items, False

    def flush(self, items: list[Outcome | RunEnd | Started]) -> None:
        """Store a batch, however long the database takes to come back; spool it if the worker must exit."""
        for tenant, part in self.by_tenant(items).items():
            self.flush_tenant(tenant, part)

    def by_tenant(
        self, items: list[Outcome | RunEnd | Started]
    ) -> dict[UUID, list[Outcome | RunEnd | Started]]:
        groups: dict[UUID, list[Outcome | RunEnd | Started]] = {}
        own = self.shared.tenant
        for item in items:
            tenant = item.tenant_id if isinstance(item, RunEnd) else item.job.tenant_id
            groups.setdefault(tenant or own, []).append(item)
        return groups

    def flush_tenant(self, tenant: UUID, items: list[Outcome | RunEnd | Started]) -> None:
        outcomes = [i for i in items if isinstance(i, Outcome)]
        ends = [i for i in items if isinstance(i, RunEnd)]
        started = [i.job for i in items if isinstance(i, Started)]
        try:
            result = self.store(tenant, outcomes, ends, started)
        except _Abandoned:
            kept = [i for i in items if not isinstance(i, Started)]  # start events are not worth a spool
            path = spool.write(self.shared.settings.data_dir, self.shared.worker_id, tenant, kept)
            log.error("database unreachable at exit: %d outcome(s) kept in %s", len(outcomes), path)
            self.shared.stored(items)
            return
        self.shared.stored(items)
        try:
            self.record(result)
            if self.conn is not None:
                self.compactor.maybe(self.conn)
        except Exception:  # counting, webhooks and the summary's folding must never stop the completer
            log.exception("bookkeeping of stored outcomes failed")

    def store(
        self, tenant: UUID, outcomes: list[Outcome], ends: list[RunEnd], started: list[ClaimedJob]
    ) -> BatchResult:
        """Retried with backoff while the database is unreachable: an outcome of a send is never dropped."""
        retrying = Retrying(
            retry=retry_if_exception_type((psycopg.OperationalError, DatabaseError)),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            stop=lambda _state: self.shared.abandon.is_set(),
            sleep=self.pause,
            before_sleep=lambda state: log.warning(
                "saving %d outcome(s) failed (%s); retrying",
                len(outcomes),
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self.store_once(tenant, outcomes, ends, started)
        except RetryError:
            raise _Abandoned from None
        raise AssertionError("unreachable")

    def pause(self, seconds: float) -> None:
        self.shared.abandon.wait(seconds)

    def store_once(
        self, tenant: UUID, outcomes: list[Outcome], ends: list[RunEnd], started: list[ClaimedJob]
    ) -> BatchResult:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = connect(self.shared.settings)
        conn = self.conn
        events = self.lanes.get(tenant).events
        try:
            with conn.transaction():  # the outcomes and the events that report them, together
                result = self.apply(conn, tenant, outcomes, ends)
                webhooks.insert(conn, tenant, events.rows(started, result))
        except (psycopg.OperationalError, DatabaseError):
            raise
        except psycopg.Error:
            log.exception("saving %d outcome(s) failed; saving them one by one", len(outcomes))
            result = self.one_by_one(conn, tenant, outcomes, ends)
            with conn.transaction():
                webhooks.insert(conn, tenant, events.rows(started, result))
        events.dispatcher.wake()
        return result

    def apply(
        self, conn: Connection, tenant: UUID, outcomes: list[Outcome], ends: list[RunEnd]
    ) -> BatchResult:
        shared = self.shared
        return apply_batch(
            conn,
            worker=shared.worker_id,
            tenant_id=tenant,
            outcomes=outcomes,
            ends=ends,
            policy=shared.policy,
        )

    def one_by_one(
        self, conn: Connection, tenant: UUID, outcomes: list[Outcome], ends: list[RunEnd]
    ) -> BatchResult:
        # One bad row (a value PostgreSQL refuses) must not keep the rest of its batch from being stored.
        total = BatchResult()
        items: list[Outcome | RunEnd] = [*outcomes, *ends]
        for one in items:
            try:
                if isinstance(one, Outcome):
                    part = self.apply(conn, tenant, [one], [])
                else:
                    part = self.apply(conn, tenant, [], [one])
            except (psycopg.OperationalError, DatabaseError):
                raise  # the connection, not the row: the whole batch is retried
            except psycopg.Error:
                log.exception("dropped an outcome that cannot be saved: %r", one)
                continue
            total.applied += part.applied
            total.lost += part.lost
            total.finished += part.finished
            total.campaigns += part.campaigns
            total.paused_instances += part.paused_instances
        return total

    def record(self, result: BatchResult) -> None:
        t = self.shared.tally
        worker = self.shared.worker_id
        verbose = log.isEnabledFor(logging.INFO)
        for o in result.applied:
            if o.kind == "done":
                t.extra["done"] = t.extra.get("done", 0) + 1
            else:
                attr = _TALLY_FIELD[o.kind]
                setattr(t, attr, getattr(t, attr) + 1)
            if verbose:
                log.info("%s", describe(o), extra=log_fields(o, worker))
        for o in result.lost:
            t.lost += 1
            log.warning(
                "job %d: lease lost to another worker, outcome %s not saved",
                o.job.id,
                o.kind,
                extra={**log_fields(o, worker), "outcome": "lost"},
            )
        t.instances_paused += len(result.paused_instances)
        for change in result.campaigns:
            where = {"worker": worker, "campaign_id": str(change.id), "campaign": change.name}
            if change.status == "completed":
                t.campaigns_completed += 1
                log.info(
                    "campaign %s completed: %d sent, %d failed",
                    change.name,
                    change.sent,
                    change.failed,
                    extra={**where, "outcome": "completed"},
                )
            else:
                t.campaigns_paused += 1
                log.warning(
                    "campaign %s paused: %s", change.name, change.reason, extra={**where, "outcome": "paused"}
                )
        metrics.record(result)


def log_fields(o: Outcome, worker: str) -> dict[str, object]:
    """The structured fields of an outcome's log record (shown by `--log-format json`)."""
    job = o.job
    return {
        "worker": worker,
        "job_id": job.id,
        "message_id": job.message_id,
        "campaign_id": str(job.campaign_id) if job.campaign_id else None,
        "instance": job.instance,
        "task_type": job.task_type,
        "attempt": job.attempts,
        "outcome": o.kind,
        "error_kind": o.error_kind,
    }


def describe(o: Outcome) -> str:
    """One log line for a stored outcome: no phone numbers, no message text, no secrets."""
    job = o.job
    where = f"instance {job.instance}" if job.instance else "unpaced"
    head = f"job {job.id} ({job.task_type}, {where}, attempt {job.attempts}/{job.max_attempts})"
    if o.kind == "sent":
        return f"{head} sent, key {o.key_id or '-'}"
    if o.kind == "retry":
        return f"{head} retry in {o.delay_s:.1f}s: {o.error}"
    if o.kind == "failed":
        return f"{head} failed ({o.error_kind}): {o.error}"
    if o.kind == "release":
        return f"{head} put back, not started" + (f": {o.error}" if o.error else "")
    if o.kind == "skip":
        return f"{head} skipped: {(o.result or {}).get('skipped')}"
    return f"{head} done"
