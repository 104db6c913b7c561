"""Send windows: when a campaign may send, in the window's own timezone.

A window whose end is not after its start runs overnight (20:00-02:00 belongs to the day it opens).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class SendWindow:
    start: time
    end: time
    days: frozenset[int]  # Monday = 0, as date.weekday()
    tz: ZoneInfo

    def _span(self, day: date) -> tuple[datetime, datetime]:
        opens = datetime.combine(day, self.start, self.tz)
        closes = datetime.combine(day, self.end, self.tz)
        if closes <= opens:
            closes += timedelta(days=1)
        return opens, closes

    def next_open(self, at: datetime) -> datetime:
        """`at` itself when the window is open then, else the next moment it opens."""
        local = at.astimezone(self.tz)
        best: datetime | None = None
        # Yesterday's overnight window may still be open; a week ahead always holds an opening.
        for offset in range(-1, 8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens, closes = self._span(day)
            if opens <= local < closes:
                return at
            if opens > local and (best is None or opens < best):
                best = opens
        if best is None:
            raise ValueError("a send window needs at least one day")
        return best

    def is_open(self, at: datetime) -> bool:
        return self.next_open(at) == at

    def closes_after(self, at: datetime) -> datetime:
        """When the window open at `at` closes (`at` must be inside it)."""
        local = at.astimezone(self.tz)
        for offset in (-1, 0):
            day = local.date() + timedelta(days=offset)
            if day.weekday() in self.days:
                opens, closes = self._span(day)
                if opens <= local < closes:
                    return closes
        raise ValueError(f"the window is not open at {at.isoformat()}")

    def describe(self) -> str:
        """`09:00-21:00 mon-sat America/Sao_Paulo`."""
        names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        days = "every day" if len(self.days) == 7 else ",".join(names[d] for d in sorted(self.days))
        return f"{self.start:%H:%M}-{self.end:%H:%M} {days} {self.tz.key}"


def first_send_at(now: datetime, at: datetime | None, window: SendWindow | None) -> datetime | None:
    """When a campaign may start: None means right away."""
    start = max(now, at) if at is not None else now
    if window is not None:
        start = window.next_open(start)
    return start if start > now else None


def window_from_document(document: dict[str, object]) -> SendWindow | None:
    """The send window of a stored campaign document (its `schedule.window`), if it has one."""
    from dispara.campaigns.model import Window

    schedule = document.get("schedule")
    raw = schedule.get("window") if isinstance(schedule, dict) else None
    if not isinstance(raw, dict):
        return None
    window = Window.model_validate(raw)
    return SendWindow(window.start, window.end, window.weekdays, window.zone)
