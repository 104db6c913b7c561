"""`dispara status` on seeded campaigns: numbers, JSON keys, resolution by id, prefix and name."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
JSON_KEYS = {"id", "name", "status", "total", "pending", "queued", "sending", "sent", "failed", "cancelled",
             "rate_per_min", "eta_seconds", "instances", "errors"}  # fmt: skip


@pytest.fixture
def example(env_db: str, capsys: pytest.CaptureFixture[str]) -> UUID:
    """The example campaign (36 messages on 2 instances) with some progress, counters kept exact."""
    result = run_cli(capsys, "campaign", "send", str(ROOT / "campaigns" / "example.yaml"), "--json")
    campaign_id = UUID(json.loads(result.out)["campaign"]["id"])
    with psycopg.connect(env_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM message_logs ORDER BY seq")]
        conn.execute(
            "UPDATE message_logs SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (ids[:10],)
        )
        conn.execute(
            "UPDATE message_logs SET status = 'failed', error_message = 'number 55 is not on WhatsApp'"
            " WHERE id = ANY(%s)",
            (ids[10:13],),
        )
        conn.execute(
            "UPDATE message_logs SET status = 'failed', error_message = 'timeout' WHERE id = %s", (ids[13],)
        )
        conn.execute("UPDATE message_logs SET status = 'sending' WHERE id = ANY(%s)", (ids[14:16],))
        conn.execute(
            "UPDATE campaigns SET sent_count = 10, failed_count = 4,"
            " started_at = now() - interval '2 minutes'"
        )
        conn.execute(
            "UPDATE instances SET paused_until = now() + interval '5 minutes',"
            " pause_reason = 'Connection Closed'"
            " WHERE name = 'vendas-2'"
        )
    return campaign_id


def test_status_json_numbers_agree_with_the_seeded_rows(
    example: UUID, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "status", str(example), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) >= JSON_KEYS
    assert (data["total"], data["sent"], data["failed"], data["sending"], data["queued"]) == (
        36,
        10,
        4,
        2,
        20,
    )
    assert (data["pending"], data["cancelled"], data["counters_agree"]) == (0, 0, True)
    assert data["rate_per_min"] == 10
    assert data["errors"] == [
        {"message": "number 55 is not on WhatsApp", "count": 3},
        {"message": "timeout", "count": 1},
    ]
    by_name = {i["name"]: i for i in data["instances"]}
    assert sum(i["sent"] for i in by_name.values()) == 10
    assert sum(i["pending"] for i in by_name.values()) == 22
    assert by_name["vendas-2"]["paused"] is True
    assert by_name["vendas-2"]["pause_reason"] == "Connection Closed"
    assert by_name["vendas-1"]["paused"] is False
    # the paused instance waits its cooldown (300 s) before its pending messages go
    assert data["eta_seconds"] >= 290


def test_status_text_shows_the_same_numbers(example: UUID, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "status", "Boas-vindas exemplo")
    assert result.code == 0
    assert "sent 10  failed 4  cancelled 0  queued 20  sending 2" in result.out
    assert "14/36" in result.out
    assert "number 55 is not on WhatsApp" in result.out


def test_resolution_by_prefix_and_by_latest_name(
    example: UUID, env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert json.loads(run_cli(capsys, "status", str(example)[:6], "--json").out)["id"] == str(example)
    assert run_cli(capsys, "campaign", "send", str(ROOT / "campaigns" / "example.yaml"), "--new").code == 0
    latest = json.loads(run_cli(capsys, "status", "Boas-vindas exemplo", "--json").out)
    assert latest["id"] != str(example)
    assert latest["sent"] == 0


def test_ambiguous_prefix_and_unknown_campaign(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(env_db) as conn:
        tenant = conn.execute("INSERT INTO tenants (name) VALUES ('default') RETURNING id").fetchone()
        assert tenant is not None
        for suffix in ("1", "2"):
            conn.execute(
                "INSERT INTO campaigns (id, tenant_id, name, idempotency_key) VALUES (%s, %s, %s, %s)",
                (f"abcd000{suffix}-0000-4000-8000-000000000000", tenant[0], f"c{suffix}", suffix),
            )
    ambiguous = run_cli(capsys, "status", "abcd")
    assert ambiguous.code == 4
    assert "ambiguous" in ambiguous.err and "abcd0001" in ambiguous.err
    assert run_cli(capsys, "status", "abcd0002", "--json").code == 0
    missing = run_cli(capsys, "status", "black-friday")
    assert (missing.code, missing.err.strip()) == (
        4,
        "dispara: error: no campaign 'black-friday' in this tenant (see `dispara campaign list`)",
    )


def test_disagreeing_counters_are_reported(
    example: UUID, env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(env_db) as conn:
        conn.execute("UPDATE campaigns SET sent_count = 11")
    result = run_cli(capsys, "status", str(example))
    assert "disagree" in result.err
    assert json.loads(run_cli(capsys, "status", str(example), "--json").out)["counters_agree"] is False


def test_other_tenants_campaigns_are_invisible(example: UUID, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--tenant", "other", "status", str(example)).code == 4
