"""Sender threads: each runs a claimed run (one instance's jobs) strictly one job after the other."""

from __future__ import annotations

import logging
import time

from dispara.errors import ServiceError
from dispara.providers.base import (
    CredentialsRejectedError,
    InstanceUnavailableError,
    ServerUnreachableError,
)
from dispara.queue import backoff, handlers
from dispara.queue.model import ClaimedJob, Outcome, OutcomeKind, RunEnd, Started
from dispara.queue.shared import RunState, Shared
from dispara.queue.tenancy import Lane, Lanes

log = logging.getLogger("dispara.worker")

HANDOVER_SIZE = 32  # a sender passes outcomes to the completer in chunks of this many...
HANDOVER_S = 0.005  # ...or after this long, whichever comes first
WEBHOOK_MISSING = (
    "webhook.required is set but no webhook is configured "
    "(set JOB_WEBHOOK or `dispara settings set JOB_WEBHOOK URL`)"
)


class Runner:
    def __init__(self, shared: Shared, lanes: Lanes) -> None:
        self.shared = shared
        self.lanes = lanes

    def loop(self) -> None:
        """Thread body: take runs until the stop sentinel."""
        while True:
            state = self.shared.runs.get()
            if state is None:
                return
            try:
                self.execute(state)
            except Exception:  # never lose a thread; the leases of what is left will expire
                log.exception("run on %s crashed", state.run.instance or "(unpaced)")
            finally:
                self.shared.run_finished(state)

    def execute(self, state: RunState) -> None:
        run = state.run
        lane = self.lanes.get(run.tenant_id or self.shared.tenant)
        end = RunEnd(run.instance, 0.0, tenant_id=run.tenant_id) if run.instance is not None else None
        done: list[Outcome | RunEnd | Started] = []
        if end is not None and run.probe and not self.probe(state, end, lane):
            done += released(state.take_rest(), f"not sent: {end.pause_reason}")
        else:
            self.send_all(state, end, done, lane)
        if end is not None:
            done.append(end)
        if done:
            self.shared.outcomes.put(done)

    def send_all(
        self, state: RunState, end: RunEnd | None, done: list[Outcome | RunEnd | Started], lane: Lane
    ) -> None:
        shared = self.shared
        handed = time.monotonic()
        while (job := state.next_job()) is not None:
            if shared.draining.is_set() or not shared.lease_fresh(state.claimed_at):
                done += released((job, *state.take_rest()))
                break
            halted = shared.halted(job.campaign_id)
            if halted is not None:
                kind: OutcomeKind = "cancel" if halted == "cancelled" else "release"
                done.append(Outcome(job, kind, f"not sent: campaign {halted}"))
                continue
            if lane.events.wants_start(job):
                shared.outcomes.put([Started(job)])  # stored (and so announced) before the send ends
            try:
                outcome = self.attempt(job, lane)
            except InstanceUnavailableError as exc:
                if end is None:  # nothing to pause: an unpaced job retries like any transient failure
                    outcome = handlers.failure(job, exc, shared.policy)
                else:
                    self.pause(end, exc, state)
                    done += released((job, *state.take_rest()), f"not sent: {exc}")
                    break
            if end is not None and outcome.kind != "skip":
                end.gap_s = backoff.gap(job.delay_min, job.delay_max)  # the last send's gap is the one waited
                if outcome.kind == "sent":
                    end.streak, end.probe = 0, False
            done.append(outcome)
            # Hand outcomes over in chunks, so a long run is stored as it goes.
            if len(done) >= HANDOVER_SIZE or time.monotonic() - handed >= HANDOVER_S:
                shared.outcomes.put(done[:])
                done.clear()
                handed = time.monotonic()

    def attempt(self, job: ClaimedJob, lane: Lane) -> Outcome:
        if self.shared.settings.webhook.required and not lane.events.active:
            return Outcome(job, "failed", WEBHOOK_MISSING, "permanent")
        return handlers.execute(job, lane.ctx)

    def probe(self, state: RunState, end: RunEnd, lane: Lane) -> bool:
        """Before the first send after a dropped connection: is the instance open again?"""
        assert state.run.instance is not None
        try:
            status = lane.ctx.sender.instance_state(state.run.instance)
        except InstanceUnavailableError as exc:
            self.pause(end, exc, state)
            return False
        except ServiceError as exc:
            self.pause(end, InstanceUnavailableError(str(exc), instance=state.run.instance), state)
            return False
        if status == "open":
            end.probe = False
            return True
        closed = InstanceUnavailableError(
            f"instance {state.run.instance!r} is {status}, not open", instance=state.run.instance
        )
        self.pause(end, closed, state)
        return False

    def pause(self, end: RunEnd, exc: InstanceUnavailableError, state: RunState) -> None:
        """What the retry policy says for an instance that cannot send, written on the run's end."""
        if isinstance(exc, CredentialsRejectedError):
            # Not the instance's fault: stop the tenant's campaigns, leave the instance ready for later.
            end.halt_reason = f"{exc}; fix it, then `dispara campaign resume`"
            self.lanes.rejected(state.run.tenant_id or self.shared.tenant)
            log.error("sending stopped: %s", exc)
            return
        streak = 1 if end.streak == 0 else state.run.streak + 1  # no success in between: escalate
        end.pause, end.pause_reason, end.streak = True, str(exc), streak
        end.pause_s = self.shared.policy.instance_pause(exc, streak)
        end.probe = not exc.permanent and not isinstance(exc, ServerUnreachableError)
        level = logging.ERROR if exc.permanent else logging.WARNING
        log.log(level, "instance %s paused %.0fs: %s", end.instance, end.pause_s, exc)


def released(jobs: tuple[ClaimedJob, ...], why: str | None = None) -> list[Outcome | RunEnd | Started]:
    """Back to pending without spending an attempt; `why` is recorded on the first (the one tried)."""
    return [Outcome(job, "release", why if i == 0 else None) for i, job in enumerate(jobs)]
