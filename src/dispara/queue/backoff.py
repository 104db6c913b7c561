"""How long to wait before retrying a job, and how long to pause an instance that cannot send."""

from __future__ import annotations

import random

# TODO(config): worker.retry_base_s / worker.retry_cap_s once config.py grows them.
RETRY_BASE_S = 5.0
RETRY_CAP_S = 600.0
# TODO(config): worker.pause_base_s / worker.pause_cap_s.
PAUSE_BASE_S = 30.0
PAUSE_CAP_S = 900.0
# An instance that will not heal by itself (deleted, server not activated) waits for an operator this long.
PAUSE_PERMANENT_S = 3600.0


def retry_delay(attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
    """Exponential backoff, full jitter, after failed `attempt` (1-based); never before Retry-After."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, min(attempt - 1, 30)))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_CAP_S))
    return delay


def gap(delay_min: float, delay_max: float, *, rng: random.Random | None = None) -> float:
    """The random pause before an instance's next send, in [delay_min, delay_max] seconds."""
    if delay_max <= 0:
        return 0.0
    return (rng or random).uniform(delay_min, max(delay_min, delay_max))
