"""Durations and clock times as the operator reads them: times always carry their zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

DEFAULT_ZONE = ZoneInfo("America/Sao_Paulo")


def duration(seconds: float | None) -> str:
    """`3h05m`, `4m10s`, `12s`; `-` for None. Days show as such past 48 hours."""
    if seconds is None:
        return "-"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days >= 2:
        return f"{days}d{hours:02d}h"
    hours += days * 24
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def local(value: datetime | None, zone: ZoneInfo | None = None) -> str:
    """`2025-11-28 09:00 -03` in `zone` (the campaign's window zone; São Paulo by default)."""
    if value is None:
        return "-"
    shown = value.astimezone(zone or DEFAULT_ZONE)
    return f"{shown:%Y-%m-%d %H:%M:%S} {shown:%Z}"
