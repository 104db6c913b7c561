"""The other routes of `dispara serve`: auth, size limit, audio publish, /dispatch, /healthz, /campaigns."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dispara.config import ServerConfig, Settings, reveal
from dispara.errors import ConfigError
from dispara.server.app import create_app
from dispara.tenant_settings import set_value
from tests.integration.qstash.conftest import PUBLIC_URL, SERVE_KEY, deliver, seed_qstash_campaign
from tests.integration.queue.conftest import Conn, campaign_state, scalar, seed_campaign
from tests.stubs.evolution_stub import EvolutionStub

AUTH = {"Authorization": f"Bearer {SERVE_KEY}"}


def test_serve_refuses_to_exist_without_an_api_key(qsettings: Settings) -> None:
    settings = qsettings.model_copy(update={"server": ServerConfig(public_url="https://x.example.com")})
    with pytest.raises(ConfigError, match="DISPARA_API_KEY"):
        create_app(settings)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/dispatch"),
        ("GET", "/campaigns/x"),
        ("POST", "/audio/tts/publish"),
        ("POST", "/audio/asr/publish"),
    ],
)
def test_routes_need_the_bearer_token(client: TestClient, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 401
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "missing or wrong bearer token"}


def test_healthz_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}


def test_bodies_over_the_limit_get_413_and_change_nothing(
    client: TestClient, conn: Conn, evolution: EvolutionStub
) -> None:
    seeded = seed_qstash_campaign(conn, 1)
    big = seeded.body(0, padding="x" * 1_100_000)
    assert deliver(client, big).status_code == 413
    assert (
        client.post("/audio/tts/publish", content=b"{" + b" " * 1_100_000 + b"}", headers=AUTH).status_code
        == 413
    )
    assert evolution.sends() == []


def test_tts_publish_queues_a_job_and_answers_its_id(client: TestClient, conn: Conn) -> None:
    response = client.post(
        "/audio/tts/publish", json={"text": "Olá!", "phone_number": "5511999990001"}, headers=AUTH
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    payload = scalar(conn, "SELECT payload FROM jobs WHERE id = %s", job_id)
    assert payload == {
        "run_location": "supabase",
        "task_type": "text-to-speech",
        "data": {"text": "Olá!", "phone_number": "5511999990001"},
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/audio/tts/publish", {}, "text"),
        ("/audio/tts/publish", {"text": ""}, "text"),
        ("/audio/tts/publish", {"text": "oi", "colour": "red"}, "colour"),
        ("/audio/asr/publish", {"language": "pt"}, "audio_url"),
    ],
)
def test_publish_validation_names_the_field(
    client: TestClient, conn: Conn, path: str, body: dict[str, str], field: str
) -> None:
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"].startswith(f"{field}: ")
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_dispatch_drains_due_jobs_and_answers_a_summary(client: TestClient, conn: Conn) -> None:
    seeded = seed_campaign(conn, 3, instances=["inst-j"])
    response = client.post("/dispatch", headers=AUTH)
    assert response.status_code == 200
    summary = response.json()
    assert summary["sent"] == 3 and summary["stopped"] == "once"
    assert campaign_state(conn, seeded.campaign_id)["status"] == "completed"


def test_dispatch_with_all_tenants_drains_every_tenant_each_with_its_key(
    qsettings: Settings, conn: Conn, evolution: EvolutionStub
) -> None:
    evolution.configure(other_keys={"key-of-b-0123456789"})
    mine = seed_campaign(conn, 2, instances=["inst-j"])
    theirs = seed_campaign(conn, 3, instances=["inst-j"], tenant_name="b")
    set_value(conn, theirs.tenant_id, "evolution-apikey", "key-of-b-0123456789")
    conn.commit()
    server = qsettings.server.model_copy(update={"dispatch_all_tenants": True})
    app = create_app(qsettings.model_copy(update={"server": server}))
    with TestClient(app, base_url=PUBLIC_URL) as client:
        summary = client.post("/dispatch", headers=AUTH).json()
    assert summary["sent"] == 5
    keys = {r.body["number"]: r.headers["apikey"] for r in evolution.sends()}
    assert {keys[p] for p in theirs.phones} == {"key-of-b-0123456789"}
    assert {keys[p] for p in mine.phones} == {reveal(qsettings.evolution.api_key)}
    for seeded in (mine, theirs):
        assert campaign_state(conn, seeded.campaign_id)["status"] == "completed"


def test_campaign_route_answers_the_status_document(client: TestClient, conn: Conn) -> None:
    seeded = seed_qstash_campaign(conn, 2)
    response = client.get(f"/campaigns/{seeded.campaign_id}", headers=AUTH)
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == str(seeded.campaign_id) and doc["transport"] == "qstash"
    other = seed_qstash_campaign(conn, 1, tenant_name="other")
    assert client.get(f"/campaigns/{other.campaign_id}", headers=AUTH).status_code == 404


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/qstash/messages", "/qstash/failed", "/audio/tts/publish", "/dispatch", "/healthz"} <= set(paths)


def test_an_unexpected_error_answers_500_without_a_trace(
    client: TestClient, conn: Conn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dispara.server import grouped

    seeded = seed_qstash_campaign(conn, 1)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail /etc/passwd")

    monkeypatch.setattr(grouped, "apply_message_outcomes", boom)
    response = deliver(client, seeded.body(0))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret" not in response.text and "Traceback" not in response.text


def test_serve_without_a_reachable_database_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.helpers import run_cli

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    monkeypatch.setenv("DISPARA_API_KEY", SERVE_KEY)
    result = run_cli(capsys, "serve", "--port", "18999")
    assert result.code == 5
    assert (
        result.err.startswith("dispara: error: cannot connect to the database")
        and "Traceback" not in result.err
    )
    assert "nobody" in result.err or "127.0.0.1" in result.err


def test_serve_without_an_api_key_exits_with_a_configuration_error(
    capsys: pytest.CaptureFixture[str], env_db: str
) -> None:
    from tests.helpers import run_cli

    result = run_cli(capsys, "serve", "--port", "18999")
    assert result.code == 3 and "DISPARA_API_KEY" in result.err
