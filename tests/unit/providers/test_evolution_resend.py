"""The sender's resend rule and network behaviour, against the real stub over loopback: what is sent again
(only what never reached the server), what is not (anything after the request may have been read), and
replies httpx must accept. Every case counts the sends the stub recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from dispara.errors import TransientServiceError
from dispara.providers import evolution
from dispara.providers.base import NoAnswerError, OutgoingMessage, SendResult, ServerUnreachableError
from dispara.providers.evolution import EvolutionSender
from tests.stubs.evolution_stub import EvolutionStub
from tests.unit.providers.conftest import STUB_KEY as KEY

NUMBER = "5511999990000"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def text(number: str = NUMBER, instance: str = "sales") -> OutgoingMessage:
    return OutgoingMessage(instance, number, "text", "Olá", None, None, None)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Background:
    """A send in another thread, for faults that must strike while it is in flight."""

    def __init__(self, stub_sender: EvolutionSender, msg: OutgoingMessage) -> None:
        self.result: list[SendResult] = []
        self.error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(stub_sender, msg), daemon=True)
        self._thread.start()

    def _run(self, stub_sender: EvolutionSender, msg: OutgoingMessage) -> None:
        try:
            self.result.append(stub_sender.send(msg))
        except BaseException as exc:
            self.error.append(exc)

    def join(self) -> BaseException | None:
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.error[0] if self.error else None


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# ---- never reached the server: tried once more, then "not delivered" ----------------------------------
def test_a_refused_connection_is_tried_again_and_reported_as_never_delivered(
    stub: EvolutionStub, stub_sender: EvolutionSender
) -> None:
    stub.down()
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as info:
        stub_sender.send(text())
    assert time.monotonic() - started >= evolution.RECONNECT_PAUSE_S  # a second attempt, after the pause
    assert info.value.maybe_delivered is False and info.value.transient
    assert str(info.value) == (
        "cannot reach Evolution for POST /message/sendText/sales: [Errno 111] Connection refused"
    )
    stub.up()
    assert stub_sender.send(text()).key_id  # same port, same sender
    assert stub.accepted_numbers() == {NUMBER: 1}


def test_a_connection_that_fails_to_open_once_is_sent_once_on_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(201, json={"key": {"id": "3EB0AFTERRETRY"}})

    monkeypatch.setattr(evolution, "RECONNECT_PAUSE_S", 0.0)
    with EvolutionSender("http://evo.test", KEY, transport=httpx.MockTransport(handler)) as s:
        assert s.send(text()).key_id == "3EB0AFTERRETRY"
    assert len(calls) == 2


@pytest.mark.parametrize("error", [httpx.ConnectTimeout, httpx.PoolTimeout])
def test_other_failures_before_sending_are_not_retried_but_never_delivered(
    error: type[httpx.TransportError],
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error("timed out", request=request)

    with (
        EvolutionSender("http://evo.test", KEY, transport=httpx.MockTransport(handler)) as s,
        pytest.raises(ServerUnreachableError) as info,
    ):
        s.send(text())
    # Never reached Evolution: the instance rests and the message goes back with no attempt spent.
    assert info.value.maybe_delivered is False and len(calls) == 1


# ---- may have reached the server: never sent again, "maybe delivered" ---------------------------------
def test_a_reply_that_never_comes_is_not_resent_and_may_be_delivered(stub: EvolutionStub) -> None:
    stub.configure(hang_s=30)  # accepted and recorded at once, answered far too late
    with (
        EvolutionSender(stub.url, KEY, typing_delay_ms=0, timeout_extra_s=0.3) as s,
        pytest.raises(NoAnswerError) as info,
    ):
        s.send(text())
    assert info.value.maybe_delivered is True
    assert str(info.value) == (
        "Evolution timed out on POST /message/sendText/sales (ReadTimeout)"
        " (the message may have been delivered)"
    )
    assert stub.accepted_numbers() == {NUMBER: 1} and len(stub.requests()) == 1


def test_a_connection_dropped_after_the_request_was_read_is_not_resent(
    stub: EvolutionStub, stub_sender: EvolutionSender
) -> None:
    stub.configure(hang_up={"5511000000009"})
    assert stub_sender.send(text()).key_id  # the next send reuses this connection
    with pytest.raises(NoAnswerError) as info:
        stub_sender.send(text("5511000000009"))
    assert info.value.maybe_delivered is True
    assert "Server disconnected without sending a response." in str(info.value)
    assert stub_sender.send(text()).key_id  # and the one after opens a new connection
    numbers = [(r.body["number"], r.status) for r in stub.requests()]
    assert numbers == [(NUMBER, 201), ("5511000000009", 0), (NUMBER, 201)]


def test_a_server_that_dies_mid_send_is_not_resent_and_comes_back_on_its_port(
    stub: EvolutionStub, stub_sender: EvolutionSender
) -> None:
    stub.configure(hang_s=30)
    url = stub.url
    send = Background(stub_sender, text())
    wait_for(lambda: stub.max_in_flight("sales") == 1)
    stub.down()
    error = send.join()
    assert isinstance(error, NoAnswerError) and error.maybe_delivered is True
    stub.configure(hang_s=0)
    stub.up()
    assert stub.url == url
    assert stub_sender.send(text("5511000000001")).key_id  # the dead pooled connection is not reused
    assert stub.accepted_numbers() == {NUMBER: 1, "5511000000001": 1}


# ---- what Evolution (or a proxy before it) answers -------------------------------------------------------
@pytest.mark.parametrize("head_kib", [20, 90])
def test_a_reply_head_between_16_and_100_kib_is_accepted(
    stub: EvolutionStub, stub_sender: EvolutionSender, head_kib: int
) -> None:
    stub.configure(reply_headers={"x-padding": "p" * (head_kib * 1024)})
    assert stub_sender.send(text()).key_id.startswith("3EB0")
    assert stub_sender.instance_state("sales") == "open"
    assert stub.accepted_numbers() == {NUMBER: 1}


# 502/503 pages come from the proxy itself (nothing behind it got the request); a 504 may follow a pass-on.
@pytest.mark.parametrize(("status", "maybe_delivered"), [(502, False), (503, False), (504, True)])
def test_a_proxy_before_a_dead_evolution(
    stub: EvolutionStub, stub_sender: EvolutionSender, status: int, maybe_delivered: bool | None
) -> None:
    stub.configure(proxy_error=status)
    with pytest.raises(TransientServiceError) as info:
        stub_sender.send(text())
    assert info.value.status == status and f"HTTP {status}: {status} " in str(info.value)
    assert getattr(info.value, "maybe_delivered", None) is maybe_delivered
    with pytest.raises(TransientServiceError):
        stub_sender.instance_state("sales")
    assert [r.status for r in stub.requests()] == [status, status]  # each tried once
    assert not stub.accepted_numbers()


# ---- connections ---------------------------------------------------------------------------------------
def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending() -> None:
    with (
        EvolutionStub(api_key=KEY, keepalive_timeout_s=0.1) as stub,
        EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s,
    ):
        assert s.send(text("5511000000001")).key_id
        time.sleep(0.4)  # the scenario itself: the server's keep-alive timeout passes
        assert s.send(text("5511000000002")).key_id
    assert stub.connections == 2
    assert stub.accepted_numbers() == {"5511000000001": 1, "5511000000002": 1}


def test_idle_connections_are_retired_before_nodes_keep_alive_timeout(stub: EvolutionStub) -> None:
    assert evolution.KEEPALIVE_EXPIRY_S < 5.0  # Node's default keepAliveTimeout
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0, keepalive_expiry_s=0.05) as s:
        s.send(text())
        time.sleep(0.2)  # the scenario itself: the connection outlives its expiry
        s.send(text())
    assert stub.connections == 2


def test_a_proxy_from_the_environment_is_used(stub: EvolutionStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", stub.url)  # the stub answers absolute-form requests like a proxy would
    with EvolutionSender("http://evolution.internal:8080", KEY, typing_delay_ms=0) as s:
        assert s.send(text()).key_id
    first = stub.requests()[0]
    assert first.path == "/message/sendText/sales" and first.headers["host"] == "evolution.internal:8080"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s:
        assert s.send(text()).key_id
    assert stub.requests()[1].headers["host"] == stub.url.split("//")[1]
    assert sum(stub.accepted_numbers().values()) == 2
