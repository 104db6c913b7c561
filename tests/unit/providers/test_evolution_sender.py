"""EvolutionSender: the exact requests it sends, what it returns, timeouts, state and secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import ConfigError, PermanentServiceError
from dispara.providers.base import OutgoingMessage, Sender, UnknownInstanceError
from dispara.providers.evolution import EvolutionSender, media_file_name
from dispara.providers.evolution_errors import ApiKeyRejectedError
from dispara.redact import public_url

BASE = "https://evo.example.com/"
KEY = "sk-live-SECRET-0123456789"
SENT = {
    "key": {"remoteJid": "5511999990000@s.whatsapp.net", "fromMe": True, "id": "3EB0ABCDEF1234567890"},
    "pushName": "Loja",
    "status": "PENDING",
    "message": {"conversation": "Olá"},
    "contextInfo": None,
    "messageType": "conversation",
    "messageTimestamp": 1730000000,
    "instanceId": "0b0f1d2e-0000-4000-8000-000000000000",
    "source": "web",
}


def msg(kind: Any = "text", **fields: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "instance": "sales",
        "number": "5511999990000",
        "message_type": kind,
        "text": None,
        "media_url": None,
        "caption": None,
        "file_name": None,
    }
    values.update(fields)
    return OutgoingMessage(**values)


@pytest.fixture
def sender() -> Any:
    with EvolutionSender(BASE, KEY, typing_delay_ms=1500) as s:
        yield s


def sent_json(httpx_mock: HTTPXMock) -> tuple[httpx.Request, Any]:
    request = httpx_mock.get_request()
    assert request is not None
    return request, json.loads(request.content)


def test_is_a_sender(sender: EvolutionSender) -> None:
    as_protocol: Sender = sender
    assert isinstance(sender, Sender)
    assert as_protocol.label == "evolution https://evo.example.com"


def test_send_text(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    result = sender.send(msg(text="Olá, Ana!"))
    request, body = sent_json(httpx_mock)
    assert request.method == "POST"
    assert str(request.url) == "https://evo.example.com/message/sendText/sales"
    assert request.headers["apikey"] == KEY
    assert request.headers["content-type"] == "application/json"
    assert body == {"number": "5511999990000", "text": "Olá, Ana!", "delay": 1500}
    assert result.key_id == "3EB0ABCDEF1234567890"
    assert result.response == SENT


def test_link_preview_false_is_sent_only_when_disabled(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    with EvolutionSender(BASE, KEY, typing_delay_ms=0, link_preview=False) as s:
        s.send(msg(text="veja https://x.com"))
    _, body = sent_json(httpx_mock)
    assert body == {"number": "5511999990000", "text": "veja https://x.com", "delay": 0, "linkPreview": False}


@pytest.mark.parametrize("kind", ["image", "video", "document"])
def test_send_media(httpx_mock: HTTPXMock, sender: EvolutionSender, kind: str) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    sender.send(
        msg(
            kind,
            media_url="https://cdn.example.com/f/invoice%20nov.pdf?sig=1",
            caption="Sua fatura",
            file_name="fatura.pdf",
            mimetype="application/pdf",
        )
    )
    request, body = sent_json(httpx_mock)
    assert str(request.url) == "https://evo.example.com/message/sendMedia/sales"
    assert body == {
        "number": "5511999990000",
        "mediatype": kind,
        "media": "https://cdn.example.com/f/invoice%20nov.pdf?sig=1",
        "caption": "Sua fatura",
        "fileName": "fatura.pdf",
        "mimetype": "application/pdf",
        "delay": 1500,
    }


def test_send_media_derives_file_name_and_omits_empty_fields(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    sender.send(msg("document", media_url="https://cdn.example.com/f/invoice%20nov.pdf?sig=1"))
    _, body = sent_json(httpx_mock)
    assert body == {
        "number": "5511999990000",
        "mediatype": "document",
        "media": "https://cdn.example.com/f/invoice%20nov.pdf?sig=1",
        "fileName": "invoice nov.pdf",
        "delay": 1500,
    }


def test_media_file_name_fallbacks() -> None:
    assert media_file_name(msg("image", media_url="https://x.com/")) == "image.jpg"
    assert media_file_name(msg("video", media_url="https://x.com")) == "video.mp4"
    assert (
        media_file_name(msg("document", media_url="JVBERi0xLjQK", mimetype="application/pdf"))
        == "document.pdf"
    )
    assert media_file_name(msg("document", media_url="JVBERi0xLjQK")) == "document"
    assert media_file_name(msg("image", media_url="https://x.com/a.png", file_name="  b.png ")) == "b.png"


def test_send_audio_is_a_voice_note(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    sender.send(msg("audio", media_url="https://example.com/msg.mp3", caption="ignored"))
    request, body = sent_json(httpx_mock)
    assert str(request.url) == "https://evo.example.com/message/sendWhatsAppAudio/sales"
    assert body == {"number": "5511999990000", "audio": "https://example.com/msg.mp3", "delay": 1500}


def test_instance_name_is_url_quoted(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    httpx_mock.add_response(status_code=200, json={"instance": {"instanceName": "x", "state": "open"}})
    sender.send(msg(instance="Loja São/Paulo #1", text="oi"))
    sender.instance_state("a b?c")
    first, second = httpx_mock.get_requests()
    assert first.url.raw_path == b"/message/sendText/Loja%20S%C3%A3o%2FPaulo%20%231"
    assert second.url.raw_path == b"/instance/connectionState/a%20b%3Fc"


def test_any_2xx_is_success_and_odd_bodies_keep_the_message_sent(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    httpx_mock.add_response(status_code=200, json=SENT)
    httpx_mock.add_response(status_code=201, json={"status": "PENDING"})
    httpx_mock.add_response(status_code=201, text="<html>ok</html>")
    assert sender.send(msg(text="a")).key_id == "3EB0ABCDEF1234567890"
    assert sender.send(msg(text="b")).key_id == ""
    odd = sender.send(msg(text="c"))
    assert odd.key_id == "" and odd.response == {"body": "<html>ok</html>"}


def test_timeout_covers_the_typing_delay(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=201, json=SENT)
    with EvolutionSender(BASE, KEY, typing_delay_ms=5000, timeout_extra_s=60) as s:
        s.send(msg(text="oi"))
        assert s.timeout_s == 65.0
    timeout = httpx_mock.get_request().extensions["timeout"]  # type: ignore[union-attr]
    assert timeout["read"] >= 65.0 and timeout["write"] >= 65.0 and timeout["pool"] >= 65.0
    assert timeout["connect"] == 10.0


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        ({"instance": {"instanceName": "sales", "state": "open"}}, "open"),
        ({"instance": {"instanceName": "sales", "state": "close"}}, "close"),
        ({"instance": {"instanceName": "sales", "state": "connecting"}}, "connecting"),
        ({"instance": {"instanceName": "sales", "state": "refused"}}, "close"),
        ({"instance": {"instanceName": "sales"}}, "unknown"),  # in the DB, not loaded (#2583)
        ({"instance": {"instanceName": "sales", "state": "weird"}}, "unknown"),
        ({}, "unknown"),
        ([], "unknown"),
    ],
)
def test_instance_state(httpx_mock: HTTPXMock, sender: EvolutionSender, reply: Any, state: str) -> None:
    httpx_mock.add_response(
        method="GET", url="https://evo.example.com/instance/connectionState/sales", json=reply
    )
    assert sender.instance_state("sales") == state
    assert httpx_mock.get_request().headers["apikey"] == KEY  # type: ignore[union-attr]


def test_instance_state_of_unknown_instance_raises(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    body = {
        "status": 404,
        "error": "Not Found",
        "response": {"message": ['The "nope" instance does not exist']},
    }
    httpx_mock.add_response(status_code=404, json=body)
    with pytest.raises(UnknownInstanceError):
        sender.instance_state("nope")


@pytest.mark.parametrize(
    "bad",
    [
        msg(text=None),
        msg(text="   "),
        msg("image"),
        msg("audio", media_url=" "),
        msg("document"),
        msg("sticker", media_url="https://x.io/s.webp"),
    ],
)
def test_malformed_messages_fail_before_any_request(sender: EvolutionSender, bad: OutgoingMessage) -> None:
    with pytest.raises(PermanentServiceError):
        sender.send(bad)


@pytest.mark.parametrize("url", ["evo.example.com", "ftp://evo", "http://", ""])
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        EvolutionSender(url, KEY)


@pytest.mark.parametrize("key", ["", " padded", "line\n", "tab\tkey"])
def test_bad_api_key_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        EvolutionSender(BASE, key)
    assert not key.strip() or key.strip() not in str(info.value)


def test_secrets_stay_out_of_labels_reprs_and_logs(
    httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_mock.add_response(status_code=201, json=SENT)
    httpx_mock.add_response(status_code=401, json={"status": 401, "error": "Unauthorized", "response": {}})
    with EvolutionSender("https://admin:pw@evo.example.com:8443/base/?token=t", KEY) as s:
        assert s.label == "evolution https://evo.example.com:8443/base"
        assert KEY not in repr(s) and "pw" not in repr(s)
        s.send(msg(text="oi"))
        with pytest.raises(ApiKeyRejectedError) as info:
            s.send(msg(text="oi"))
    assert KEY not in str(info.value)
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_public_url() -> None:
    assert public_url("http://u:p@[::1]:8080/x/?q=1#f") == "http://[::1]:8080/x"
    assert public_url("https://evo.example.com") == "https://evo.example.com"
