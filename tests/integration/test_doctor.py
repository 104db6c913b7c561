"""`dispara doctor` against a real database and stubbed services (replies as docs/providers.md describes)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pytest_httpx import HTTPXMock

from dispara.config import ENV_KEYS
from dispara.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.helpers import Result, run_cli

EVO = "https://evo.example.com"
EVO_KEY = "evo-global-key-0123456789"
QSTASH_TOKEN = "qstash-token-ABCDEFGHIJKLMNOP"
ELEVEN_KEY = "sk_eleven-tenant-key-0123456789"
VOICE = "21m00Tcm4TlvDq8ikWAM"
GROQ_KEY = "gsk_groq-key-0123456789abcdef"
SUPABASE = "https://proj.supabase.co"
SUPABASE_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
HOOK = "https://hooks.example.com/dispara"
HOOK_SECRET = "whsec-tenant-secret-0123456789"
DB_PASSWORD = "senha-secreta-123"
SECRETS = (EVO_KEY, QSTASH_TOKEN, ELEVEN_KEY, GROQ_KEY, SUPABASE_KEY, HOOK_SECRET, DB_PASSWORD)

UNAUTHORIZED = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db_dsn: str, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (*ENV_KEYS, "DISPARA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def seed(dsn: str, *, settings: dict[str, str] | None = None) -> None:
    """Tenant `default`: a recent campaign on vendas-1, an old one on velha (not checked), settings."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("INSERT INTO tenants (name) VALUES ('default') RETURNING id").fetchone()
        assert row is not None
        tenant = row[0]
        conn.execute(
            "INSERT INTO campaigns (tenant_id, name, instances, idempotency_key) "
            "VALUES (%s, 'nova', %s, 'k1')",
            (tenant, ["vendas-1"]),
        )
        conn.execute(
            "INSERT INTO campaigns (tenant_id, name, instances, idempotency_key, created_at) "
            "VALUES (%s, 'velha', %s, 'k2', now() - interval '60 days')",
            (tenant, ["velha"]),
        )
        for key, value in (settings or {}).items():
            conn.execute(
                "INSERT INTO settings (tenant_id, key, value) VALUES (%s, %s, %s)", (tenant, key, value)
            )


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    result = run_cli(capsys, "doctor", *args)
    for secret in SECRETS:
        assert secret not in result.out
        assert secret not in result.err
    return result


def statuses(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    result = doctor(capsys, "--json")
    return {item["name"]: item for item in json.loads(result.out)}


def test_only_the_database_configured(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    httpx_mock: HTTPXMock,
    tmp_path: Path,
    db_dsn: str,
) -> None:
    # httpx_mock has no responses: any HTTP request at all would fail this test.
    result = doctor(capsys)
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("✓ database: external postgresql://")
    assert "schema version" in lines[0]
    assert "(latest); tenant default (no data yet)" in lines[0]
    assert lines[1:] == [
        f"- Evolution not configured: messages go to the outbox file {tmp_path / 'data' / 'outbox.jsonl'}",
        "- QStash not configured (QSTASH_TOKEN not set)",
        "- ElevenLabs not configured (ELEVENLABS_API_KEY or tenant setting elevenlabs-apikey)",
        "- Groq not configured (GROQ_API_KEY or tenant setting groq-apikey)",
        "- Supabase Storage not configured (SUPABASE_URL): audio files are kept under "
        f"{tmp_path / 'data' / 'storage'}",
        "- webhook not configured (JOB_WEBHOOK or tenant setting JOB_WEBHOOK)",
    ]
    assert result.err == ""
    checks = statuses(capsys)
    assert list(checks) == ["database", "evolution", "qstash", "elevenlabs", "groq", "storage", "webhook"]
    assert checks["database"]["status"] == "ok"
    assert all(
        c["status"] == "skipped" and c["hint"] == "" for name, c in checks.items() if name != "database"
    )
    with psycopg.connect(db_dsn) as conn:  # doctor reads, never writes: not even the tenant
        assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (0,)


def healthy_services(env: pytest.MonkeyPatch, httpx_mock: HTTPXMock, db_dsn: str) -> None:
    """Everything configured and answering well; ElevenLabs and the webhook from tenant settings."""
    seed(
        db_dsn,
        settings={
            "elevenlabs-apikey": ELEVEN_KEY,
            "elevenlabs-voice-id": VOICE,
            "JOB_WEBHOOK": HOOK,
            "webhook-secret": HOOK_SECRET,
        },
    )
    env.setenv("EVOLUTION_API_URL", EVO)
    env.setenv("EVOLUTION_API_KEY", EVO_KEY)
    env.setenv("QSTASH_TOKEN", QSTASH_TOKEN)
    env.setenv("GROQ_API_KEY", GROQ_KEY)
    env.setenv("SUPABASE_URL", SUPABASE)
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_KEY)
    httpx_mock.add_response(
        url=f"{EVO}/instance/fetchInstances",
        json=[
            {"id": "0b0f", "name": "vendas-1", "connectionStatus": "open", "integration": "WHATSAPP-BAILEYS"}
        ],
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(
        url=f"{EVO}/instance/connectionState/vendas-1",
        json={"instance": {"instanceName": "vendas-1", "state": "open"}},
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(
        url="https://qstash.upstash.io/v2/queues",
        json=[{"name": "dispara", "parallelism": 1, "lag": 0}],
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(
        url=f"https://api.elevenlabs.io/v1/voices/{VOICE}",
        json={"voice_id": VOICE, "name": "Rachel", "category": "premade"},
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(
        url="https://api.groq.com/openai/v1/models",
        json={"object": "list", "data": [{"id": "whisper-large-v3-turbo", "object": "model"}]},
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(
        url=f"{SUPABASE}/storage/v1/bucket/dispara-audio",
        json={"id": "dispara-audio", "name": "dispara-audio", "public": False},
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_response(method="POST", url=HOOK, status_code=204, is_optional=True, is_reusable=True)


def test_everything_healthy(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock, db_dsn: str
) -> None:
    healthy_services(env, httpx_mock, db_dsn)
    result = doctor(capsys)
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert all(line.startswith("✓ ") for line in lines), result.out
    assert [line.split(":")[0][2:] for line in lines] == [
        "database",
        "evolution",
        "evolution instance vendas-1",
        "qstash",
        "elevenlabs",
        "groq",
        "storage",
        "webhook",
    ]
    text = result.out
    assert (
        "evolution: https://evo.example.com reachable, API key accepted (1 instance(s) on the server)" in text
    )
    assert "evolution instance vendas-1: open (connected to WhatsApp)" in text
    assert f"elevenlabs: API key accepted, voice {VOICE} 'Rachel' (premade) found" in text
    assert "groq: API key accepted, model whisper-large-v3-turbo available" in text
    assert "storage: bucket 'dispara-audio' reachable (private)" in text
    assert "webhook: https://hooks.example.com/dispara reachable (HTTP 204 to a signed ping event)" in text
    assert "velha" not in text  # its campaign is 60 days old

    eleven = httpx_mock.get_request(url=f"https://api.elevenlabs.io/v1/voices/{VOICE}")
    assert eleven is not None
    assert eleven.headers["xi-api-key"] == ELEVEN_KEY  # from the tenant setting
    storage = httpx_mock.get_request(url=f"{SUPABASE}/storage/v1/bucket/dispara-audio")
    assert storage is not None
    assert storage.headers["apikey"] == SUPABASE_KEY
    assert "authorization" not in storage.headers  # sb_secret_ keys are not JWTs
    hook = httpx_mock.get_request(method="POST", url=HOOK)
    assert hook is not None
    assert json.loads(hook.content)["status"] == "ping"
    assert verify_signature(
        HOOK_SECRET, hook.content, hook.headers[SIGNATURE_HEADER], hook.headers[TIMESTAMP_HEADER]
    )

    checks = statuses(capsys)
    assert {c["status"] for c in checks.values()} == {"ok"}


def test_checks_run_concurrently(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock, db_dsn: str
) -> None:
    healthy_services(env, httpx_mock, db_dsn)
    httpx_mock.reset()
    delay = 0.6

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(delay)
        if request.url.path == "/instance/fetchInstances":
            return httpx.Response(200, json=[])
        if "connectionState" in request.url.path:
            return httpx.Response(200, json={"instance": {"instanceName": "vendas-1", "state": "open"}})
        if request.url.host == "api.groq.com":
            return httpx.Response(200, json={"object": "list", "data": []})
        if request.url.path.startswith("/storage/"):
            return httpx.Response(200, json={"id": "dispara-audio", "public": False})
        return httpx.Response(200, json=[] if request.url.host == "qstash.upstash.io" else {})

    httpx_mock.add_callback(slow, is_reusable=True)
    started = time.monotonic()
    result = doctor(capsys)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.out + result.err
    assert len(httpx_mock.get_requests()) == 7
    assert elapsed < 4 * delay, f"7 requests of {delay} s took {elapsed:.1f} s: not concurrent"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_unreachable(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock
) -> None:
    port = closed_port()
    env.setenv("DATABASE_URL", f"postgresql://dispara:{DB_PASSWORD}@127.0.0.1:{port}/dispara")
    env.setenv("GROQ_API_KEY", GROQ_KEY)  # a healthy service does not change the verdict
    httpx_mock.add_response(url="https://api.groq.com/openai/v1/models", json={"object": "list", "data": []})
    result = doctor(capsys)
    assert result.code == 5
    lines = result.out.splitlines()
    assert lines[0].startswith(
        f"✗ database: external postgresql://dispara:****@127.0.0.1:{port}/dispara: cannot connect"
    )
    assert lines[1].startswith("    hint: check DATABASE_URL")
    assert "✓ groq: API key accepted" in result.out
    assert (
        "- ElevenLabs not configured (ELEVENLABS_API_KEY or tenant setting elevenlabs-apikey; "
        "tenant settings not read: database unavailable)\n" in result.out
    )
    assert "- Evolution instances not checked" not in result.out  # Evolution is not configured at all
    assert "dispara: error: 1 of 2 checks failed: database" in result.err


def test_database_without_schema(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_db_dsn: str, httpx_mock: HTTPXMock
) -> None:
    env.setenv("DATABASE_URL", empty_db_dsn)
    result = doctor(capsys)
    assert result.code == 5
    assert ": no dispara schema\n    hint: run `dispara db migrate`" in result.out


def test_webhook_required_but_missing(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    (tmp_path / "dispara.yaml").write_text("webhook:\n  required: true\n", encoding="utf-8")
    result = doctor(capsys)
    assert result.code == 6
    assert "✗ webhook: webhook not configured" in result.out
    assert "hint: webhook.required is set" in result.out


EVO_ENV = {"EVOLUTION_API_URL": EVO, "EVOLUTION_API_KEY": EVO_KEY}
FETCH = f"{EVO}/instance/fetchInstances"
STATE = f"{EVO}/instance/connectionState/vendas-1"
REFUSED = httpx.ConnectError("[Errno 111] Connection refused")
ELEVEN_ENV = {"ELEVENLABS_API_KEY": ELEVEN_KEY, "ELEVENLABS_VOICE_ID": VOICE}
ELEVEN = f"https://api.elevenlabs.io/v1/voices/{VOICE}"

# (environment, [(url, reply)], failing check, its detail, a piece of its hint)
FAILURES: dict[str, tuple[dict[str, str], list[tuple[str, Any]], str, str, str]] = {
    "evolution key rejected": (
        EVO_ENV,
        [
            (FETCH, {"status_code": 401, "json": UNAUTHORIZED}),
            (STATE, {"status_code": 401, "json": UNAUTHORIZED}),
        ],
        "evolution",
        "API key rejected (HTTP 401) (1 instance(s) not checked)",
        "EVOLUTION_API_KEY",
    ),
    "instance closed": (
        EVO_ENV,
        [
            (FETCH, {"json": []}),
            (STATE, {"json": {"instance": {"instanceName": "vendas-1", "state": "close"}}}),
        ],
        "evolution instance vendas-1",
        "state 'close': not connected to WhatsApp",
        "scan the QR code",
    ),
    "instance not loaded": (
        EVO_ENV,
        [(FETCH, {"json": []}), (STATE, {"json": {"instance": {"instanceName": "vendas-1"}}})],
        "evolution instance vendas-1",
        "no connection state: the instance is not loaded on the Evolution server",
        "restart the instance",
    ),
    "evolution unreachable": (
        EVO_ENV,
        [(FETCH, REFUSED), (STATE, REFUSED)],
        "evolution",
        "cannot reach Evolution at https://evo.example.com: [Errno 111] Connection refused "
        "(1 instance(s) not checked)",
        "check EVOLUTION_API_URL",
    ),
    "elevenlabs key rejected": (
        ELEVEN_ENV,
        [
            (
                ELEVEN,
                {
                    "status_code": 401,
                    "json": {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                },
            )
        ],
        "elevenlabs",
        "API key rejected (HTTP 401 invalid_api_key: Invalid API key)",
        "check ELEVENLABS_API_KEY",
    ),
    "elevenlabs voice missing": (
        ELEVEN_ENV,
        [
            (
                ELEVEN,
                {
                    "status_code": 404,
                    "json": {
                        "detail": {
                            "status": "voice_not_found",
                            "message": f"A voice with the voice_id {VOICE} was not found.",
                        }
                    },
                },
            )
        ],
        "elevenlabs",
        f"voice {VOICE} not found "
        f"(HTTP 404 voice_not_found: A voice with the voice_id {VOICE} was not found.)",
        "check ELEVENLABS_VOICE_ID",
    ),
    "groq key rejected": (
        {"GROQ_API_KEY": GROQ_KEY},
        [
            (
                "https://api.groq.com/openai/v1/models",
                {
                    "status_code": 401,
                    "json": {
                        "error": {
                            "message": "Invalid API Key",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                },
            )
        ],
        "groq",
        "API key rejected (HTTP 401 invalid_api_key: Invalid API Key)",
        "check GROQ_API_KEY",
    ),
    "storage bucket missing": (
        {"SUPABASE_URL": SUPABASE, "SUPABASE_SERVICE_ROLE_KEY": SUPABASE_KEY},
        [
            (
                f"{SUPABASE}/storage/v1/bucket/dispara-audio",
                {
                    "status_code": 400,
                    "json": {
                        "statusCode": "404",
                        "code": "NoSuchBucket",
                        "error": "Bucket not found",
                        "message": "Bucket not found",
                    },
                },
            )
        ],
        "storage",
        "bucket 'dispara-audio' not found (HTTP 400, statusCode 404 NoSuchBucket: Bucket not found)",
        "create the bucket 'dispara-audio'",
    ),
    "qstash token rejected": (
        {"QSTASH_TOKEN": QSTASH_TOKEN},
        [("https://qstash.upstash.io/v2/queues", {"status_code": 401, "json": {"error": "invalid token"}})],
        "qstash",
        "token rejected (HTTP 401: invalid token)",
        "QSTASH_TOKEN",
    ),
    "webhook down": (
        {"JOB_WEBHOOK": HOOK},
        [(HOOK, REFUSED)],
        "webhook",
        "cannot reach the webhook at https://hooks.example.com/dispara: [Errno 111] Connection refused",
        "check JOB_WEBHOOK and that the receiver is up",
    ),
    "webhook failing": (
        {"JOB_WEBHOOK": HOOK},
        [(HOOK, {"status_code": 503, "text": "Service Unavailable"})],
        "webhook",
        "https://hooks.example.com/dispara answered HTTP 503",
        "check JOB_WEBHOOK",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock, db_dsn: str, case: str
) -> None:
    variables, replies, name, detail, hint = FAILURES[case]
    seed(db_dsn)
    for key, value in variables.items():
        env.setenv(key, value)
    for url, reply in replies:
        if isinstance(reply, Exception):
            httpx_mock.add_exception(reply, url=url, is_optional=True, is_reusable=True)
        else:
            httpx_mock.add_response(url=url, **reply, is_optional=True, is_reusable=True)

    result = doctor(capsys)
    assert result.code == 6, result.out + result.err
    assert f"✗ {name}: {detail}\n    hint: " in result.out
    hint_line = result.out.split(f"✗ {name}: {detail}\n", 1)[1].splitlines()[0]
    assert hint in hint_line
    assert "✓ database:" in result.out
    assert "dispara: error: 1 of " in result.err
    assert result.err.rstrip().endswith(f"checks failed: {name}")

    checks = statuses(capsys)
    assert checks[name]["status"] == "fail"
    assert checks[name]["detail"] == detail
    assert hint in checks[name]["hint"]
    assert [c["status"] for c in checks.values()].count("fail") == 1


def test_half_configured_services_fail_without_a_request(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock
) -> None:
    env.setenv("EVOLUTION_API_URL", EVO)
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_KEY)
    result = doctor(capsys)
    assert result.code == 6
    assert (
        "✗ evolution: https://evo.example.com: EVOLUTION_API_URL is set but EVOLUTION_API_KEY is not"
        in result.out
    )
    assert (
        "✗ storage: SUPABASE_SERVICE_ROLE_KEY is set but SUPABASE_URL is not\n    hint: set SUPABASE_URL"
        in (result.out)
    )
    assert "dispara: error: 2 of 3 checks failed: evolution, storage" in result.err
