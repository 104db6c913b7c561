"""How long a campaign takes to send, from the same pacing rules the queue enforces.

Each instance sends one message at a time, a mean delay apart, only inside the send window and at most
`daily_cap` messages a day; instances run side by side, so the busiest one sets the finish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dispara.campaigns.schedule import SendWindow

__all__ = ["CAP_ZONE", "Estimate", "estimate"]

# The queue counts an instance's daily sends by the calendar day in this zone (see queue.sql).
CAP_ZONE = ZoneInfo("America/Sao_Paulo")


@dataclass(frozen=True)
class Estimate:
    start: datetime
    """The first send."""
    finish: datetime
    """The last send."""
    days: int
    """Calendar days on which messages go out."""

    @property
    def duration(self) -> timedelta:
        return self.finish - self.start


def estimate(
    messages: int,
    *,
    instances: int,
    delay_min: float,
    delay_max: float,
    start: datetime,
    window: SendWindow | None = None,
    daily_cap: int | None = None,
) -> Estimate:
    """When the last of `messages` goes out, starting no earlier than `start`."""
    per_instance = math.ceil(messages / max(instances, 1))
    gap = (delay_min + delay_max) / 2
    first = window.next_open(start) if window is not None else start
    t, last, day, sent_today, days = first, first, None, 0, 0
    remaining = per_instance
    while remaining > 0:
        if window is not None:
            t = window.next_open(t)
        today = t.astimezone(CAP_ZONE).date()
        if today != day:
            day, sent_today = today, 0
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), CAP_ZONE)
        if daily_cap is not None and sent_today >= daily_cap:
            t = midnight
            continue
        end = min(midnight, window.closes_after(t)) if window is not None else midnight
        fit = remaining if gap <= 0 else int((end - t).total_seconds() // gap) + 1
        batch = min(remaining, fit, daily_cap - sent_today if daily_cap is not None else remaining)
        days += sent_today == 0
        last = t + timedelta(seconds=gap * (batch - 1))
        remaining -= batch
        sent_today += batch
        t = last + timedelta(seconds=gap)
    return Estimate(start=first, finish=last, days=days)
