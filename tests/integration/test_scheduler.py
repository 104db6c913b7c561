"""Campaign start times and send windows applied by the scheduler tick."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from dispara.queue.scheduler import tick

SP = ZoneInfo("America/Sao_Paulo")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
BUSINESS_HOURS = {"start": "08:00", "end": "20:00", "days": WEEKDAYS, "timezone": "America/Sao_Paulo"}
WINDOW = {"schedule": {"window": BUSINESS_HOURS}}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SP)


def campaign(conn: psycopg.Connection[tuple[object, ...]], status: str, scheduled_for: datetime | None,
             document: Mapping[str, object]) -> UUID:  # fmt: skip
    tenant = conn.execute(
        "INSERT INTO tenants (name) VALUES ('t') ON CONFLICT (name) DO UPDATE SET name = 't' RETURNING id"
    ).fetchone()
    assert tenant is not None
    row = conn.execute(
        "INSERT INTO campaigns (tenant_id, name, status, scheduled_for, document, idempotency_key)"
        " VALUES (%s, 'c', %s, %s, %s, gen_random_uuid()::text) RETURNING id",
        (tenant[0], status, scheduled_for, Jsonb(document)),
    ).fetchone()
    assert row is not None
    conn.commit()
    return UUID(str(row[0]))


def state(conn: psycopg.Connection[tuple[object, ...]], cid: UUID) -> tuple[object, ...]:
    row = conn.execute(
        "SELECT status, scheduled_for, status_reason FROM campaigns WHERE id = %s", (cid,)
    ).fetchone()
    assert row is not None
    return row


def test_due_scheduled_campaign_starts_and_future_one_waits(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    due = campaign(conn, "scheduled", at("2026-11-23 09:00"), {})
    later = campaign(conn, "scheduled", at("2026-11-25 09:00"), {})
    result = tick(conn, at("2026-11-23 10:00"))
    assert (result.started, result.next_change) == (1, at("2026-11-25 09:00"))
    assert state(conn, due)[0] == "processing"
    assert state(conn, later)[:2] == ("scheduled", at("2026-11-25 09:00"))


def test_window_closing_holds_a_processing_campaign_until_it_reopens(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    cid = campaign(conn, "processing", None, WINDOW)
    assert tick(conn, at("2026-11-27 19:00")).held == 0  # Friday, open
    result = tick(conn, at("2026-11-27 20:30"))  # Friday evening: closed until Monday 08:00
    assert (result.held, result.next_change) == (1, at("2026-11-30 08:00"))
    status, until, reason = state(conn, cid)
    assert (status, until) == ("scheduled", at("2026-11-30 08:00"))
    assert isinstance(reason, str) and reason.startswith("outside the send window until 2026-11-30T08:00")
    assert tick(conn, at("2026-11-30 08:00")).started == 1
    assert state(conn, cid)[0] == "processing"


def test_scheduled_start_inside_a_closed_window_moves_to_its_opening(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    cid = campaign(conn, "scheduled", at("2026-11-28 09:00"), WINDOW)  # a Saturday
    result = tick(conn, at("2026-11-23 10:00"))
    assert (result.started, result.next_change) == (0, at("2026-11-30 08:00"))
    assert state(conn, cid)[:2] == ("scheduled", at("2026-11-30 08:00"))


def test_paused_campaigns_are_left_alone(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    cid = campaign(conn, "paused", at("2026-11-23 09:00"), WINDOW)
    assert tick(conn, at("2026-11-23 10:00")).started == 0
    assert state(conn, cid)[0] == "paused"
