"""Sender threads: each runs a claimed run (one instance's jobs) strictly one job after the other."""

from __future__ import annotations

import logging
import time

from dispara.providers.base import InstanceUnavailableError
from dispara.queue import backoff, handlers
from dispara.queue.claim import Run
from dispara.queue.model import ClaimedJob, Outcome, RunEnd
from dispara.queue.shared import Shared
from dispara.queue.webhooks import JobEvents

log = logging.getLogger("dispara.worker")

HANDOVER_SIZE = 32  # a sender passes outcomes to the completer in chunks of this many...
HANDOVER_S = 0.005  # ...or after this long, whichever comes first
WEBHOOK_MISSING = (
    "webhook.required is set but no webhook is configured "
    "(set JOB_WEBHOOK or `dispara settings set JOB_WEBHOOK URL`)"
)


class Runner:
    def __init__(self, shared: Shared, ctx: handlers.HandlerContext, events: JobEvents) -> None:
        self.shared = shared
        self.ctx = ctx
        self.events = events

    def loop(self) -> None:
        """Thread body: take runs until the stop sentinel."""
        while True:
            item = self.shared.runs.get()
            if item is None:
                return
            run, claimed_at = item
            try:
                self.execute(run, claimed_at)
            except Exception:  # never lose a thread; the leases of what is left will expire
                log.exception("run on %s crashed", run.instance or "(unpaced)")
            finally:
                self.shared.run_finished()

    def execute(self, run: Run, claimed_at: float) -> None:
        shared = self.shared
        gap = 0.0
        end = RunEnd(run.instance, 0.0) if run.instance is not None else None
        done: list[Outcome | RunEnd] = []
        handed = time.monotonic()
        for index, job in enumerate(run.jobs):
            if shared.draining.is_set() or not shared.lease_fresh(claimed_at):
                done += released(run.jobs[index:])
                break
            self.events.started(job)
            try:
                outcome = self.attempt(job)
            except InstanceUnavailableError as exc:
                if end is None:  # nothing to pause: an unpaced job retries like any transient failure
                    outcome = handlers.failure(job, exc, self.shared.settings.worker)
                else:
                    pause(end, exc)
                    done += released(run.jobs[index:], f"not sent, instance paused: {exc}")
                    break
            if outcome.kind != "skip":
                gap = backoff.gap(job.delay_min, job.delay_max)
            done.append(outcome)
            # Hand outcomes over in chunks, so a long run is stored as it goes.
            if len(done) >= HANDOVER_SIZE or time.monotonic() - handed >= HANDOVER_S:
                shared.outcomes.put(done)
                done, handed = [], time.monotonic()
        if end is not None:
            end.gap_s = gap  # the gap is drawn per send; the last one's is what the next send waits
            done.append(end)
        if done:
            shared.outcomes.put(done)

    def attempt(self, job: ClaimedJob) -> Outcome:
        if self.shared.settings.webhook.required and not self.events.active:
            return Outcome(job, "failed", WEBHOOK_MISSING, "permanent")
        return handlers.execute(job, self.ctx)


def released(jobs: tuple[ClaimedJob, ...], why: str | None = None) -> list[Outcome | RunEnd]:
    """Back to pending without spending an attempt; `why` is recorded on the first (the one tried)."""
    return [Outcome(job, "release", why if i == 0 else None) for i, job in enumerate(jobs)]


def pause(end: RunEnd, exc: InstanceUnavailableError) -> None:
    end.pause, end.pause_reason = True, str(exc)
    floor = backoff.PAUSE_PERMANENT_S if exc.permanent else 0.0
    end.pause_min_s = max(exc.retry_after or 0.0, floor)
    level = logging.ERROR if exc.permanent else logging.WARNING
    log.log(level, "instance %s paused: %s", end.instance, exc)
