"""POST /qstash/messages and /qstash/failed at the HTTP level: signatures, idempotency, failure kinds."""

from __future__ import annotations

import base64
import json
import time

import pytest
from starlette.testclient import TestClient

from tests.integration.qstash.conftest import FAILED_URL, QSeeded, deliver, seed_qstash_campaign
from tests.integration.queue.conftest import Conn, campaign_state, scalar
from tests.stubs.evolution_stub import EvolutionStub
from tests.stubs.qstash_stub import DEV_CURRENT_KEY, DEV_NEXT_KEY, sign


def sends_to(stub: EvolutionStub, phone: str) -> int:
    return sum(1 for r in stub.sends() if r.body.get("number") == phone and r.status == 201)


@pytest.fixture
def seeded(conn: Conn) -> QSeeded:
    return seed_qstash_campaign(conn, 3, instances=["inst-a"])


def test_a_valid_delivery_sends_once_and_counts_once(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    first = deliver(client, seeded.body(0))
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "sent", "changed": True}
    again = deliver(client, seeded.body(0))  # QStash delivers at least once
    assert again.status_code == 200
    assert again.json() == {"status": "sent", "changed": False}
    assert sends_to(evolution, seeded.phones[0]) == 1
    state = campaign_state(conn, seeded.campaign_id)
    assert state["sent_count"] == 1 and state["messages"] == {"sent": 1, "queued": 2}
    assert scalar(conn, "SELECT locked_by FROM instances WHERE name = 'inst-a'") is None


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param({"key": "sig_wrongwrongwrongwrongwrongwrong"}, id="wrong key"),
        pytest.param({"url": "https://elsewhere.example.com/qstash/messages"}, id="wrong url"),
        pytest.param({"exp": -10}, id="expired"),  # times are seconds from now, made when the test runs
        pytest.param({"nbf": 60}, id="not yet valid"),
        pytest.param({"iss": "Someone"}, id="wrong issuer"),
        pytest.param({"signature": ""}, id="missing header"),
        pytest.param({"signature": "not.a.jwt"}, id="garbage"),
    ],
)
def test_forged_deliveries_get_401_and_change_nothing(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub, forge: dict[str, object]
) -> None:
    claims = {k: int(time.time()) + v if k in ("exp", "nbf") else v for k, v in forge.items()}  # type: ignore[operator]
    response = deliver(client, seeded.body(0), **claims)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert "invalid signature" in response.json()["error"]
    assert evolution.sends() == []
    assert campaign_state(conn, seeded.campaign_id)["messages"] == {"queued": 3}


def test_a_tampered_body_gets_401(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    signed_for = seeded.body(0)
    signature = sign(DEV_CURRENT_KEY, "https://dispara.example.com/qstash/messages", signed_for)
    tampered = seeded.body(0, phone_number="5511999999999")
    response = deliver(client, tampered, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid signature: body does not match its signature"
    assert evolution.sends() == []


def test_the_next_signing_key_is_accepted(
    client: TestClient, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    response = deliver(client, seeded.body(1), key=DEV_NEXT_KEY)
    assert response.status_code == 200 and response.json()["status"] == "sent"
    assert sends_to(evolution, seeded.phones[1]) == 1


def test_a_transient_error_asks_for_a_retry_and_the_last_attempt_fails_it(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    evolution.configure(fail_first={seeded.phones[0]: 10})
    first = deliver(client, seeded.body(0), retried=0)
    assert first.status_code == 503 and first.json()["status"] == "retry"
    assert "Retry-After" in first.headers
    assert campaign_state(conn, seeded.campaign_id)["messages"]["queued"] == 3
    last = deliver(client, seeded.body(0), retried=2)  # retries = 2: the third delivery is the last
    assert last.status_code == 200 and last.json()["status"] == "failed"
    state = campaign_state(conn, seeded.campaign_id)
    assert state["failed_count"] == 1 and state["messages"]["failed"] == 1
    assert scalar(conn, "SELECT retry_count FROM message_logs WHERE id = %s", seeded.message_ids[0]) == 1
    assert deliver(client, seeded.body(0), retried=2).json() == {"status": "failed", "changed": False}
    assert state["failed_count"] == campaign_state(conn, seeded.campaign_id)["failed_count"]


def test_a_number_not_on_whatsapp_fails_at_once_and_qstash_stops(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    evolution.configure(not_on_whatsapp={seeded.phones[2]})
    response = deliver(client, seeded.body(2))
    assert response.status_code == 200
    assert response.json() == {"status": "failed", "error_kind": "not_on_whatsapp", "changed": True}
    assert campaign_state(conn, seeded.campaign_id)["failed_count"] == 1


def test_a_tenant_that_does_not_match_is_refused(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    other = seed_qstash_campaign(conn, 1, tenant_name="other")
    response = deliver(client, seeded.body(0, tenant_id=str(other.tenant_id)))
    assert response.status_code == 489
    assert response.headers["Upstash-NonRetryable-Error"] == "true"
    assert evolution.sends() == []
    assert campaign_state(conn, seeded.campaign_id)["messages"] == {"queued": 3}


def test_a_body_without_a_field_is_refused_for_good(client: TestClient, seeded: QSeeded) -> None:
    raw = json.dumps({"message_id": seeded.message_ids[0]}).encode()
    response = deliver(client, raw)
    assert response.status_code == 489
    assert response.json()["error"].startswith("campaign_id:")


def test_the_completing_delivery_completes_the_campaign(
    client: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 2)
    for i in range(2):
        assert deliver(client, seeded.body(i)).json()["status"] == "sent"
    state = campaign_state(conn, seeded.campaign_id)
    assert state["status"] == "completed" and state["sent_count"] == 2


def test_the_failure_callback_fails_the_message_once(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    payload = {
        "status": 500,
        "retried": 2,
        "maxRetries": 2,
        "sourceMessageId": "msg_1",
        "sourceBody": base64.b64encode(seeded.body(1)).decode(),
    }
    raw = json.dumps(payload).encode()

    def post(signature: str) -> dict[str, object]:
        response = client.post("/qstash/failed", content=raw, headers={"Upstash-Signature": signature})
        return {"code": response.status_code, **response.json()}

    assert post(sign(DEV_CURRENT_KEY, "https://dispara.example.com/qstash/messages", raw))["code"] == 401
    assert post(sign(DEV_CURRENT_KEY, FAILED_URL, raw)) == {"code": 200, "status": "failed", "changed": True}
    assert post(sign(DEV_CURRENT_KEY, FAILED_URL, raw)) == {"code": 200, "status": "failed", "changed": False}
    state = campaign_state(conn, seeded.campaign_id)
    assert state["failed_count"] == 1 and state["messages"] == {"failed": 1, "queued": 2}
    assert evolution.sends() == []


def test_a_sent_message_is_not_failed_by_a_late_callback(
    client: TestClient, conn: Conn, seeded: QSeeded
) -> None:
    assert deliver(client, seeded.body(0)).json()["status"] == "sent"
    raw = json.dumps({"status": 500, "retried": 2, "sourceBody": base64.b64encode(seeded.body(0)).decode()})
    response = client.post(
        "/qstash/failed",
        content=raw.encode(),
        headers={"Upstash-Signature": sign(DEV_CURRENT_KEY, FAILED_URL, raw.encode())},
    )
    assert response.json() == {"status": "sent", "changed": False}
    assert campaign_state(conn, seeded.campaign_id)["failed_count"] == 0


def test_a_message_of_a_jobs_campaign_is_refused(
    client: TestClient, conn: Conn, seeded: QSeeded, evolution: EvolutionStub
) -> None:
    conn.execute("UPDATE campaigns SET transport = 'jobs' WHERE id = %s", (seeded.campaign_id,))
    conn.commit()
    response = deliver(client, seeded.body(0))
    assert response.status_code == 489 and response.json() == {"error": "message belongs to a jobs campaign"}
    assert evolution.sends() == []


def test_a_failure_callback_waits_while_the_message_is_being_sent(
    client: TestClient, conn: Conn, seeded: QSeeded
) -> None:
    conn.execute("UPDATE message_logs SET status = 'sending' WHERE id = %s", (seeded.message_ids[0],))
    conn.commit()
    raw = json.dumps({"status": 500, "retried": 2, "sourceBody": base64.b64encode(seeded.body(0)).decode()})
    response = client.post(
        "/qstash/failed",
        content=raw.encode(),
        headers={"Upstash-Signature": sign(DEV_CURRENT_KEY, FAILED_URL, raw.encode())},
    )
    assert response.status_code == 503 and response.json() == {"status": "sending", "changed": False}
    assert campaign_state(conn, seeded.campaign_id)["failed_count"] == 0
