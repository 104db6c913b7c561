"""Every error row of docs/evolution.md, via EvolutionSender and pytest-httpx, with its bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import ExitCode, PermanentServiceError, ServiceError, TransientServiceError
from dispara.providers.base import (
    CredentialsRejectedError,
    InstanceUnavailableError,
    NoAnswerError,
    NotOnWhatsAppError,
    OutgoingMessage,
    ServerNotActivatedError,
    ServerUnreachableError,
    UnknownInstanceError,
)
from dispara.providers.evolution import EvolutionSender
from dispara.providers.evolution_errors import (
    ApiKeyRejectedError,
    flatten_message,
    parse_retry_after,
)

BASE = "https://evo.example.com"
KEY = "sk-live-SECRET-0123456789"
SEND_URL = f"{BASE}/message/sendText/sales"
MSG = OutgoingMessage("sales", "5511999990000", "text", "Olá", None, None, None)


def envelope(status: int, message: Any) -> dict[str, Any]:
    reasons = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
    return {"status": status, "error": reasons.get(status, "Error"), "response": {"message": message}}


@pytest.fixture
def sender() -> Any:
    with EvolutionSender(BASE, KEY) as s:
        yield s


def send_error(httpx_mock: HTTPXMock, sender: EvolutionSender, status: int, **response: Any) -> ServiceError:
    httpx_mock.add_response(method="POST", url=SEND_URL, status_code=status, **response)
    with pytest.raises(ServiceError) as info:
        sender.send(MSG)
    assert KEY not in str(info.value)
    return info.value


def test_number_not_on_whatsapp_is_permanent_and_named(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    body = envelope(
        400, [{"jid": "5511999990000@s.whatsapp.net", "exists": False, "number": "5511999990000", "name": ""}]
    )
    exc = send_error(httpx_mock, sender, 400, json=body)
    assert type(exc) is NotOnWhatsAppError and isinstance(exc, PermanentServiceError)
    assert exc.not_on_whatsapp is True and exc.number == "5511999990000"
    assert not exc.transient
    assert exc.status == 400
    assert str(exc) == "number 5511999990000 is not on WhatsApp"


def test_schema_validation_nested_list_is_permanent_and_flattened(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    body = envelope(400, [['instance requires property "text"'], ["Invalid format"]])
    exc = send_error(httpx_mock, sender, 400, json=body)
    assert type(exc) is PermanentServiceError
    assert str(exc) == 'Evolution rejected the message: instance requires property "text"; Invalid format'


def test_v1_server_gets_a_hint(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    body = envelope(400, [['instance requires property "textMessage"']])
    exc = send_error(httpx_mock, sender, 400, json=body)
    assert isinstance(exc, PermanentServiceError)
    assert "Evolution v1 server" in str(exc)


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, ["Error: Connection Closed"]), (500, "Connection Closed")],
    ids=["400-at-send", "500-at-number-check"],
)
def test_connection_closed_means_instance_unavailable(
    httpx_mock: HTTPXMock, sender: EvolutionSender, status: int, message: Any
) -> None:
    exc = send_error(httpx_mock, sender, status, json=envelope(status, message))
    assert type(exc) is InstanceUnavailableError
    assert isinstance(exc, TransientServiceError)
    assert exc.transient and not exc.permanent
    assert exc.instance == "sales"
    assert exc.status == status
    assert "'sales' is not connected to WhatsApp" in str(exc)


def test_instance_not_loaded_means_instance_unavailable(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    body = envelope(500, "Cannot read properties of undefined (reading 'textMessage')")
    exc = send_error(httpx_mock, sender, 500, json=body)
    assert type(exc) is InstanceUnavailableError
    assert not exc.permanent
    assert "not loaded" in str(exc)


def test_unknown_instance_pauses_the_instance_for_good(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    exc = send_error(httpx_mock, sender, 404, json=envelope(404, ['The "sales" instance does not exist']))
    assert isinstance(exc, UnknownInstanceError)
    assert isinstance(exc, InstanceUnavailableError)
    assert exc.permanent and exc.transient  # pause the instance, keep the message
    assert exc.status == 404
    assert "instance 'sales' does not exist" in str(exc)


def test_unknown_route_is_a_permanent_configuration_problem(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    exc = send_error(httpx_mock, sender, 404, json=envelope(404, ["Cannot POST /message/sendText/sales"]))
    assert type(exc) is PermanentServiceError
    assert "route not found" in str(exc)


def test_401_never_shows_the_key(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(httpx_mock, sender, 401, json=envelope(401, "Unauthorized"))
    assert isinstance(exc, ApiKeyRejectedError)
    # A sender-wide configuration error: the message is put back unspent and the campaigns pause.
    assert isinstance(exc, CredentialsRejectedError) and exc.transient
    assert exc.exit_code == ExitCode.CONFIG
    assert str(exc) == "Evolution API key rejected (401): check EVOLUTION_API_KEY"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503])
def test_retryable_statuses_are_transient(
    httpx_mock: HTTPXMock, sender: EvolutionSender, status: int
) -> None:
    exc = send_error(httpx_mock, sender, status, json=envelope(status, "Failed to convert audio"))
    assert type(exc) is TransientServiceError
    assert exc.status == status
    assert exc.retry_after is None
    assert f"HTTP {status}" in str(exc)


def test_a_gateway_timeout_may_hide_a_delivered_send(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    html = "<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"
    exc = send_error(httpx_mock, sender, 504, text=html, headers={"content-type": "text/html"})
    assert isinstance(exc, NoAnswerError) and exc.transient and exc.status == 504
    assert exc.maybe_delivered
    assert str(exc) == (
        "Evolution answered HTTP 504: 504 Gateway Time-out (the message may have been delivered)"
    )


def test_retry_after_seconds(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(
        httpx_mock, sender, 429, json=envelope(429, "rate limited"), headers={"Retry-After": "7"}
    )
    assert isinstance(exc, TransientServiceError)
    assert exc.retry_after == 7.0


def test_retry_after_http_date(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(
        httpx_mock, sender, 503, text="busy", headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}
    )
    assert isinstance(exc, TransientServiceError)
    assert exc.retry_after is not None and exc.retry_after > 1e9


def test_parse_retry_after_variants() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_license_gate_of_2_4_is_a_permanent_config_error(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    body = {
        "error": "service not activated",
        "code": "LICENSE_REQUIRED",
        "register_url": "https://license.example/register",
        "docs_url": "https://license.example/docs",
        "message": "activate this server",
    }
    exc = send_error(httpx_mock, sender, 503, json=body)
    assert isinstance(exc, ServerNotActivatedError)
    assert exc.permanent
    assert exc.exit_code == ExitCode.CONFIG
    assert str(exc).startswith("Evolution server not activated (license required)")


def test_plain_503_is_transient(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(httpx_mock, sender, 503, json={"error": "upstream down"})
    assert type(exc) is TransientServiceError
    assert "upstream down" in str(exc)


def test_other_400_error_text_is_permanent(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(httpx_mock, sender, 400, json=envelope(400, ["Error: Media upload failed on all hosts"]))
    assert type(exc) is PermanentServiceError
    assert str(exc) == "Evolution rejected the message: Media upload failed on all hosts"


@pytest.mark.parametrize("text", ["Error: rate-overlimit", "Error: Timed Out"])
def test_whatsapp_hiccups_wrapped_as_400_are_transient(
    httpx_mock: HTTPXMock, sender: EvolutionSender, text: str
) -> None:
    exc = send_error(httpx_mock, sender, 400, json=envelope(400, [text]))
    assert type(exc) is TransientServiceError


def test_html_502_from_a_proxy_does_not_crash_the_parser(
    httpx_mock: HTTPXMock, sender: EvolutionSender
) -> None:
    html = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    exc = send_error(httpx_mock, sender, 502, text=html, headers={"content-type": "text/html"})
    # The proxy's own page: Evolution behind it is down and got nothing, so no attempt is spent.
    assert type(exc) is ServerUnreachableError
    assert str(exc) == "Evolution is unreachable behind its proxy (HTTP 502: 502 Bad Gateway)"


@pytest.mark.parametrize(
    "content", [b"", b"\xff\xfe not utf8", b"{truncated", b"[1, 2]", b'"just a string"', b"null"]
)
def test_odd_bodies_do_not_crash_the_parser(
    httpx_mock: HTTPXMock, sender: EvolutionSender, content: bytes
) -> None:
    exc = send_error(httpx_mock, sender, 400, content=content)
    assert type(exc) is PermanentServiceError
    assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("exception", "text", "maybe_delivered"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach Evolution for POST "
         "/message/sendText/sales: [Errno 111] Connection refused", False),
        (httpx.ConnectTimeout("timed out"), "Evolution timed out on POST /message/sendText/sales "
         "(ConnectTimeout)", False),
        (httpx.PoolTimeout("timed out"), "Evolution timed out on POST /message/sendText/sales "
         "(PoolTimeout)", False),
        (httpx.ReadTimeout("timed out"), "Evolution timed out on POST /message/sendText/sales "
         "(ReadTimeout) (the message may have been delivered)", True),
        (httpx.WriteError("[Errno 32] Broken pipe"), "cannot reach Evolution for POST "
         "/message/sendText/sales: [Errno 32] Broken pipe (the message may have been delivered)", True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "cannot reach "
         "Evolution for POST /message/sendText/sales: Server disconnected without sending a response. "
         "(the message may have been delivered)", True),
    ],
)  # fmt: skip
def test_network_failures_are_transient_and_say_whether_the_message_may_be_out(
    httpx_mock: HTTPXMock, sender: EvolutionSender, exception: Exception, text: str, maybe_delivered: bool
) -> None:
    httpx_mock.add_exception(exception, url=SEND_URL, is_reusable=True)
    with pytest.raises(TransientServiceError) as info:
        sender.send(MSG)
    # Never sent: the instance rests, no attempt spent. Maybe sent: an ordinary retry, attempt spent.
    assert type(info.value) is (NoAnswerError if maybe_delivered else ServerUnreachableError)
    assert info.value.transient
    assert str(info.value) == text
    assert getattr(info.value, "maybe_delivered", None) is maybe_delivered
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Only a connection that could not be opened is tried again, and only once.
    assert len(httpx_mock.get_requests()) == (2 if isinstance(exception, httpx.ConnectError) else 1)


def test_the_key_is_redacted_even_when_echoed_back(httpx_mock: HTTPXMock, sender: EvolutionSender) -> None:
    exc = send_error(httpx_mock, sender, 400, json=envelope(400, [f"Error: bad apikey {KEY}"]))
    assert "***" in str(exc)
    httpx_mock.add_exception(httpx.ConnectError(f"proxy said no to {KEY}"), url=SEND_URL, is_reusable=True)
    with pytest.raises(TransientServiceError) as info:
        sender.send(MSG)
    assert KEY not in str(info.value)
    assert KEY not in repr(sender) and KEY not in sender.label


def test_flatten_message_shapes() -> None:
    assert flatten_message("Unauthorized") == "Unauthorized"
    assert flatten_message(["a", "b"]) == "a; b"
    assert flatten_message([["x requires y"], ["Invalid format"]]) == "x requires y; Invalid format"
    assert flatten_message([{"exists": False, "number": "55"}]) == '{"exists":false,"number":"55"}'
    assert flatten_message(["line\n  two", None, ""]) == "line two"
    long = flatten_message(["x" * 1000])
    assert len(long) == 300 and long.endswith("…")
    assert json.loads(json.dumps(flatten_message([1, 2.5, True]))) == "1; 2.5; true"
