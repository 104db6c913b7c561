"""Groq Whisper transcription against pytest-httpx: the multipart request, file names, each error class."""

from __future__ import annotations

import email.parser
import email.policy
import io

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.groq import MAX_UPLOAD_BYTES, GroqClient, sniff, upload_name
from dispara.providers.retrying import CallRetries

URL = "https://api.groq.test"
ENDPOINT = f"{URL}/openai/v1/audio/transcriptions"
KEY = "gsk_0123456789abcdef"
AUDIO = b"OggS" + bytes(range(256)) * 8


@pytest.fixture
def client() -> GroqClient:
    return GroqClient(URL, retries=CallRetries(retries=2, backoff_s=0.001))


def hear(client: GroqClient, data: bytes = AUDIO, name: str = "voice.ogg") -> object:
    return client.transcribe(
        api_key=KEY,
        file=io.BytesIO(data),
        size=len(data),
        name=name,
        model="whisper-large-v3-turbo",
        language="pt",
    )


def error(code: str, message: str, kind: str = "invalid_request_error") -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": code}}


def fields(request: httpx.Request) -> dict[str, bytes]:
    """The multipart parts of a request, parsed by the standard library's MIME parser."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.read())
    out: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if filename:
            out["filename"] = filename.encode()
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[str(name)] = payload
    return out


def test_success_uploads_the_file_as_multipart(httpx_mock: HTTPXMock, client: GroqClient) -> None:
    httpx_mock.add_response(
        url=ENDPOINT,
        method="POST",
        json={"text": " Olá mundo ", "language": "portuguese", "duration": 2.5, "x_groq": {"id": "req_1"}},
    )
    heard = hear(client)
    assert (heard.text, heard.language, heard.duration_s) == ("Olá mundo", "portuguese", 2.5)  # type: ignore[attr-defined]
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == f"Bearer {KEY}"
    parts = fields(request)
    assert parts["file"] == AUDIO and parts["filename"] == b"voice.ogg"
    assert parts["model"] == b"whisper-large-v3-turbo" and parts["language"] == b"pt"
    assert parts["response_format"] == b"verbose_json"


def test_plain_json_answer_without_language_keeps_the_asked_one(
    httpx_mock: HTTPXMock, client: GroqClient
) -> None:
    httpx_mock.add_response(url=ENDPOINT, json={"text": "oi"})
    heard = hear(client)
    assert (heard.text, heard.language, heard.duration_s) == ("oi", "pt", None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "head", "name"),
    [
        ("in/voice.ogg", b"", "voice.ogg"),
        ("in/Voice.OGA", b"OggS", "Voice.ogg"),
        ("in/audio", b"OggS\x00", "audio.ogg"),
        ("in/x.bin", b"ID3\x04", "x.mp3"),
        ("in/x", b"RIFF\x00\x00\x00\x00WAVEfmt ", "x.wav"),
        ("in/x.aac", b"\x1a\x45\xdf\xa3", "x.webm"),
    ],
)
def test_upload_names_have_an_extension_groq_accepts(path: str, head: bytes, name: str) -> None:
    assert upload_name(path, head) == name


def test_unrecognisable_formats_are_refused() -> None:
    with pytest.raises(PermanentServiceError, match=r"format not accepted by Groq \(\.aac\)"):
        upload_name("x.aac", b"\xff\xf1garbage")
    assert sniff(b"nothing") is None


def test_over_25_mb_is_refused_before_upload(client: GroqClient) -> None:
    with pytest.raises(PermanentServiceError, match="over Groq's 25 MB upload limit: refused before upload"):
        client.transcribe(
            api_key=KEY,
            file=io.BytesIO(b""),
            size=MAX_UPLOAD_BYTES + 1,
            name="a.ogg",
            model="m",
            language=None,
        )


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            401,
            error("invalid_api_key", "Invalid API Key"),
            "Groq HTTP 401 invalid_api_key: Invalid API Key.*check groq-apikey",
        ),
        (
            400,
            error("unsupported_audio_format", "file must be one of the following types: [flac mp3]"),
            "unsupported_audio_format: file must be one of",
        ),
        (413, error("request_too_large", "Request Entity Too Large"), "file too large"),
        (403, error("forbidden", "no access"), "HTTP 403"),
        (404, error("model_not_found", "The model does not exist"), "model_not_found"),
        (422, error("invalid", "bad"), "HTTP 422"),
    ],
)
def test_permanent_errors(
    httpx_mock: HTTPXMock, client: GroqClient, status: int, body: object, message: str
) -> None:
    httpx_mock.add_response(url=ENDPOINT, status_code=status, json=body)
    with pytest.raises(PermanentServiceError, match=message) as caught:
        hear(client)
    assert not caught.value.transient and len(httpx_mock.get_requests()) == 1
    assert KEY not in str(caught.value)


def test_retries_resend_the_whole_file(httpx_mock: HTTPXMock, client: GroqClient) -> None:
    httpx_mock.add_response(url=ENDPOINT, status_code=500, json=error("internal", "oops", "server_error"))
    httpx_mock.add_response(url=ENDPOINT, status_code=429, json=error("rate_limit_exceeded", "slow down"))
    httpx_mock.add_response(url=ENDPOINT, json={"text": "ok"})
    assert hear(client).text == "ok"  # type: ignore[attr-defined]
    assert [fields(r)["file"] for r in httpx_mock.get_requests()] == [AUDIO] * 3


def test_rate_limit_with_a_long_retry_after_is_left_to_the_queue(
    httpx_mock: HTTPXMock, client: GroqClient
) -> None:
    httpx_mock.add_response(
        url=ENDPOINT,
        status_code=429,
        json=error("rate_limit_exceeded", "limit"),
        headers={"retry-after": "42"},
    )
    with pytest.raises(TransientServiceError, match="rate_limit_exceeded") as caught:
        hear(client)
    assert caught.value.retry_after == 42.0


def test_retry_after_ms_wins_and_x_should_retry_false_stops(
    httpx_mock: HTTPXMock, client: GroqClient
) -> None:
    httpx_mock.add_response(url=ENDPOINT, status_code=503, json={}, headers={"x-should-retry": "false"})
    with pytest.raises(TransientServiceError, match="HTTP 503"):
        hear(client)
    assert len(httpx_mock.get_requests()) == 1
    httpx_mock.reset()
    httpx_mock.add_response(
        url=ENDPOINT, status_code=429, json={}, headers={"retry-after-ms": "1", "retry-after": "999"}
    )
    httpx_mock.add_response(url=ENDPOINT, json={"text": "ok"})
    assert hear(client).text == "ok"  # type: ignore[attr-defined]


def test_a_2xx_without_text_is_transient(httpx_mock: HTTPXMock, client: GroqClient) -> None:
    httpx_mock.add_response(url=ENDPOINT, text="<html>proxy</html>")
    with pytest.raises(TransientServiceError, match="without a text"):
        hear(client)
