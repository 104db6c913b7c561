"""Pure parts of the QStash publisher: rate-limit waits, flow-control keys, deduplication ids."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from uuid import UUID

from dispara.transports.qstash import Pace, dedup_id, flow_key, reset_wait

TENANT = UUID("00000000-0000-0000-0000-000000000001")


def test_reset_wait_reads_unix_seconds_milliseconds_and_plain_seconds() -> None:
    now = 1_800_000_000.0
    assert reset_wait(str(int(now) + 3), cap=10, now=now) == 3
    assert reset_wait(str(int(now * 1000) + 2500), cap=10, now=now) == 2.5
    assert reset_wait("4", cap=10, now=now) == 4
    assert reset_wait(str(int(now) + 3600), cap=10, now=now) == 10  # capped
    assert reset_wait(None, cap=10, now=now) == 1.0


def test_flow_keys_are_per_tenant_and_instance_and_safe() -> None:
    assert flow_key(TENANT, "vendas-1") == f"dispara-{TENANT}-vendas-1"
    odd, other = flow_key(TENANT, "loja centro/1"), flow_key(TENANT, "loja_centro_1")
    assert odd != other and " " not in odd and "/" not in odd


def test_dedup_ids_change_only_with_the_round() -> None:
    campaign = UUID(int=7)
    assert dedup_id(campaign, 5, 0) == dedup_id(campaign, 5, 0) != dedup_id(campaign, 5, 1)


def test_gaps_fall_in_the_delay_range() -> None:
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)
    times = Pace(2, 3).times(start, 50, random.Random(3))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert times[0] == start and all(2 <= g <= 3 for g in gaps)
    assert Pace(0, 0).times(start, 3, random.Random(1)) == [start] * 3
