"""POST /evolution/webhook in `dispara serve`: the three ways to give the secret, recording, processing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from dispara.config import Settings, reveal
from dispara.receipts import inbox
from dispara.server.app import create_app
from tests.integration.qstash.conftest import PUBLIC_URL, qstash_settings
from tests.integration.queue.conftest import Conn, scalar, tenant, wait_for
from tests.integration.receipts.conftest import CONFIG, receipts_of, sent_campaign
from tests.stubs import evolution_events as ev

SECRET = reveal(CONFIG.webhook_secret) or ""


@pytest.fixture
def hook_settings(db_dsn: str, tmp_path: Path) -> Settings:
    settings = qstash_settings(db_dsn, tmp_path / "data", None)
    return settings.model_copy(update={"evolution": CONFIG})


@pytest.fixture
def hooks(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings), base_url=PUBLIC_URL, raise_server_exceptions=False) as c:
        yield c


def _token(key: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **claims}
    return jwt.encode(payload, key, algorithm="HS256")


def _inbox(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM evolution_inbox"))


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/evolution/webhook", {"X-Dispara-Secret": SECRET}),
        ("/evolution/webhook/messages-update", {"X-Dispara-Secret": SECRET}),
        ("/evolution/webhook", {"Authorization": f"Bearer {_token()}"}),
        (f"/evolution/webhook/s/{SECRET}", {}),
        (f"/evolution/webhook/s/{SECRET}/messages-update", {}),
    ],
)
def test_each_way_of_giving_the_secret_records_the_event(
    hooks: TestClient, conn: Conn, path: str, headers: dict[str, str]
) -> None:
    response = hooks.post(path, json=ev.receipt("inst-a", "3EB0X", "READ"), headers=headers)
    assert response.status_code == 200 and response.json() == {"ok": True, "event": "messages.update"}
    assert _inbox(conn) == 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/evolution/webhook", {}),
        ("/evolution/webhook", {"X-Dispara-Secret": "wrong"}),
        ("/evolution/webhook/s/wrong", {}),
        ("/evolution/webhook/s/wrong", {"X-Dispara-Secret": SECRET}),  # a wrong path is not rescued
        (
            "/evolution/webhook",
            {"Authorization": f"Bearer {_token('another-key-0123456789abcdef0123456789')}"},
        ),
        ("/evolution/webhook", {"Authorization": f"Bearer {_token(exp=int(time.time()) - 60)}"}),
        ("/evolution/webhook", {"Authorization": f"Bearer {_token(action='other')}"}),
        ("/evolution/webhook", {"Authorization": f"Bearer {SECRET}"}),
    ],
)
def test_anything_else_is_401_and_records_nothing(
    hooks: TestClient, conn: Conn, path: str, headers: dict[str, str]
) -> None:
    response = hooks.post(path, json=ev.receipt("inst-a", "3EB0X", "READ"), headers=headers)
    assert response.status_code == 401
    assert _inbox(conn) == 0


def test_without_a_configured_secret_everything_is_refused(db_dsn: str, tmp_path: Path, conn: Conn) -> None:
    settings = qstash_settings(db_dsn, tmp_path / "data", None)
    with TestClient(create_app(settings), base_url=PUBLIC_URL) as client:
        response = client.post("/evolution/webhook/s/", json={}, headers={"X-Dispara-Secret": ""})
        assert response.status_code in (401, 404)
        assert (
            client.post("/evolution/webhook", json={}, headers={"X-Dispara-Secret": "x"}).status_code == 401
        )
    assert _inbox(conn) == 0


def test_junk_bodies_get_400(hooks: TestClient) -> None:
    headers = {"X-Dispara-Secret": SECRET}
    assert hooks.post("/evolution/webhook", content=b"nope", headers=headers).status_code == 400
    assert hooks.post("/evolution/webhook", json={"event": "x"}, headers=headers).status_code == 400


def test_the_secret_path_is_masked_in_the_access_log(
    hooks: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dispara.serve.access"):
        hooks.post(f"/evolution/webhook/s/{SECRET}/messages-update", json=ev.logout("inst-a"))
    assert "/evolution/webhook/s/****/messages-update" in caplog.text
    assert SECRET not in caplog.text


def test_serve_processes_what_it_records(hooks: TestClient, conn: Conn) -> None:
    sent = sent_campaign(conn, 2)
    for key in sent.keys:
        for status in ("READ", "DELIVERY_ACK", "READ"):
            body = ev.receipt("inst-a", key, status)
            hooks.post("/evolution/webhook", json=body, headers={"X-Dispara-Secret": SECRET})
    wait_for(lambda: receipts_of(conn, sent.campaign_id)["read"] == 2, what="receipts processed by serve")
    assert receipts_of(conn, sent.campaign_id)["delivered"] == 2


def test_events_recorded_before_a_crash_are_processed_by_the_next_serve(
    hook_settings: Settings, conn: Conn
) -> None:
    sent = sent_campaign(conn, 1)
    # Recorded but never processed: the process that took them died before its processing pass.
    inbox.record(conn, tenant(conn), json.dumps(ev.receipt("inst-a", sent.keys[0], "READ")).encode())
    conn.commit()
    assert receipts_of(conn, sent.campaign_id)["read"] == 0
    with TestClient(create_app(hook_settings), base_url=PUBLIC_URL):
        wait_for(lambda: receipts_of(conn, sent.campaign_id)["read"] == 1, what="the next serve's pass")
    assert scalar(conn, "SELECT count(*) FROM evolution_inbox WHERE processed_at IS NULL") == 0


def test_an_opt_out_is_confirmed_once_when_a_text_is_configured(
    db_dsn: str, tmp_path: Path, conn: Conn
) -> None:
    from dispara.providers.evolution import EvolutionSender
    from tests.integration.queue.conftest import API_KEY
    from tests.stubs.evolution_stub import EvolutionStub

    phone = "5511987654321"
    sent = sent_campaign(conn, 1, phones=[phone])
    with EvolutionStub(api_key=API_KEY) as stub:
        settings = qstash_settings(db_dsn, tmp_path / "data", stub.url)
        config = CONFIG.model_copy(
            update={"optout_confirmation": "Pronto, você não receberá mais mensagens."}
        )
        settings = settings.model_copy(update={"evolution": config})
        sender = EvolutionSender(stub.url, API_KEY, typing_delay_ms=0)
        with TestClient(create_app(settings, sender=sender), base_url=PUBLIC_URL) as client:
            body = ev.upsert("inst-a", "R1", "SAIR", remote_jid=f"{phone}@s.whatsapp.net")
            for copy in (body, body | {"date_time": "again"}):  # retried with another envelope: one reply
                client.post("/evolution/webhook", json=copy, headers={"X-Dispara-Secret": SECRET})
            wait_for(lambda: len(stub.sends()) == 1, what="the confirmation")
            wait_for(
                lambda: scalar(conn, "SELECT count(*) FROM evolution_inbox WHERE processed_at IS NULL") == 0,
                what="both copies processed",
            )
        sender.close()
        (confirmation,) = stub.sends()
        assert confirmation.instance == "inst-a" and confirmation.body["number"] == phone
        assert confirmation.body["text"] == "Pronto, você não receberá mais mensagens."
    assert receipts_of(conn, sent.campaign_id)["replied"] == 1
