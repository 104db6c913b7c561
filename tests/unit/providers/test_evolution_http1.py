"""EvolutionSender's default path (the lean HTTP/1.1 client) over loopback: the real stub, scripted raw
servers, TLS, proxies, timeouts and dropped connections, each compared with what the httpx path does."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import ServiceError, TransientServiceError
from dispara.providers import http1
from dispara.providers.base import (
    InstanceUnavailableError,
    NotOnWhatsAppError,
    OutgoingMessage,
    ServerNotActivatedError,
    ServerUnreachableError,
    UnknownInstanceError,
)
from dispara.providers.evolution import EvolutionSender, _httpx_hooked
from dispara.providers.evolution_errors import ApiKeyRejectedError
from tests.stubs.evolution_stub import EvolutionStub

KEY = "lean-test-key-0123456789"
NUMBER = "5511999990000"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

Outcome = tuple[Any, ...]


def text(number: str = NUMBER, instance: str = "sales", body: str = "Olá") -> OutgoingMessage:
    return OutgoingMessage(instance, number, "text", body, None, None, None)


def lean(url: str, key: str = KEY, **options: Any) -> EvolutionSender:
    sender = EvolutionSender(url, key, typing_delay_ms=0, **options)
    assert sender._http1 is not None and sender._transport is None
    return sender


def via_httpx(url: str, key: str = KEY, **options: Any) -> EvolutionSender:
    return EvolutionSender(url, key, typing_delay_ms=0, transport=httpx.HTTPTransport(), **options)


def outcome(call: Callable[[], Any]) -> Outcome:
    """What a call did, comparable between the two paths: the result's shape, or the error in full."""
    try:
        result = call()
    except ServiceError as exc:
        return (type(exc), str(exc), exc.status, exc.transient, getattr(exc, "retry_after", None))
    if isinstance(result, str):
        return ("state", result)
    return ("sent", bool(result.key_id), sorted(result.response))


def both(make_url: Callable[[], str], call: Callable[[EvolutionSender], Any], **options: Any) -> Outcome:
    """The outcome on the default (lean) path, asserted equal to the httpx path's."""
    with lean(make_url(), **options) as sender:
        got = outcome(lambda: call(sender))
    with via_httpx(make_url(), **options) as sender:
        expected = outcome(lambda: call(sender))
    assert got == expected
    return got


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=KEY) as server:
        yield server


# ---- which path -----------------------------------------------------------------------------------------
def test_the_lean_client_is_the_default_and_keeps_one_socket(stub: EvolutionStub) -> None:
    assert not _httpx_hooked()
    with lean(stub.url) as sender:
        for i in range(5):
            assert sender.send(text(f"55119{i:08d}")).key_id.startswith("3EB0")
        assert sender.instance_state("sales") == "open"
        assert sender._http1 is not None and sender._http1.connections_opened == 1
    assert stub.connections == 1 and len(stub.requests()) == 6


def test_pytest_httpx_still_sees_requests_of_a_default_sender(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=201, json={"key": {"id": "MOCKED"}})
    with lean("http://127.0.0.1:9") as sender:
        assert _httpx_hooked()
        assert sender.send(text()).key_id == "MOCKED"
    assert httpx_mock.get_request() is not None


# ---- every classification the stub can produce, compared with httpx ----------------------------------
def test_success_and_every_stub_error_match_the_httpx_path(stub: EvolutionStub) -> None:
    stub.configure(
        not_on_whatsapp={"5511000000000"},
        closed_instances={"closed"},
        closed_at_send={"flaky-socket"},
        unloaded_instances={"unloaded"},
    )

    def check(call: Callable[[EvolutionSender], Any], key: str = KEY) -> Outcome:
        return both(lambda: stub.url, call, key=key)

    fields = ["contextInfo", "instanceId", "key", "message", "messageTimestamp", "messageType", "pushName"]
    assert check(lambda s: s.send(text())) == ("sent", True, [*fields, "source", "status"])
    missing = check(lambda s: s.send(text("5511000000000")))
    assert missing[:4] == (NotOnWhatsAppError, "number 5511000000000 is not on WhatsApp", 400, False)
    assert check(lambda s: s.send(text(instance="closed")))[0] is InstanceUnavailableError
    assert check(lambda s: s.send(text(instance="flaky-socket")))[:3] == (
        InstanceUnavailableError,
        "instance 'flaky-socket' is not connected to WhatsApp (HTTP 400: Error: Connection Closed)",
        400,
    )
    assert "not loaded" in check(lambda s: s.send(text(instance="unloaded")))[1]
    assert check(lambda s: s.instance_state("closed")) == ("state", "close")
    assert check(lambda s: s.instance_state("unloaded")) == ("state", "unknown")
    assert check(lambda s: s.send(text()), key="wrong-key")[:2] == (
        ApiKeyRejectedError,
        "Evolution API key rejected (401): check EVOLUTION_API_KEY",
    )
    stub.configure(instances={"sales"})
    assert check(lambda s: s.send(text(instance="ghost")))[0] is UnknownInstanceError
    stub.configure(license_gate=True)
    assert check(lambda s: s.instance_state("sales"))[0] is ServerNotActivatedError


def test_5xx_then_success_is_transient_then_sent(stub: EvolutionStub) -> None:
    for make in (lean, via_httpx):
        stub.configure(fail_first={"5511777777777": 2})
        with make(stub.url) as sender:
            for _ in range(2):
                with pytest.raises(TransientServiceError) as info:
                    sender.send(text("5511777777777"))
                assert type(info.value) is TransientServiceError and info.value.status == 500
                assert str(info.value) == (
                    "Evolution answered HTTP 500: Internal Server Error (stub: fail_first)"
                )
            assert sender.send(text("5511777777777")).key_id


def test_the_requests_are_byte_for_byte_those_of_httpx() -> None:
    with RawServer([OK_REPLY] * 4) as server:
        for make in (lean, via_httpx):
            with make(server.url + "/base") as sender:
                sender.send(text(instance="Loja São/Paulo #1", body="Olá, Ana! 🎉"))
                sender.instance_state("a b?c")
    lean_send, lean_state, httpx_send, httpx_state = server.requests
    assert lean_send == httpx_send and lean_state == httpx_state
    head, _, body = lean_send.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /base/message/sendText/Loja%20S%C3%A3o%2FPaulo%20%231 HTTP/1.1",
        b"Host: " + server.url.split("//")[1].encode(),
        b"apikey: " + KEY.encode(),
        b"accept: application/json",
        b"user-agent: " + user_agent(),
        b"content-type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
    ]
    assert json.loads(body) == {"number": NUMBER, "text": "Olá, Ana! 🎉", "delay": 0}
    assert lean_state.startswith(b"GET /base/instance/connectionState/a%20b%3Fc HTTP/1.1\r\n")
    assert b"Content-Length" not in lean_state


def user_agent() -> bytes:
    import dispara

    return f"dispara/{dispara.__version__}".encode()


# ---- timeouts and unreachable servers ------------------------------------------------------------------
def test_timeouts_are_the_typing_delay_plus_the_extra_and_ten_seconds_to_connect() -> None:
    with EvolutionSender("http://127.0.0.1:9", KEY, typing_delay_ms=5000, timeout_extra_s=60) as sender:
        assert sender._http1 is not None
        assert (sender._http1.timeout_s, sender._http1.connect_timeout_s) == (65.0, 10.0)


def test_the_read_timeout_covers_the_typing_delay(stub: EvolutionStub) -> None:
    stub.configure(honour_delay=True)
    with EvolutionSender(stub.url, KEY, typing_delay_ms=400, timeout_extra_s=0.3) as sender:
        started = time.monotonic()
        assert sender.send(text()).key_id  # held 0.4 s: longer than the extra, within delay + extra
        assert time.monotonic() - started >= 0.4
        stub.configure(latency_s=0.5)
        with pytest.raises(TransientServiceError, match=r"\(ReadTimeout\)"):
            sender.send(text())  # 0.9 s > 0.7 s


def test_a_read_timeout_is_transient_and_the_send_is_not_repeated(stub: EvolutionStub) -> None:
    stub.configure(latency_s=1.0)
    got = both(lambda: stub.url, lambda s: s.send(text()), timeout_extra_s=0.2)
    assert got[:4] == (
        TransientServiceError,
        "Evolution timed out on POST /message/sendText/sales (ReadTimeout)",
        None,
        True,
    )
    assert len(stub.requests()) == 2  # once per path, never resent


def test_a_connect_timeout_is_transient() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with socket.create_connection(listener.getsockname(), timeout=1):  # fills the accept queue
            got = both(lambda: url, lambda s: s.send(text()), connect_timeout_s=0.3)
    assert got[:2] == (
        ServerUnreachableError,
        "cannot reach Evolution for POST /message/sendText/sales: timed out",
    )


def test_a_refused_connection_is_transient() -> None:
    with EvolutionStub(api_key=KEY) as server:
        url = server.url
    got = both(lambda: url, lambda s: s.send(text()))
    assert got[:2] == (
        ServerUnreachableError,
        "cannot reach Evolution for POST /message/sendText/sales: [Errno 111] Connection refused",
    )


# ---- keep-alive and the resend rule --------------------------------------------------------------------
def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending(stub: EvolutionStub) -> None:
    stub.configure(keepalive_timeout_s=0.05)
    with lean(stub.url) as sender:
        assert sender.send(text("5511000000001")).key_id
        time.sleep(0.3)
        assert sender.send(text("5511000000002")).key_id
    assert stub.connections == 2
    assert [r.body["number"] for r in stub.requests()] == ["5511000000001", "5511000000002"]


def test_an_idle_connection_is_retired_before_the_server_would_close_it(stub: EvolutionStub) -> None:
    assert http1.KEEPALIVE_EXPIRY_S < 5.0  # Node's default keepAliveTimeout
    with lean(stub.url) as sender:
        assert sender._http1 is not None
        sender._http1.keepalive_expiry_s = 0.05
        sender.send(text())
        time.sleep(0.1)
        sender.send(text())
        assert sender._http1.connections_opened == 2
    assert stub.connections == 2


def test_a_server_that_hangs_up_after_reading_the_send_is_not_sent_twice(stub: EvolutionStub) -> None:
    stub.configure(hang_up={"5511000000009"})
    with lean(stub.url) as sender:
        sender.send(text())  # the socket is now a reused one
        with pytest.raises(TransientServiceError) as info:
            sender.send(text("5511000000009"))
        assert str(info.value) == (
            "cannot reach Evolution for POST /message/sendText/sales: "
            "Server disconnected without sending a response."
        )
        assert sender.send(text()).key_id  # and the next send opens a new connection
    numbers = [r.body["number"] for r in stub.requests()]
    assert numbers == [NUMBER, "5511000000009", NUMBER]
    with via_httpx(stub.url) as sender, pytest.raises(TransientServiceError) as same:
        sender.send(text("5511000000009"))
    assert str(same.value) == str(info.value)


class BrokenOnWrite:
    """A socket whose writes fail as if the connection were dead (then it is: reads see EOF); `early`
    bytes are there to read first, as from a server that answered and closed before taking the request."""

    def __init__(self, sock: socket.socket, error: OSError, early: bytes = b"") -> None:
        self._sock, self._error, self._early, self.writes = sock, error, early, 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        if not isinstance(self._error, TimeoutError):
            self._sock.shutdown(socket.SHUT_RDWR)
        raise self._error

    def recv(self, size: int) -> bytes:
        early, self._early = self._early, b""
        return early or self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_reused_socket_that_fails_on_write_is_replaced_and_the_send_made_once(stub: EvolutionStub) -> None:
    with lean(stub.url) as sender:
        client = sender._http1
        assert client is not None
        sender.send(text("5511000000001"))
        conn = client._local.conn
        broken = BrokenOnWrite(conn.sock, BrokenPipeError(32, "Broken pipe"))
        conn.sock = broken
        assert sender.send(text("5511000000002")).key_id
        assert broken.writes == 1 and client.connections_opened == 2
    assert [r.body["number"] for r in stub.requests()] == ["5511000000001", "5511000000002"]


def test_a_socket_whose_peer_reset_it_is_replaced_transparently(stub: EvolutionStub) -> None:
    with lean(stub.url) as sender:
        sender.send(text())
        client = sender._http1
        assert client is not None
        client._local.conn.sock.shutdown(socket.SHUT_WR)  # the server sees EOF and closes its end
        time.sleep(0.05)
        assert sender.send(text()).key_id
        assert client.connections_opened == 2
    assert len(stub.sends()) == 2


def test_a_write_failure_on_a_new_socket_or_a_timeout_is_not_retried(
    stub: EvolutionStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = http1.Http1Client._connect
    connects: list[object] = []

    def first_one_broken(self: http1.Http1Client) -> Any:
        sock = real_connect(self)
        connects.append(sock)
        return BrokenOnWrite(sock, BrokenPipeError(32, "Broken pipe")) if len(connects) == 1 else sock

    with lean(stub.url) as sender:
        monkeypatch.setattr(http1.Http1Client, "_connect", first_one_broken)
        with pytest.raises(TransientServiceError) as info:
            sender.send(text())
        assert str(info.value) == (
            "cannot reach Evolution for POST /message/sendText/sales: "
            "Server disconnected without sending a response."
        )
        assert len(connects) == 1  # a new socket: not sent again
        sender.send(text())
        client = sender._http1
        assert client is not None
        client._local.conn.sock = BrokenOnWrite(client._local.conn.sock, TimeoutError("timed out"))
        with pytest.raises(TransientServiceError, match=r"\(WriteTimeout\)"):
            sender.send(text())
        assert client.connections_opened == 2
    assert len(stub.requests()) == 1


def test_a_reply_sent_before_a_write_failed_is_used_not_resent(stub: EvolutionStub) -> None:
    early = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with lean(stub.url) as sender:
        client = sender._http1
        assert client is not None
        sender.send(text())
        conn = client._local.conn
        conn.sock = BrokenOnWrite(conn.sock, ConnectionResetError(104, "Connection reset by peer"), early)
        with pytest.raises(ApiKeyRejectedError):
            sender.send(text())
        assert client.connections_opened == 1
    assert len(stub.requests()) == 1


def test_close_closes_every_threads_socket_and_the_sender_still_works(stub: EvolutionStub) -> None:
    sender = lean(stub.url)
    client = sender._http1
    assert client is not None
    with ThreadPoolExecutor(4) as pool:  # the threads (and their sockets) stay alive until the end
        list(pool.map(lambda i: sender.send(text(f"55119{i:08d}")), range(100)))
        assert 1 <= client.connections_opened <= 4
        opened = list(client._open)
        assert len(opened) == client.connections_opened and all(conn.sock for conn in opened)
        sender.close()
        assert all(conn.sock is None for conn in opened) and not list(client._open)
        assert sender.send(text()).key_id
        assert list(pool.map(lambda i: bool(sender.send(text()).key_id), range(8))) == [True] * 8
    sender.close()


# ---- replies the stub never sends: framing, interim replies, compression, truncation -----------------
OK_BODY = json.dumps({"key": {"id": "3EB0RAW"}, "status": "PENDING"}).encode()
OK_REPLY = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY)
    + OK_BODY
)


GZIPPED = gzip.compress(OK_BODY)


def chunked(body: bytes, *sizes: int) -> bytes:
    out, rest = b"", body
    for size in sizes:
        out += b"%x;ext=1\r\n" % size + rest[:size] + b"\r\n"
        rest = rest[size:]
    return out + b"%x\r\n" % len(rest) + rest + b"\r\n0\r\nX-Trailer: t\r\n\r\n"


REPLIES: dict[str, list[bytes]] = {
    "chunked": [b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(OK_BODY, 5, 7)],
    "interim 100 then 201": [b"HTTP/1.1 100 Continue\r\n\r\n" + OK_REPLY],
    "bare LF": [OK_REPLY.replace(b"\r\n", b"\n")],
    "HTTP/1.0 until close": [b"HTTP/1.0 201 Created\r\n\r\n" + OK_BODY, b""],
    "connection close": [OK_REPLY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1), b""],
    "split in pieces": [OK_REPLY[:10], OK_REPLY[10:40], OK_REPLY[40:-3], OK_REPLY[-3:]],
    "gzip": [
        b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(GZIPPED)
        + GZIPPED
    ],
    "not JSON, latin-1": [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=latin-1\r\n"
        b"Content-Length: 10\r\n\r\n<b>ol\xe1</b>"
    ],
    "empty 2xx": [b"HTTP/1.1 204 No Content\r\n\r\n"],
    "503 with Retry-After": [
        b"HTTP/1.1 503 Busy Here\r\nRetry-After: 7\r\nContent-Type: text/html\r\nContent-Length: 33\r\n\r\n"
        b"<html><title>Down</title></html>\n"
    ],
    "500 chunked JSON": [
        b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(json.dumps({"status": 500, "response": {"message": "Connection Closed"}}).encode(), 9)
    ],
    "truncated body": [OK_REPLY[:-5], b""],
    "truncated chunked": [b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", b""],
    "closed mid head": [b"HTTP/1.1 201 Created\r\nContent-Le", b""],
    "closed before replying": [b""],
}  # fmt: skip


@pytest.mark.parametrize("name", list(REPLIES))
def test_raw_replies_are_read_as_httpx_reads_them(name: str) -> None:
    script = REPLIES[name]
    with RawServer([script, script]) as server:
        got = both(lambda: server.url, lambda s: s.send(text()))
    assert got[0] in ("sent", TransientServiceError, InstanceUnavailableError, ServerUnreachableError), got


def test_raw_reply_details() -> None:
    with (
        RawServer([REPLIES["not JSON, latin-1"], REPLIES["gzip"], REPLIES["503 with Retry-After"]]) as server,
        lean(server.url) as sender,
    ):
        assert sender.send(text()).response == {"body": "<b>olá</b>"}
        assert sender.send(text()).key_id == "3EB0RAW"
        with pytest.raises(TransientServiceError) as info:
            sender.send(text())
    assert str(info.value) == "Evolution is unreachable behind its proxy (HTTP 503: Down)"
    assert info.value.retry_after == 7.0


def test_a_keep_alive_reply_reuses_the_socket_and_a_close_reply_does_not() -> None:
    close = REPLIES["connection close"]
    with RawServer([[OK_REPLY], [OK_REPLY], close, [OK_REPLY]]) as server, lean(server.url) as sender:
        for _ in range(4):
            sender.send(text())
    assert server.connections == 2  # requests 1-3 on the first socket, which the 3rd reply closed


# ---- TLS and proxies ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_the_default_context(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    with EvolutionStub(api_key=KEY, ssl_context=server_context) as server:
        assert server.url.startswith("https://")
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = both(lambda: server.url, lambda s: s.send(text()))
        assert untrusted[0] is ServerUnreachableError and "CERTIFICATE_VERIFY_FAILED" in untrusted[1]
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert both(lambda: server.url, lambda s: s.send(text()))[0] == "sent"
        with lean(server.url) as sender:
            for _ in range(3):
                sender.send(text())
            assert sender._http1 is not None and sender._http1.connections_opened == 1
    assert len(server.sends()) == 5


def test_a_proxy_from_the_environment_sends_through_httpx(
    stub: EvolutionStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", stub.url)  # the stub answers absolute-form requests like a proxy
    with EvolutionSender("http://evolution.internal:8080", KEY, typing_delay_ms=0) as sender:
        assert sender._http1 is None and sender._transport is not None
        assert sender.send(text()).key_id
    assert stub.requests()[0].path == "/message/sendText/sales"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as sender:
        assert sender._http1 is not None  # exempt from the proxy: the lean client
        assert sender.send(text()).key_id
    assert len(stub.requests()) == 2


# ---- a scripted raw HTTP server -----------------------------------------------------------------------
class RawServer:
    """Answers each request with the next script (across connections, one connection at a time): byte
    strings written with short pauses; a b"" closes the connection. Records every request as received."""

    def __init__(self, scripts: list[list[bytes]] | list[bytes]) -> None:
        self.scripts = [s if isinstance(s, list) else [s] for s in scripts]
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2)
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buf = b""
        while self.scripts:
            while b"\r\n\r\n" not in buf:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                buf += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + buf[:length])
            buf = buf[length:]
            for piece in self.scripts.pop(0):
                if not piece:
                    return
                conn.sendall(piece)
                time.sleep(0.005)
