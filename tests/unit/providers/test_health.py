"""providers.health: the exact request of each check, and how each documented reply is judged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.providers import health
from dispara.providers.evolution import EvolutionSender
from dispara.providers.health import CheckFailed
from dispara.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SB_SECRET = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
KEY = "sk-test-SECRET-0123456789"


def failed(call: Any, *args: Any, **kwargs: Any) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        call(*args, **kwargs)
    for secret in (JWT, SB_SECRET, KEY):
        assert secret not in str(info.value)
        assert secret not in info.value.hint
    return info.value


# ---- Supabase Storage ----------------------------------------------------------------------------------


def test_storage_headers_bearer_only_for_legacy_jwt_keys() -> None:
    assert health.is_jwt(JWT)
    assert not health.is_jwt(SB_SECRET)
    assert health.storage_headers(JWT) == {"apikey": JWT, "authorization": f"Bearer {JWT}"}
    assert health.storage_headers(SB_SECRET) == {"apikey": SB_SECRET}


def test_storage_error_reads_the_body_status_code() -> None:
    body = {
        "statusCode": "404",
        "code": "NoSuchBucket",
        "error": "Bucket not found",
        "message": "Bucket not found",
    }
    assert health.storage_error(httpx.Response(400, json=body)) == (404, "NoSuchBucket", "Bucket not found")
    duplicate = {"statusCode": "409", "error": "Duplicate", "message": "The resource already exists"}
    assert health.storage_error(httpx.Response(400, json=duplicate)) == (
        409,
        "Duplicate",
        "The resource already exists",
    )
    assert health.storage_error(httpx.Response(500, text="<html>oops</html>"))[0] == 500
    assert health.storage_error(httpx.Response(401, json={"message": "Invalid API key"})) == (
        401,
        "",
        "Invalid API key",
    )


def test_storage_ok_with_a_secret_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://proj.supabase.co/storage/v1/bucket/dispara-audio",
        json={"id": "dispara-audio", "name": "dispara-audio", "public": False, "file_size_limit": None},
    )
    detail = health.check_storage("https://proj.supabase.co/", SB_SECRET, "dispara-audio")
    assert detail == "bucket 'dispara-audio' reachable (private)"
    request = httpx_mock.get_request()
    assert request is not None
    assert request.method == "GET"
    assert request.headers["apikey"] == SB_SECRET
    assert "authorization" not in request.headers


def test_storage_ok_with_a_legacy_jwt(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"id": "b", "name": "b", "public": True})
    assert health.check_storage("https://proj.supabase.co", JWT, "b") == "bucket 'b' reachable (public)"
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {JWT}"


def test_storage_bucket_missing_is_http_400_with_status_code_404(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=400,
        json={
            "statusCode": "404",
            "code": "NoSuchBucket",
            "error": "Bucket not found",
            "message": "Bucket not found",
        },
    )
    exc = failed(health.check_storage, "https://proj.supabase.co", SB_SECRET, "audio")
    assert str(exc) == "bucket 'audio' not found (HTTP 400, statusCode 404 NoSuchBucket: Bucket not found)"
    assert "create the bucket 'audio'" in exc.hint
    assert exc.status == 404


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            {
                "statusCode": "403",
                "code": "AccessDenied",
                "error": "Unauthorized",
                "message": "invalid signature",
            },
        ),
        (401, {"message": "Invalid API key"}),
    ],
)
def test_storage_key_rejected(httpx_mock: HTTPXMock, status: int, body: dict[str, str]) -> None:
    httpx_mock.add_response(status_code=status, json=body)
    exc = failed(health.check_storage, "https://proj.supabase.co", JWT, "audio")
    assert str(exc).startswith("key rejected")
    assert "SUPABASE_SERVICE_ROLE_KEY" in exc.hint


# ---- ElevenLabs ----------------------------------------------------------------------------------------


def test_elevenlabs_key_and_voice(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://api.elevenlabs.io/v1/voices/21m00Tcm4TlvDq8ikWAM",
        json={"voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "category": "premade", "settings": None},
    )
    detail = health.check_elevenlabs("https://api.elevenlabs.io", KEY, "21m00Tcm4TlvDq8ikWAM")
    assert detail == "API key accepted, voice 21m00Tcm4TlvDq8ikWAM 'Rachel' (premade) found"
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["xi-api-key"] == KEY


def test_elevenlabs_key_only_without_a_voice(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url="https://api.elevenlabs.io/v1/models", json=[{"model_id": "eleven_flash_v2_5"}]
    )
    assert (
        health.check_elevenlabs("https://api.elevenlabs.io", KEY, None)
        == "API key accepted (no default voice set)"
    )


def test_elevenlabs_invalid_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=401, json={"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    )
    exc = failed(
        health.check_elevenlabs,
        "https://api.elevenlabs.io",
        KEY,
        "v1",
        key_name="the tenant setting elevenlabs-apikey",
    )
    assert str(exc) == "API key rejected (HTTP 401 invalid_api_key: Invalid API key)"
    assert exc.hint == "check the tenant setting elevenlabs-apikey"


@pytest.mark.parametrize("status", [404, 400])  # 404 since 2025-07, 400 before (contract §A)
def test_elevenlabs_voice_not_found(httpx_mock: HTTPXMock, status: int) -> None:
    message = "A voice with the voice_id nope was not found."
    httpx_mock.add_response(
        status_code=status, json={"detail": {"status": "voice_not_found", "message": message}}
    )
    exc = failed(health.check_elevenlabs, "https://api.elevenlabs.io", KEY, "nope")
    assert str(exc) == f"voice nope not found (HTTP {status} voice_not_found: {message})"
    assert exc.hint.startswith("check ELEVENLABS_VOICE_ID")


def test_elevenlabs_error_shapes() -> None:
    validation = {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]}
    assert health.elevenlabs_error(httpx.Response(422, json=validation)) == (
        "validation_error",
        "body.text: Field required",
    )
    assert health.elevenlabs_error(httpx.Response(500, text="Internal Server Error")) == (
        None,
        "Internal Server Error",
    )


# ---- Groq ----------------------------------------------------------------------------------------------

MODELS = {
    "object": "list",
    "data": [
        {"id": "whisper-large-v3", "object": "model"},
        {"id": "whisper-large-v3-turbo", "object": "model"},
        {"id": "llama-3.3-70b-versatile", "object": "model"},
    ],
}


def test_groq_key_and_model(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="https://api.groq.com/openai/v1/models", json=MODELS)
    detail = health.check_groq("https://api.groq.com", KEY, "whisper-large-v3-turbo")
    assert detail == "API key accepted, model whisper-large-v3-turbo available"
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_groq_invalid_key(httpx_mock: HTTPXMock) -> None:
    body = {
        "error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
    }
    httpx_mock.add_response(status_code=401, json=body)
    exc = failed(health.check_groq, "https://api.groq.com", KEY)
    assert str(exc) == "API key rejected (HTTP 401 invalid_api_key: Invalid API Key)"
    assert exc.hint.startswith("check GROQ_API_KEY")


def test_groq_model_not_offered(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=MODELS)
    exc = failed(health.check_groq, "https://api.groq.com", KEY, "whisper-1")
    assert "model 'whisper-1' is not offered" in str(exc)
    assert "whisper-large-v3, whisper-large-v3-turbo" in str(exc)


# ---- QStash --------------------------------------------------------------------------------------------


def test_qstash_token_accepted(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="https://qstash.upstash.io/v2/queues", json=[])
    assert (
        health.check_qstash("https://qstash.upstash.io", KEY)
        == "https://qstash.upstash.io: token accepted (0 queue(s))"
    )
    request = httpx_mock.get_request()
    assert request is not None
    assert (request.method, request.headers["authorization"]) == ("GET", f"Bearer {KEY}")


def test_qstash_token_rejected(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=401, json={"error": "invalid token"})
    exc = failed(health.check_qstash, "https://qstash.upstash.io", KEY)
    assert str(exc) == "token rejected (HTTP 401: invalid token)"
    assert "QSTASH_TOKEN" in exc.hint


# ---- webhook -------------------------------------------------------------------------------------------

HOOK = "https://hooks.example.com/dispara?token=abc"


def test_webhook_ping_is_signed_like_the_worker_signs(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=HOOK, status_code=204)
    detail = health.check_webhook(HOOK, "whsec-0123456789")
    assert detail == "https://hooks.example.com/dispara reachable (HTTP 204 to a signed ping event)"
    request = httpx_mock.get_request()
    assert request is not None
    body = json.loads(request.content)
    assert (body["job_name"], body["status"]) == ("doctor", "ping")
    assert set(body) == {"job_name", "startedAt", "finishedAt", "status", "data"}
    assert verify_signature(
        "whsec-0123456789",
        request.content,
        request.headers[SIGNATURE_HEADER],
        request.headers[TIMESTAMP_HEADER],
    )


def test_webhook_unsigned_without_secret(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=200)
    assert "unsigned" in health.check_webhook(HOOK, None)
    request = httpx_mock.get_request()
    assert request is not None
    assert SIGNATURE_HEADER not in request.headers


@pytest.mark.parametrize("status", [400, 401, 404, 405])
def test_webhook_4xx_means_reachable(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status)
    assert f"answered HTTP {status}" in health.check_webhook(HOOK, None)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach the webhook"),
        (httpx.ReadTimeout("timed out"), "did not answer within 5 s"),
        ({"status_code": 502}, "answered HTTP 502"),
        (
            {"status_code": 301, "headers": {"location": "https://new.example.com/h?k=v"}},
            "redirects (HTTP 301)",
        ),
    ],
)
def test_webhook_unreachable(httpx_mock: HTTPXMock, failure: Any, expected: str) -> None:
    if isinstance(failure, Exception):
        httpx_mock.add_exception(failure)
    else:
        httpx_mock.add_response(**failure)
    exc = failed(health.check_webhook, HOOK, None)
    assert expected in str(exc)
    assert "token=abc" not in str(exc)
    assert "JOB_WEBHOOK" in exc.hint


# ---- Evolution -----------------------------------------------------------------------------------------

EVO = "https://evo.example.com"


def test_evolution_server_ok(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{EVO}/instance/fetchInstances", json=[{"name": "vendas-1", "connectionStatus": "open"}]
    )
    detail = health.check_evolution_server(EVO + "/", KEY)
    assert detail == "https://evo.example.com reachable, API key accepted (1 instance(s) on the server)"
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["apikey"] == KEY


def test_evolution_server_key_rejected(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=401,
        json={"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
    )
    exc = failed(health.check_evolution_server, EVO, KEY)
    assert str(exc) == "API key rejected (HTTP 401)"
    assert "EVOLUTION_API_KEY" in exc.hint


def test_evolution_server_unreachable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"), is_reusable=True)
    exc = failed(health.check_evolution_server, EVO, KEY)
    assert str(exc) == "cannot reach Evolution at https://evo.example.com: [Errno 111] Connection refused"
    assert "EVOLUTION_API_URL" in exc.hint


def test_evolution_server_that_is_not_evolution(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(html="<html><title>Welcome to nginx</title></html>")
    exc = failed(health.check_evolution_server, EVO, KEY)
    assert "not with a list of instances" in str(exc)


@pytest.fixture
def sender() -> Iterator[EvolutionSender]:
    with EvolutionSender(EVO, KEY, typing_delay_ms=0, timeout_extra_s=5, connect_timeout_s=5) as s:
        yield s


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"json": {"instance": {"instanceName": "vendas-1", "state": "close"}}}, "state 'close'"),
        ({"json": {"instance": {"instanceName": "vendas-1", "state": "connecting"}}}, "state 'connecting'"),
        ({"json": {"instance": {"instanceName": "vendas-1"}}}, "not loaded on the Evolution server"),
        (
            {
                "status_code": 404,
                "json": {
                    "status": 404,
                    "error": "Not Found",
                    "response": {"message": ['The "vendas-1" instance does not exist']},
                },
            },
            "does not exist",
        ),
        (
            {
                "status_code": 401,
                "json": {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
            },
            "API key rejected",
        ),
    ],
)
def test_evolution_instance_failures(
    httpx_mock: HTTPXMock, sender: EvolutionSender, reply: dict[str, Any], expected: str
) -> None:
    httpx_mock.add_response(url=f"{EVO}/instance/connectionState/vendas-1", **reply)
    exc = failed(health.check_evolution_instance, sender, "vendas-1")
    assert expected in str(exc)
    assert exc.hint


def test_evolution_instance_open(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    httpx_mock.add_response(json={"instance": {"instanceName": "vendas-1", "state": "open"}})
    assert health.check_evolution_instance(sender, "vendas-1") == "open (connected to WhatsApp)"


def test_evolution_instance_unreachable(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"), is_reusable=True)
    exc = failed(health.check_evolution_instance, sender, "vendas-1")
    assert "cannot reach Evolution" in str(exc)
    assert "EVOLUTION_API_URL" in exc.hint


# ---- secrets -------------------------------------------------------------------------------------------


def test_a_key_with_a_line_break_is_refused_without_echoing_it() -> None:
    exc = failed(health.check_groq, "https://api.groq.com", KEY + "\n")
    assert str(exc) == "the Groq key contains spaces or control characters"
