"""The one retry policy: when a failed job runs again, how long an instance that cannot send pauses, when a
campaign pauses itself, and when a job whose worker keeps dying gives up. SQL only receives its numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dispara.config import WorkerConfig
from dispara.providers.base import InstanceUnavailableError, ServerUnreachableError


@dataclass(frozen=True)
class RetryPolicy:
    retry_base_s: float = 15.0
    retry_cap_s: float = 600.0
    pause_base_s: float = 2.0
    pause_cap_s: float = 900.0
    unreachable_cap_s: float = 60.0
    # An instance that will not heal by itself (deleted, server not activated) waits for an operator.
    pause_permanent_s: float = 3600.0
    pause_campaign_after: int = 20
    max_lease_expiries: int = 3
    # A webhook event the receiver refused is tried again later, from the database, this many times.
    webhook_attempts: int = 8
    webhook_retry_base_s: float = 10.0
    webhook_retry_cap_s: float = 3600.0

    @classmethod
    def of(cls, cfg: WorkerConfig) -> RetryPolicy:
        return cls(
            retry_base_s=cfg.retry_base_s,
            retry_cap_s=cfg.retry_cap_s,
            pause_base_s=cfg.pause_base_s,
            pause_cap_s=cfg.pause_cap_s,
            unreachable_cap_s=cfg.unreachable_cap_s,
            pause_campaign_after=cfg.pause_campaign_after,
            max_lease_expiries=cfg.max_lease_expiries,
        )

    def retry_delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds before retrying after failed `attempt` (1-based); never before Retry-After.

        "Equal jitter": between half and all of the exponential step, so attempts spread out over minutes
        (a full-jitter draw near zero would spend a message's attempts within seconds of a short outage).
        """
        ceiling: float = min(self.retry_cap_s, self.retry_base_s * 2 ** max(0, min(attempt - 1, 30)))
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_cap_s))
        return delay

    def webhook_retry_delay(self, attempts: int) -> float:
        """Seconds before delivering an event again after `attempts` failed deliveries."""
        step: float = self.webhook_retry_base_s * 2 ** max(0, min(attempts - 1, 30))
        return min(self.webhook_retry_cap_s, step)

    def exhausted(self, attempt: int, max_attempts: int) -> bool:
        return attempt >= max_attempts

    def instance_pause(self, exc: InstanceUnavailableError, streak: int) -> float:
        """Seconds an instance rests after `exc`, the `streak`-th such failure with no success between."""
        if exc.permanent:
            return max(self.pause_permanent_s, exc.retry_after or 0.0)
        cap = self.unreachable_cap_s if isinstance(exc, ServerUnreachableError) else self.pause_cap_s
        step: float = min(cap, self.pause_base_s * 2 ** max(0, min(streak - 1, 30)))
        return max(step, exc.retry_after or 0.0)


DEFAULT_POLICY = RetryPolicy()


def gap(delay_min: float, delay_max: float, *, rng: random.Random | None = None) -> float:
    """The random pause before an instance's next send, in [delay_min, delay_max] seconds."""
    if delay_max <= 0:
        return 0.0
    return (rng or random).uniform(delay_min, max(delay_min, delay_max))
