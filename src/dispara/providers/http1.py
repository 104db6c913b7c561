"""A lean HTTP/1.1 client for `EvolutionSender`: one keep-alive socket per thread, nothing else.

httpx + httpcore + h11 cost ~330 µs of CPU per request (more with threads contending for the GIL); this
costs ~60 µs, syscalls included, because it does only what a send needs: the request goes out in one
`sendall` from bytes prepared once per route, and the reply is parsed with a few `bytes` operations.
(http.client measured ~150-200 µs: email-module header parsing, and head and body in two writes.)

What it speaks: HTTP/1.1 over TCP or TLS (`ssl.create_default_context()`, plus certifi's roots like httpx
unless SSL_CERT_FILE / SSL_CERT_DIR say otherwise); replies framed by Content-Length, chunked encoding or
connection close; interim 1xx replies skipped. It sends no Accept-Encoding and never decompresses: the
caller hands replies with a Content-Encoding to httpx. No proxies: the sender uses httpx when one applies.

Failures are raised as the httpx exception httpx's transport raises for the same failure (ConnectError,
ConnectTimeout, WriteError, ReadTimeout, RemoteProtocolError...), with the same text where it matters, so
the sender classifies both paths with the same code and the same messages.

When a request is sent again (`RESEND RULE`): only when it provably never reached the server complete.
- An idle kept-alive socket is checked before it is reused: older than KEEPALIVE_EXPIRY_S (below the 5 s
  keep-alive timeout of Node's HTTP server, which Evolution runs on), readable (the server closed it or
  sent something unasked) or holding unread bytes -> closed, and a new connection is opened. Nothing has
  been written yet, so this is not even a retry.
- Writing the request fails with a connection error (reset, broken pipe, TLS EOF) on a *reused* socket:
  the kernel refused part of the request, so the server cannot hold a complete one and cannot have acted
  on it. As httpcore does, whatever reply the server managed to send first is read and returned (a
  server may answer early, e.g. 401, and close); without one, reconnect and send once more. A second
  failure, or a write failure on a new socket, is raised (as the error of that read, like httpx).
- Anything after the whole request was handed to the kernel (a timeout, a reset, the server closing
  before or during its reply, a garbled reply) is raised, never resent: the server may have delivered
  the message, and only the caller (the queue, with its attempt count and backoff) may decide to resend.
  Even "zero bytes received, then EOF" on a reused socket is not proof: a server that read the request
  and crashed, or a proxy that gave up on it, looks exactly the same from here.
- Connect failures (refused, DNS, connect timeout, TLS handshake) are raised as is: nothing was sent.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass

import httpx

KEEPALIVE_EXPIRY_S = 4.0
MAX_HEAD_BYTES = 16 * 1024  # h11's limit for a reply head: same failure, same text
_READ_SIZE = 64 * 1024
_JOIN_LIMIT = 64 * 1024  # a bigger body is written after the head rather than copied into one buffer
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: ([^\r\n]*))?\r?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")
_NO_BODY = frozenset({204, 304})
_POLLIN = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)


@dataclass(slots=True)
class Reply:
    """One reply: `reason` and header names/values as the server sent them, `content` de-chunked."""

    status: int
    reason: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    content: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection:
    """One socket and the bytes read from it but not yet consumed."""

    __slots__ = ("__weakref__", "buf", "idle_since", "poller", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self.buf = b""
        self.idle_since = 0.0
        self.poller: select.poll | None = None
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(sock, _POLLIN)

    def readable(self) -> bool:
        """True if the idle socket has something to read: EOF, a reset or bytes nobody asked for."""
        sock = self.sock
        if sock is None:
            return True
        if self.buf or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return True
        try:
            if self.poller is not None:
                return bool(self.poller.poll(0))
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __del__(self) -> None:  # a thread that ended took its connection with it: close the socket quietly
        self.close()


class _WriteFailed(Exception):
    def __init__(self, error: httpx.TransportError, *, resendable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.resendable = resendable


class Http1Client:
    """Requests to one origin (scheme, host, port); share it between threads: each uses its own socket."""

    def __init__(
        self,
        url: httpx.URL,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
    ) -> None:
        if url.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {url.scheme!r}")
        self.tls = url.scheme == "https"
        self.host = url.raw_host.decode("ascii")  # IDNA-encoded, IPv6 without brackets: what httpcore dials
        self.port = url.port or (443 if self.tls else 80)
        self.netloc = url.netloc  # the Host header, exactly as httpx sends it
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.keepalive_expiry_s = keepalive_expiry_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._ssl_context: ssl.SSLContext | None = None
        self.connections_opened = 0

    # ---- request head ----------------------------------------------------------------------------------
    def head_prefix(self, method: str, target: bytes, headers: list[tuple[str, str]]) -> bytes:
        """Request line, Host and the given headers, ready to be followed by Content-Length or the end.

        Header order is httpx's for a transport-level request: Host first, then the caller's headers.
        """
        lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1", b"Host: " + self.netloc]
        lines += [name.encode("ascii") + b": " + value.encode("ascii") for name, value in headers]  # as httpx
        return b"\r\n".join(lines) + b"\r\n"

    # ---- the exchange -----------------------------------------------------------------------------------
    def request(self, method: str, prefix: bytes, content: bytes | None) -> Reply:
        """Send one request (`prefix` from `head_prefix`) and read its reply; see RESEND RULE above."""
        if content is None:
            head = prefix + b"\r\n"
        else:
            head = prefix + b"Content-Length: " + str(len(content)).encode() + b"\r\n\r\n"
            if len(content) <= _JOIN_LIMIT:
                head, content = head + content, None
        local = self._local
        conn: _Connection | None = getattr(local, "conn", None)
        reused = conn is not None and self._reusable(conn)
        if not reused:
            conn = self._replace(conn)
        assert conn is not None
        try:
            self._write(conn, head, content)
        except _WriteFailed as failed:
            return self._after_write_failure(conn, failed, method, head, content, resend=reused)
        return self._finish(conn, method)

    def _finish(self, conn: _Connection, method: str) -> Reply:
        try:
            reply, keep_alive = self._read(conn, method)
        except BaseException:
            conn.close()
            raise
        if keep_alive:
            conn.idle_since = time.monotonic()
        else:
            conn.close()
        return reply

    def _after_write_failure(
        self,
        conn: _Connection,
        failed: _WriteFailed,
        method: str,
        head: bytes,
        content: bytes | None,
        *,
        resend: bool,
    ) -> Reply:
        """Like httpcore, read the answer a server may have given before it stopped taking the request;
        without one, send again on a new socket if `resend` (the socket was a reused one) and the write
        failed on a dead connection, else raise what the read ran into (what httpx reports too)."""
        if isinstance(failed.error, httpx.WriteTimeout):
            conn.close()
            raise failed.error
        try:
            reply, _ = self._read(conn, method)
        except httpx.TransportError as error:
            conn.close()
            if not (resend and failed.resendable):
                raise error from None
        else:
            conn.close()
            return reply
        conn = self._replace(conn)
        try:
            self._write(conn, head, content)
        except _WriteFailed as again:
            return self._after_write_failure(conn, again, method, head, content, resend=False)
        return self._finish(conn, method)

    def _reusable(self, conn: _Connection) -> bool:
        if conn.sock is None or time.monotonic() - conn.idle_since > self.keepalive_expiry_s:
            return False
        return not conn.readable()

    def _replace(self, old: _Connection | None) -> _Connection:
        if old is not None:
            old.close()
        self._local.conn = None
        conn = _Connection(self._connect())
        self._local.conn = conn
        with self._lock:
            self._open.add(conn)
            self.connections_opened += 1
        return conn

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = self.ssl_context().wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout_s)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc)) from None
        except OSError as exc:  # ssl.SSLError (certificate, handshake) is an OSError
            sock.close()
            raise httpx.ConnectError(str(exc)) from None
        return sock

    def ssl_context(self) -> ssl.SSLContext:
        context = self._ssl_context
        if context is None:
            with self._lock:
                context = self._ssl_context
                if context is None:
                    context = self._ssl_context = default_ssl_context()
        return context

    @staticmethod
    def _write(conn: _Connection, head: bytes, content: bytes | None) -> None:
        sock = conn.sock
        assert sock is not None
        try:
            sock.sendall(head)
            if content:
                sock.sendall(content)
        except TimeoutError as exc:
            raise _WriteFailed(httpx.WriteTimeout(str(exc)), resendable=False) from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise _WriteFailed(httpx.WriteError(str(exc)), resendable=True) from None
        except OSError as exc:
            raise _WriteFailed(httpx.WriteError(str(exc)), resendable=False) from None

    def _read(self, conn: _Connection, method: str) -> tuple[Reply, bool]:
        """The reply and whether the connection may be reused; leaves any surplus bytes in `conn.buf`."""
        sock = conn.sock
        assert sock is not None
        buf, conn.buf = conn.buf, b""
        status, reason, version, headers, buf = _read_head(sock, buf)
        keep_alive, framing, length = _framing(version, headers)
        if status == 101:  # the connection now speaks another protocol
            content, keep_alive = b"", False
        elif method == "HEAD" or status in _NO_BODY:
            content = b""
        elif framing == b"length":
            if len(buf) < length:
                parts, have = [buf], len(buf)
                while have < length:
                    data = _recv(sock)
                    if not data:
                        raise httpx.RemoteProtocolError(
                            "peer closed connection without sending complete message body "
                            f"(received {have} bytes, expected {length})"
                        )
                    parts.append(data)
                    have += len(data)
                buf = b"".join(parts)
            content, buf = buf[:length], buf[length:]
        elif framing == b"chunked":
            content, buf = _read_chunked(sock, buf)
        else:  # no framing: the body runs until the server closes
            parts = [buf]
            while data := _recv(sock):
                parts.append(data)
            content, buf, keep_alive = b"".join(parts), b"", False
        if buf:  # bytes past the reply: the connection is out of step, never reuse it
            keep_alive = False
        return Reply(status, reason, version, headers, content), keep_alive

    # ---- shutdown ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every thread's socket; a later request opens a new one."""
        with self._lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            conn.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(_READ_SIZE)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc)) from None
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from None


def _read_head(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """Status, reason, version and headers of the final reply (interim 1xx skipped), and the bytes after."""
    while True:
        match = _HEAD_END.search(buf)
        while match is None:
            if len(buf) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("Receive buffer too long")
            data = _recv(sock)
            if not data:  # httpcore's words for an EOF anywhere before the head is complete
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            buf += data
            match = _HEAD_END.search(buf, max(0, len(buf) - len(data) - 3))
        if match.start() > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError("Receive buffer too long")
        lines = buf[: match.start()].split(b"\n")
        buf = buf[match.end() :]
        status_line = _STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise httpx.RemoteProtocolError("illegal status line: " + repr(lines[0][:100]))
        status = int(status_line.group(2))
        headers = _parse_headers(lines)
        if status >= 200 or status == 101:
            version = b"HTTP/" + status_line.group(1)
            return status, status_line.group(3) or b"", version, headers, buf


def _framing(version: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[bool, bytes | None, int]:
    """Keep-alive (HTTP/1.1 without `Connection: close`, like h11), framing (b"chunked", b"length" or
    None: until close) and the Content-Length."""
    keep_alive = version == b"HTTP/1.1"
    framing: bytes | None = None
    length = 0
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"connection":
            if b"close" in [token.strip() for token in value.lower().split(b",")]:
                keep_alive = False
        elif lowered == b"transfer-encoding":
            codings = [token.strip() for token in value.lower().split(b",") if token.strip()]
            if codings != [b"chunked"]:
                raise httpx.RemoteProtocolError("Only Transfer-Encoding: chunked is supported")
            framing = b"chunked"
        elif lowered == b"content-length" and framing != b"chunked":
            length = _content_length(value, length if framing == b"length" else None)
            framing = b"length"
    return keep_alive, framing, length


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" \t"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or _HEADER_NAME.fullmatch(name) is None:
            raise httpx.RemoteProtocolError("illegal header line: " + repr(line[:100]))
        headers.append((name, value.strip(b" \t")))
    return headers


def _content_length(value: bytes, previous: int | None) -> int:
    if previous is None and value.isdigit() and len(value) <= 18:
        return int(value)
    values = {v.strip() for v in value.split(b",")}
    if len(values) != 1:
        raise httpx.RemoteProtocolError("conflicting Content-Length headers")
    (text,) = values
    if not text.isdigit() or len(text) > 18:
        raise httpx.RemoteProtocolError("bad Content-Length")
    length = int(text)
    if previous is not None and previous != length:
        raise httpx.RemoteProtocolError("conflicting Content-Length headers")
    return length


def _read_chunked(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """De-chunk a body (trailers are read and dropped); returns it and the bytes after it."""
    recv = _recv
    parts: list[bytes] = []

    def fill(buf: bytes, need: int) -> bytes:
        if len(buf) >= need:
            return buf
        pieces, have = [buf], len(buf)
        while have < need:
            data = recv(sock)
            if not data:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body (incomplete chunked read)"
                )
            pieces.append(data)
            have += len(data)
        return b"".join(pieces)

    def line(buf: bytes) -> tuple[bytes, bytes]:
        end = buf.find(b"\n")
        while end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("Receive buffer too long")
            start = len(buf)
            buf = fill(buf, start + 1)
            end = buf.find(b"\n", start)
        return buf[:end], buf[end + 1 :]

    while True:
        size_line, buf = line(buf)
        match = _CHUNK_SIZE.fullmatch(size_line)
        if match is None:
            raise httpx.RemoteProtocolError("illegal chunk header: " + repr(size_line[:100]))
        size = int(match.group(1), 16)
        if size == 0:
            while True:  # trailer fields, then the empty line
                trailer, buf = line(buf)
                if trailer in (b"", b"\r"):
                    return b"".join(parts), buf
        buf = fill(buf, size + 1)
        parts.append(buf[:size])
        buf = buf[size:]
        crlf, buf = line(buf)
        if crlf not in (b"", b"\r"):
            raise httpx.RemoteProtocolError("chunk not followed by CRLF")


def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured by OpenSSL), plus certifi's roots
    when neither is set, so every server httpx trusted (it uses certifi) is still trusted."""
    context = ssl.create_default_context()
    if not os.environ.get("SSL_CERT_FILE") and not os.environ.get("SSL_CERT_DIR"):
        try:
            import certifi

            context.load_verify_locations(certifi.where())
        except (ImportError, OSError, ssl.SSLError):
            pass
    context.set_alpn_protocols(["http/1.1"])
    return context
