"""What the worker's threads share: the hand-over queues, what is held (for heartbeats), the runs in
progress, campaigns halted meanwhile, counters under one lock, and the wake-up and stop flags.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from dispara.config import Settings
from dispara.queue.backoff import RetryPolicy
from dispara.queue.claim import Run
from dispara.queue.model import ClaimedJob, Outcome, RunEnd, Started, Tally


class RunState:
    """A claimed run being sent: the sender thread takes jobs one by one; a stopping worker may take the
    ones not yet started away from it, to put them back at once.
    """

    def __init__(self, run: Run, claimed_at: float) -> None:
        self.run = run
        self.claimed_at = claimed_at
        self._next = 0
        self._lock = threading.Lock()

    def next_job(self) -> ClaimedJob | None:
        with self._lock:
            if self._next >= len(self.run.jobs):
                return None
            job = self.run.jobs[self._next]
            self._next += 1
            return job

    def take_rest(self) -> tuple[ClaimedJob, ...]:
        """The jobs not started yet; the sender thread will start none of them."""
        with self._lock:
            rest = self.run.jobs[self._next :]
            self._next = len(self.run.jobs)
            return rest


@dataclass
class Shared:
    settings: Settings
    worker_id: str
    tenant: UUID  # the worker's own tenant: every job's, unless it serves them all
    tally: Tally = field(default_factory=Tally)
    # Set whenever the claim loop may find something new: NOTIFY, a run ended, outcomes stored.
    wake: threading.Event = field(default_factory=threading.Event)
    draining: threading.Event = field(default_factory=threading.Event)  # senders start no new job
    closing: threading.Event = field(default_factory=threading.Event)  # background threads exit
    abandon: threading.Event = field(default_factory=threading.Event)  # completer: spool what is left
    last_heartbeat: float = field(default_factory=time.monotonic)  # monotonic time of the last renewal
    runs: queue.SimpleQueue[RunState | None] = field(default_factory=queue.SimpleQueue)
    # Lists, not single outcomes: every hand-over between threads costs a GIL round trip.
    outcomes: queue.SimpleQueue[list[Outcome | RunEnd | Started] | None] = field(
        default_factory=queue.SimpleQueue
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: set[RunState] = field(default_factory=set)
    _jobs: set[int] = field(default_factory=set)  # claimed and not yet stored
    _instances: set[tuple[UUID, str]] = field(default_factory=set)  # (tenant, name) leased, not released
    _halted: dict[UUID, tuple[str, int]] = field(default_factory=dict)  # campaign -> (status, seq)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    policy: RetryPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy.of(self.settings.worker)

    # ---- runs and what is held ----------------------------------------------------------------------
    def claimed(self, runs: Iterable[Run], claimed_at: float, seen_before: int) -> list[RunState]:
        """Runs just claimed; `seen_before` is `halt_mark()` taken before the claim statement ran."""
        states = [RunState(run, claimed_at) for run in runs]
        with self._lock:
            for state in states:
                self._active.add(state)
                self._jobs.update(job.id for job in state.run.jobs)
                if state.run.instance is not None:
                    self._instances.add((state.run.tenant_id or self.tenant, state.run.instance))
                for job in state.run.jobs:  # the claim saw these campaigns running: fresher than a halt
                    halted = self._halted.get(job.campaign_id) if job.campaign_id else None
                    if halted is not None and halted[1] < seen_before:
                        del self._halted[job.campaign_id]  # type: ignore[arg-type]
        self.tally.claimed += sum(len(s.run.jobs) for s in states)
        return states

    def run_finished(self, state: RunState) -> None:
        with self._lock:
            self._active.discard(state)
        self.wake.set()

    def taken_over(self, jobs: Iterable[ClaimedJob]) -> None:
        """Jobs of a dead worker that this one now holds (to fail them)."""
        with self._lock:
            self._jobs.update(job.id for job in jobs)

    def stored(self, items: Iterable[Outcome | RunEnd | Started]) -> None:
        """These outcomes are in the database (or given up for good): no longer held."""
        with self._lock:
            for item in items:
                if isinstance(item, Outcome):
                    self._jobs.discard(item.job.id)
                elif isinstance(item, RunEnd):
                    self._instances.discard((item.tenant_id or self.tenant, item.instance))
        self.wake.set()

    def held(self) -> tuple[list[int], list[tuple[UUID, str]]]:
        with self._lock:
            return sorted(self._jobs), sorted(self._instances)

    def active_runs(self) -> list[RunState]:
        with self._lock:
            return list(self._active)

    def busy_runs(self) -> int:
        with self._lock:
            return len(self._active)

    def idle(self) -> bool:
        with self._lock:
            return not self._active and not self._jobs

    def lease_fresh(self, claimed_at: float) -> bool:
        """False once the leases may have expired unrenewed (database unreachable): stop sending then."""
        return time.monotonic() < max(claimed_at, self.last_heartbeat) + 0.9 * self.settings.worker.lease_s

    # ---- campaigns paused or cancelled while their runs are out ---------------------------------------
    def halt_mark(self) -> int:
        return next(self._seq)

    def campaign_changed(self, campaign_id: UUID, status: str) -> None:
        with self._lock:
            if status == "processing":
                self._halted.pop(campaign_id, None)
            else:
                self._halted[campaign_id] = (status, next(self._seq))

    def halted(self, campaign_id: UUID | None) -> str | None:
        """The campaign's new status when it stopped running after its jobs were claimed, else None."""
        if campaign_id is None:
            return None
        with self._lock:
            entry = self._halted.get(campaign_id)
        return entry[0] if entry else None
