"""How long to wait before retrying a job, and how long to pause an instance that cannot send."""

from __future__ import annotations

import random

from dispara.config import WorkerConfig

DEFAULT_POLICY = WorkerConfig()

# An instance that will not heal by itself (deleted, server not activated) waits for an operator this long.
PAUSE_PERMANENT_S = 3600.0


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    policy: WorkerConfig = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff, full jitter, after failed `attempt` (1-based); never before Retry-After."""
    cap = policy.retry_cap_s
    ceiling = min(cap, policy.retry_base_s * 2 ** max(0, min(attempt - 1, 30)))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def gap(delay_min: float, delay_max: float, *, rng: random.Random | None = None) -> float:
    """The random pause before an instance's next send, in [delay_min, delay_max] seconds."""
    if delay_max <= 0:
        return 0.0
    return (rng or random).uniform(delay_min, max(delay_min, delay_max))
