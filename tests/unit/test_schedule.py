"""Send-window arithmetic: openings, overnight windows, weekdays and timezones."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from dispara.campaigns.schedule import SendWindow, first_send_at

SP = ZoneInfo("America/Sao_Paulo")
WEEKDAYS = frozenset(range(5))


def window(start: str, end: str, days: frozenset[int] = frozenset(range(7))) -> SendWindow:
    return SendWindow(time.fromisoformat(start), time.fromisoformat(end), days, SP)


def sp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SP)


def test_inside_the_window_is_now() -> None:
    at = sp("2026-11-23 10:00")  # a Monday
    assert window("08:00", "20:00").next_open(at) == at


def test_before_opening_waits_for_it_and_after_closing_for_tomorrow() -> None:
    w = window("08:00", "20:00")
    assert w.next_open(sp("2026-11-23 06:30")) == sp("2026-11-23 08:00")
    assert w.next_open(sp("2026-11-23 20:00")) == sp("2026-11-24 08:00")


def test_weekend_moves_to_monday() -> None:
    friday_night = sp("2026-11-27 21:00")
    assert window("08:00", "20:00", WEEKDAYS).next_open(friday_night) == sp("2026-11-30 08:00")


def test_overnight_window_still_open_after_midnight() -> None:
    w = window("20:00", "02:00", frozenset({0}))  # opens Monday evenings only
    assert w.next_open(sp("2026-11-24 01:30")) == sp("2026-11-24 01:30")
    assert w.next_open(sp("2026-11-24 02:30")) == sp("2026-11-30 20:00")


def test_timezone_is_the_window_s_not_the_caller_s() -> None:
    utc_noon = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 07:00 in São Paulo
    assert window("08:00", "20:00").next_open(utc_noon) == sp("2026-11-23 08:00")


def test_first_send_at() -> None:
    now = sp("2026-11-23 10:00")
    assert first_send_at(now, None, None) is None
    assert first_send_at(now, sp("2026-11-23 09:00"), None) is None
    assert first_send_at(now, sp("2026-11-25 09:00"), None) == sp("2026-11-25 09:00")
    assert first_send_at(now, sp("2026-11-25 21:00"), window("08:00", "20:00")) == sp("2026-11-26 08:00")
    assert first_send_at(sp("2026-11-23 22:00"), None, window("08:00", "20:00")) == sp("2026-11-24 08:00")
