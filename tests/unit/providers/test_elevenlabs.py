"""ElevenLabs text-to-speech against pytest-httpx, reply by reply as the contract describes them."""

from __future__ import annotations

import json

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.elevenlabs import ElevenLabsClient
from dispara.providers.retrying import CallRetries

URL = "https://api.elevenlabs.test"
TTS_URL = f"{URL}/v1/text-to-speech/voice-1?output_format=opus_48000_32"
OGG = b"OggS\x00\x02" + b"\x00" * 60
KEY = "xi-0123456789abcdef"


@pytest.fixture
def client() -> ElevenLabsClient:
    return ElevenLabsClient(URL, retries=CallRetries(retries=2, backoff_s=0.001))


def speak(client: ElevenLabsClient, **kw: object) -> object:
    args: dict[str, object] = {
        "api_key": KEY,
        "voice_id": "voice-1",
        "text": "Olá",
        "model_id": "eleven_flash_v2_5",
        "language": "pt",
    }
    return client.synthesize(**(args | kw))  # type: ignore[arg-type]


def detail(status: str, message: str) -> dict[str, object]:
    return {"detail": {"status": status, "message": message}}


def test_success_sends_the_contract_request(httpx_mock: HTTPXMock, client: ElevenLabsClient) -> None:
    httpx_mock.add_response(
        url=TTS_URL, method="POST", content=OGG, headers={"request-id": "r1", "character-cost": "3"}
    )
    speech = speak(client)
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["xi-api-key"] == KEY
    assert json.loads(request.content) == {
        "text": "Olá",
        "model_id": "eleven_flash_v2_5",
        "language_code": "pt",
    }
    assert speech == type(speech)(OGG, "ogg", "audio/ogg; codecs=opus", "r1", 3)  # type: ignore[call-arg]


def test_language_code_only_for_models_that_take_it(httpx_mock: HTTPXMock, client: ElevenLabsClient) -> None:
    httpx_mock.add_response(url=TTS_URL, content=OGG)
    speak(client, model_id="eleven_multilingual_v2")
    request = httpx_mock.get_request()
    assert request is not None
    assert json.loads(request.content) == {"text": "Olá", "model_id": "eleven_multilingual_v2"}


def test_text_over_the_model_limit_is_refused_without_a_request(client: ElevenLabsClient) -> None:
    with pytest.raises(
        PermanentServiceError, match="10,001 characters, model eleven_multilingual_v2 takes at most"
    ):
        speak(client, text="a" * 10_001, model_id="eleven_multilingual_v2")
    with pytest.raises(PermanentServiceError, match="the text is empty"):
        speak(client, text="  ")


def test_not_ogg_falls_back_to_mp3_and_remembers(httpx_mock: HTTPXMock, client: ElevenLabsClient) -> None:
    httpx_mock.add_response(
        url=TTS_URL, content=b"\x4f\x70\x75\x73raw", headers={"content-type": "audio/opus"}
    )
    mp3_url = f"{URL}/v1/text-to-speech/voice-1?output_format=mp3_44100_128"
    httpx_mock.add_response(url=mp3_url, content=b"ID3mp3", is_reusable=True)
    first = speak(client)
    second = speak(client)
    assert first.format == second.format == "mp3"  # type: ignore[attr-defined]
    assert [str(r.url) for r in httpx_mock.get_requests()] == [TTS_URL, mp3_url, mp3_url]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            401,
            detail("invalid_api_key", "Invalid API key"),
            "the API key is invalid .*check elevenlabs-apikey",
        ),
        (401, detail("quota_exceeded", "This request exceeds your quota of 10000."), "the quota is exceeded"),
        (401, detail("missing_permissions", "needs text_to_speech"), "lacks a permission"),
        (
            400,
            detail("voice_not_found", "A voice with the voice_id voice-1 was not found."),
            "voice voice-1 not found",
        ),
        (
            404,
            detail("voice_not_found", "A voice with the voice_id voice-1 was not found."),
            "voice voice-1 not found",
        ),
        (400, detail("max_character_limit_exceeded", "too long"), "longer than the model allows"),
        (403, detail("only_for_creator+", "upgrade"), "plan does not allow"),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]},
            "validation_error: body.text: Field required",
        ),
    ],
)
def test_permanent_errors(
    httpx_mock: HTTPXMock, client: ElevenLabsClient, status: int, body: object, message: str
) -> None:
    httpx_mock.add_response(url=TTS_URL, status_code=status, json=body)
    with pytest.raises(PermanentServiceError, match=message) as caught:
        speak(client)
    assert not caught.value.transient and caught.value.status == status
    assert len(httpx_mock.get_requests()) == 1  # never retried
    assert KEY not in str(caught.value)


def test_429_and_5xx_are_retried_in_the_call(httpx_mock: HTTPXMock, client: ElevenLabsClient) -> None:
    busy = detail("too_many_concurrent_requests", "Too many concurrent requests.")
    httpx_mock.add_response(url=TTS_URL, status_code=429, json=busy)
    httpx_mock.add_response(url=TTS_URL, status_code=503, text="upstream")
    httpx_mock.add_response(url=TTS_URL, content=OGG)
    assert speak(client).format == "ogg"  # type: ignore[attr-defined]
    assert len(httpx_mock.get_requests()) == 3


def test_a_long_retry_after_goes_to_the_queue(httpx_mock: HTTPXMock, client: ElevenLabsClient) -> None:
    httpx_mock.add_response(
        url=TTS_URL, status_code=429, json=detail("system_busy", "busy"), headers={"retry-after": "30"}
    )
    with pytest.raises(TransientServiceError, match="HTTP 429 system_busy: busy") as caught:
        speak(client)
    assert caught.value.retry_after == 30.0
    assert len(httpx_mock.get_requests()) == 1


def test_persistent_5xx_and_network_errors_are_transient(
    httpx_mock: HTTPXMock, client: ElevenLabsClient
) -> None:
    httpx_mock.add_response(url=TTS_URL, status_code=500, json={"detail": "boom"}, is_reusable=True)
    with pytest.raises(TransientServiceError, match="HTTP 500: boom"):
        speak(client)
    assert len(httpx_mock.get_requests()) == 3
    httpx_mock.reset()
    httpx_mock.add_exception(httpx.ConnectError("refused"), is_reusable=True)
    with pytest.raises(TransientServiceError, match=r"cannot reach ElevenLabs https://api\.elevenlabs\.test"):
        speak(client)
    httpx_mock.reset()
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientServiceError, match="did not answer in time"):
        speak(client)
    assert len(httpx_mock.get_requests()) == 1  # a read timeout may have been served: not resent here
