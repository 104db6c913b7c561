"""The send estimate follows the queue's pacing rules: mean delay per instance, window, daily cap."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from dispara.campaigns.estimate import estimate
from dispara.campaigns.schedule import SendWindow

SP = ZoneInfo("America/Sao_Paulo")
FRIDAY_8AM = datetime(2025, 11, 28, 8, 0, tzinfo=SP)
MON_SAT = frozenset(range(6))


def test_instances_send_side_by_side_one_mean_delay_apart() -> None:
    e = estimate(9, instances=2, delay_min=20, delay_max=40, start=FRIDAY_8AM)
    # The busier instance sends 5 messages: 4 gaps of the mean delay (30 s) after the first.
    assert e.start == FRIDAY_8AM
    assert e.duration == timedelta(seconds=4 * 30)
    assert e.days == 1


def test_a_window_delays_the_start_and_pauses_overnight() -> None:
    window = SendWindow(time(9), time(10), MON_SAT, SP)
    e = estimate(130, instances=1, delay_min=60, delay_max=60, start=FRIDAY_8AM, window=window)
    # 61 sends fit in 09:00-10:00 (both ends), Saturday takes 61 more, Sunday is closed, Monday ends it.
    assert e.start == datetime(2025, 11, 28, 9, 0, tzinfo=SP)
    assert e.finish == datetime(2025, 12, 1, 9, 7, tzinfo=SP)
    assert e.days == 3


def test_the_daily_cap_counts_per_instance_per_day() -> None:
    e = estimate(1000, instances=2, delay_min=20, delay_max=40, start=FRIDAY_8AM, daily_cap=300)
    # 500 per instance: 300 on Friday from 08:00, 200 from midnight on Saturday.
    assert e.finish == datetime(2025, 11, 29, 0, 0, tzinfo=SP) + timedelta(seconds=199 * 30)
    assert e.days == 2


def test_no_delay_means_everything_at_once() -> None:
    e = estimate(10, instances=3, delay_min=0, delay_max=0, start=FRIDAY_8AM)
    assert e.finish == e.start
