"""What the worker's threads share: the hand-over queues, counters under one lock, wake-up and stop flags."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from uuid import UUID

from dispara.config import Settings
from dispara.queue.claim import Run
from dispara.queue.model import Outcome, RunEnd, Tally


@dataclass
class Shared:
    settings: Settings
    worker_id: str
    tenant: UUID
    tally: Tally = field(default_factory=Tally)
    # Set whenever the claim loop may find something new: NOTIFY, a run ended, outcomes stored.
    wake: threading.Event = field(default_factory=threading.Event)
    draining: threading.Event = field(default_factory=threading.Event)  # senders start no new job
    closing: threading.Event = field(default_factory=threading.Event)  # background threads exit
    last_heartbeat: float = field(default_factory=time.monotonic)  # monotonic time of the last renewal
    runs: queue.SimpleQueue[tuple[Run, float] | None] = field(default_factory=queue.SimpleQueue)
    # Lists, not single outcomes: every hand-over between threads costs a GIL round trip.
    outcomes: queue.SimpleQueue[list[Outcome | RunEnd] | None] = field(default_factory=queue.SimpleQueue)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active_runs: int = 0
    _inflight: int = 0  # jobs claimed and not yet stored

    def claimed(self, runs: int, jobs: int) -> None:
        with self._lock:
            self._active_runs += runs
            self._inflight += jobs
        self.tally.claimed += jobs

    def run_finished(self) -> None:
        with self._lock:
            self._active_runs -= 1
        self.wake.set()

    def taken_over(self, jobs: int) -> None:
        """Jobs of a dead worker that this one now holds (to fail them)."""
        with self._lock:
            self._inflight += jobs

    def stored(self, jobs: int) -> None:
        with self._lock:
            self._inflight -= jobs
        self.wake.set()

    def busy_runs(self) -> int:
        with self._lock:
            return self._active_runs

    def idle(self) -> bool:
        with self._lock:
            return self._active_runs == 0 and self._inflight == 0

    def lease_fresh(self, claimed_at: float) -> bool:
        """False once the leases may have expired unrenewed (database unreachable): stop sending then."""
        return time.monotonic() < max(claimed_at, self.last_heartbeat) + 0.9 * self.settings.worker.lease_s
