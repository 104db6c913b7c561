"""Pause, resume and cancel of a QStash campaign: held deliveries are republished, cancelled ones dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dispara.campaigns import control
from dispara.config import Settings
from dispara.providers.evolution import EvolutionSender
from dispara.server.app import create_app
from dispara.transports import qstash
from tests.integration.qstash.conftest import PUBLIC_URL, deliver, qstash_settings, seed_qstash_campaign
from tests.integration.queue.conftest import API_KEY, Conn, campaign_state, scalar
from tests.stubs.evolution_stub import EvolutionStub
from tests.stubs.qstash_stub import QStashStub


@pytest.fixture
def qs() -> Iterator[QStashStub]:
    with QStashStub(hold=True) as stub:
        yield stub


@pytest.fixture
def settings_q(db_dsn: str, tmp_path: Path, evolution: EvolutionStub, qs: QStashStub) -> Settings:
    return qstash_settings(db_dsn, tmp_path / "data", evolution.url, qstash_url=qs.url)


@pytest.fixture
def client_q(settings_q: Settings) -> Iterator[TestClient]:
    sender = EvolutionSender(settings_q.evolution.url or "", API_KEY, typing_delay_ms=0)
    with TestClient(create_app(settings_q, sender=sender), base_url=PUBLIC_URL) as c:
        yield c
    sender.close()


def test_a_delivery_for_a_paused_campaign_is_held_and_republished_on_resume(
    client_q: TestClient, conn: Conn, settings_q: Settings, qs: QStashStub, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 2, message_status="pending")
    first = qstash.publish_pending(conn, settings_q, seeded.campaign_id)
    assert first.accepted == 2
    control.pause(conn, seeded.campaign_id)
    held = deliver(client_q, seeded.body(0))
    assert held.status_code == 200 and held.json() == {"status": "held", "changed": True}
    assert evolution.sends() == []
    row = conn.execute(
        "SELECT status, qstash_round, queued_at FROM message_logs WHERE id = %s", (seeded.message_ids[0],)
    ).fetchone()
    conn.commit()
    assert row == ("pending", 1, None)
    assert qstash.publish_pending(conn, settings_q, seeded.campaign_id).accepted == 0  # paused: nothing goes

    control.resume(conn, seeded.campaign_id)
    again = qstash.resume(conn, settings_q, seeded.campaign_id)
    assert again is not None and again.accepted == 1
    dedups = [m.dedup_id for m in qs.messages.values()]
    assert dedups[-1] == qstash.dedup_id(seeded.campaign_id, seeded.message_ids[0], 1)  # a new round
    assert len(set(dedups)) == 3
    republished = list(qs.messages.values())[-1]
    assert json.loads(republished.body)["message_id"] == seeded.message_ids[0]
    assert deliver(client_q, republished.body).json()["status"] == "sent"
    assert deliver(client_q, seeded.body(1)).json()["status"] == "sent"
    state = campaign_state(conn, seeded.campaign_id)
    assert state["status"] == "completed" and state["sent_count"] == 2
    assert len(evolution.sends()) == 2


def test_a_delivery_for_a_cancelled_campaign_sends_nothing(
    client_q: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 3)
    done = control.cancel(conn, seeded.campaign_id)
    assert done.messages == 3
    response = deliver(client_q, seeded.body(1))
    assert response.status_code == 200 and response.json() == {"status": "cancelled", "changed": False}
    assert evolution.sends() == []
    assert campaign_state(conn, seeded.campaign_id)["messages"] == {"cancelled": 3}


def test_an_opted_out_number_is_cancelled_at_delivery(
    client_q: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 1)
    conn.execute(
        "INSERT INTO optouts (tenant_id, phone) VALUES (%s, %s)", (seeded.tenant_id, seeded.phones[0])
    )
    conn.commit()
    assert deliver(client_q, seeded.body(0)).json() == {"status": "cancelled", "changed": True}
    assert evolution.sends() == []


def test_a_closed_instance_is_retried_and_held_at_the_last_attempt(
    client_q: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 1, retries=1)
    evolution.configure(closed_instances={"inst-a"})
    first = deliver(client_q, seeded.body(0), retried=0)
    assert first.status_code == 503 and first.json()["status"] == "instance unavailable"
    last = deliver(client_q, seeded.body(0), retried=1)
    assert last.json() == {"status": "held", "changed": True}
    assert scalar(conn, "SELECT status FROM message_logs") == "pending"
    assert campaign_state(conn, seeded.campaign_id)["failed_count"] == 0  # never burnt
    assert scalar(conn, "SELECT locked_by FROM instances WHERE name = 'inst-a'") is None


def test_a_busy_instance_is_answered_503_without_a_send(
    client_q: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 1)
    conn.execute(
        "INSERT INTO instances (tenant_id, name, locked_by, locked_until) "
        "VALUES (%s, 'inst-a', 'worker-x', now() + interval '1 minute')",
        (seeded.tenant_id,),
    )
    conn.commit()
    response = deliver(client_q, seeded.body(0))
    assert response.status_code == 503 and response.json()["status"] == "instance busy"
    assert evolution.sends() == []
    assert scalar(conn, "SELECT status FROM message_logs") == "queued"


def test_retry_republishes_failed_messages_in_a_new_round(
    client_q: TestClient, conn: Conn, settings_q: Settings, qs: QStashStub, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 2, retries=0)
    evolution.configure(fail_first={seeded.phones[0]: 1})
    assert deliver(client_q, seeded.body(0)).json()["status"] == "failed"  # retries 0: the only attempt
    assert deliver(client_q, seeded.body(1)).json()["status"] == "sent"
    assert campaign_state(conn, seeded.campaign_id)["status"] == "completed"
    result = qstash.retry(conn, settings_q, seeded.campaign_id, control.RETRY_KINDS["default"])
    assert result is not None and result[0] == 1 and result[1].accepted == 1
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["failed_count"], state["messages"]) == (
        "processing",
        0,
        {"queued": 1, "sent": 1},
    )
    republished = list(qs.messages.values())[-1]
    assert republished.dedup_id == qstash.dedup_id(seeded.campaign_id, seeded.message_ids[0], 1)
    assert deliver(client_q, republished.body).json()["status"] == "sent"
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 2, 0)
