"""A fast local Evolution API v2 stub (raw asyncio HTTP/1.1 with keep-alive) for e2e tests and benchmarks.

In-process: `with EvolutionStub(api_key="K") as stub: stub.url`. Standalone:
`python -m tests.stubs.evolution_stub --port 0 --api-key K` prints `EVOLUTION_STUB_URL=http://127.0.0.1:PORT`;
`GET /_stub/requests` on it returns what it recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"  # never reachable from outside this machine
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_SEND_ROUTES = {"sendText", "sendMedia", "sendWhatsAppAudio"}
_UNLOADED_FIELD = {
    "sendText": "textMessage",
    "sendMedia": "mediaMessage",
    "sendWhatsAppAudio": "audioWhatsapp",
}
_MESSAGE_TYPES = {"image": "imageMessage", "video": "videoMessage", "document": "documentMessage"}
_HANG_UP = 0  # the status recorded for a request the stub closed the connection on without answering


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub saw it; `at` is time.time() and `mono` time.monotonic() on arrival."""

    method: str
    path: str
    route: str
    instance: str | None
    headers: dict[str, str]
    body: Any
    status: int
    at: float
    mono: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    group: str
    route: str
    instance: str | None
    headers: dict[str, str]
    body: Any


@dataclass
class Behaviour:
    """What the stub does; change fields under `stub.lock` (or via `stub.configure`) while it runs."""

    api_key: str = "stub-key"
    instances: set[str] | None = None  # None: every name exists
    not_on_whatsapp: set[str] = field(default_factory=set)
    closed_instances: set[str] = field(default_factory=set)  # sends -> 500 "Connection Closed", state close
    closed_at_send: set[str] = field(default_factory=set)  # sends -> 400 ["Error: Connection Closed"]
    unloaded_instances: set[str] = field(default_factory=set)  # 500 "Cannot read ..."; state missing
    fail_first: dict[str, int] = field(default_factory=dict)  # number -> fail with 500 this many times
    license_gate: bool = False  # 2.4.0 not activated: 503 LICENSE_REQUIRED on every route
    honour_delay: bool = False  # sleep `delay` ms like the real server (off: answer at once)
    latency_s: float = 0.0
    hang_up: set[str] = field(default_factory=set)  # number -> read and record the send, close, no reply
    keepalive_timeout_s: float = 0.0  # close a connection idle this long between requests (0: never)


_LICENSE_REQUIRED = {
    "error": "service not activated",
    "code": "LICENSE_REQUIRED",
    "register_url": "https://license.example/register",
    "docs_url": "https://license.example/docs",
    "message": "This Evolution API server must be activated",
}


def _envelope(status: int, message: Any) -> dict[str, Any]:
    return {"status": status, "error": _REASONS.get(status, "Error"), "response": {"message": message}}


def _validate(route: str, body: Any) -> list[list[str]] | None:
    # The schema errors the real server gives (nested list), for the fields dispara must send.
    required = {
        "sendText": ("number", "text"),
        "sendMedia": ("number", "mediatype", "media"),
        "sendWhatsAppAudio": ("number", "audio"),
    }[route]
    if not isinstance(body, dict):
        return [["instance is not of a type(s) object"]]
    errors = [[f'instance requires property "{name}"'] for name in required if name not in body]
    if errors:
        return errors
    if not isinstance(body["number"], str):
        return [["Invalid format"]]
    if "delay" in body and not isinstance(body["delay"], int):
        return [["instance.delay is not of a type(s) integer"]]
    if route == "sendMedia" and body["mediatype"] not in ("image", "video", "document", "audio"):
        return [["instance.mediatype is not one of enum values: image,video,document,audio"]]
    return None


class EvolutionStub:
    """The stub server, running its own event loop in a daemon thread; stops when the context exits."""

    def __init__(
        self,
        *,
        api_key: str = "stub-key",
        port: int = 0,
        instances: Iterable[str] | None = None,
        not_on_whatsapp: Iterable[str] = (),
        closed_instances: Iterable[str] = (),
        closed_at_send: Iterable[str] = (),
        unloaded_instances: Iterable[str] = (),
        fail_first: Mapping[str, int] | None = None,
        license_gate: bool = False,
        honour_delay: bool = False,
        latency_s: float = 0.0,
        hang_up: Iterable[str] = (),
        keepalive_timeout_s: float = 0.0,
        max_records: int = 200_000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.behaviour = Behaviour(
            api_key=api_key,
            instances=set(instances) if instances is not None else None,
            not_on_whatsapp=set(not_on_whatsapp),
            closed_instances=set(closed_instances),
            closed_at_send=set(closed_at_send),
            unloaded_instances=set(unloaded_instances),
            fail_first=dict(fail_first or {}),
            license_gate=license_gate,
            honour_delay=honour_delay,
            latency_s=latency_s,
            hang_up=set(hang_up),
            keepalive_timeout_s=keepalive_timeout_s,
        )
        self._ssl = ssl_context  # serve HTTPS with it (the URL then starts with https://)
        self.lock = threading.Lock()
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)  # bounded memory on long benchmarks
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._counter = 0
        self.connections = 0  # TCP connections accepted so far
        self._instance_id = str(uuid.uuid4())

    # ---- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("stub not started")
        return f"{'https' if self._ssl else 'http'}://{HOST}:{self._port}"

    def start(self) -> EvolutionStub:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # surfaced to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="evolution-stub", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        if self._port is None:
            raise RuntimeError("evolution stub did not start within 10 s")
        return self

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already gone
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def down(self) -> None:
        """Stop accepting connections (refused), keeping the port for `up()`."""
        port = self._port
        self.stop()
        self._requested_port = port or 0

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    def __enter__(self) -> EvolutionStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1  # tests assert keep-alive reuse with it
            task = asyncio.current_task()
            if task is not None:
                tasks.add(task)
            try:
                await self._connection(reader, writer)
            except asyncio.CancelledError:
                pass  # shutting down: asyncio's stream callback would log a cancelled task as an error
            finally:
                if task is not None:
                    tasks.discard(task)

        server = await asyncio.start_server(
            on_connect, HOST, self._requested_port, backlog=1024, limit=MAX_HEADER_BYTES, ssl=self._ssl
        )
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in list(tasks):  # idle keep-alive connections would otherwise block wait_closed
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- introspection ---------------------------------------------------------------------------------
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._records)

    def sends(self, *, ok_only: bool = True) -> list[RecordedRequest]:
        return [r for r in self.requests() if r.route in _SEND_ROUTES and (r.status == 201 or not ok_only)]

    def accepted_numbers(self) -> Counter[str]:
        """How many accepted (201) sends each number got: a count above 1 is a duplicate."""
        sends = self.sends()
        return Counter(r.body["number"] for r in sends if isinstance(r.body, dict) and "number" in r.body)

    def reset(self) -> None:
        with self.lock:
            self._records.clear()

    def configure(self, **changes: Any) -> None:
        """Change behaviour while running, e.g. `stub.configure(closed_instances={"sales"})`."""
        with self.lock:
            for name, value in changes.items():
                if not hasattr(self.behaviour, name):
                    raise AttributeError(f"no stub behaviour named {name!r}")
                as_set = isinstance(getattr(self.behaviour, name), set) or name == "instances"
                setattr(self.behaviour, name, set(value) if as_set and value is not None else value)

    # ---- HTTP ------------------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                # Like Node's keepAliveTimeout, the idle limit applies only between requests.
                head = await self._next_head(reader, self.behaviour.keepalive_timeout_s if served else 0.0)
                if head is None:
                    return
                served += 1
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._write(writer, 411, {"error": "chunked bodies not supported"}, False)
                    return
                length = (
                    int(headers.get("content-length") or 0)
                    if headers.get("content-length", "0").isdigit()
                    else -1
                )
                if not 0 <= length <= MAX_BODY_BYTES:
                    await self._write(writer, 413, {"error": "bad or too large Content-Length"}, False)
                    return
                raw = await reader.readexactly(length) if length else b""
                status, payload = await self._handle(method, target, headers, raw)
                if status == _HANG_UP:
                    return
                await self._write(writer, status, payload, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _next_head(reader: asyncio.StreamReader, idle_limit: float) -> bytes | None:
        """The next request head, or None when the client went away or stayed idle past `idle_limit`."""
        try:
            if idle_limit > 0:
                return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_limit)
            return await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()
        writer.write(head + body)
        await writer.drain()

    async def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        arrived, mono = time.time(), time.monotonic()
        path = urlsplit(target).path
        if path.startswith("/_stub/"):
            return self._control(method, path, raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        parts = path.strip("/").split("/")
        group, route, instance = (
            (parts[0], parts[1], unquote(parts[2])) if len(parts) == 3 else ("", "", None)
        )
        req = _Request(method, path, group, route, instance, headers, body)
        status, payload, delay_s = self._decide(req)
        record = RecordedRequest(method, path, route, instance, headers, body, status, arrived, mono)
        with self.lock:
            self._records.append(record)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return status, payload

    def _decide(self, req: _Request) -> tuple[int, Any, float]:
        with self.lock:
            b = self.behaviour
            if b.license_gate:
                return 503, _LICENSE_REQUIRED, 0.0
            known = (req.method == "POST" and req.group == "message" and req.route in _SEND_ROUTES) or (
                req.method == "GET" and req.group == "instance" and req.route == "connectionState"
            )
            if req.instance is None or not known:
                return 404, _envelope(404, [f"Cannot {req.method} {req.path}"]), 0.0
            # Guard order of the real server: instance exists, then the key.
            if b.instances is not None and req.instance not in b.instances:
                return 404, _envelope(404, [f'The "{req.instance}" instance does not exist']), 0.0
            if req.headers.get("apikey") != b.api_key:
                return 401, _envelope(401, "Unauthorized"), 0.0
            if req.route == "connectionState":
                inner: dict[str, Any] = {"instanceName": req.instance}
                if req.instance not in b.unloaded_instances:
                    inner["state"] = "close" if req.instance in b.closed_instances else "open"
                return 200, {"instance": inner}, b.latency_s
            status, payload = self._send_outcome(b, req.route, req.instance, req.body)
            delay_s = b.latency_s
            if status == 201 and b.honour_delay and isinstance(req.body.get("delay"), int):
                delay_s += req.body["delay"] / 1000
            return status, payload, delay_s

    def _send_outcome(self, b: Behaviour, route: str, instance: str, body: Any) -> tuple[int, Any]:
        # In the order the real server meets them: schema, instance in memory, number check, the send itself.
        errors = _validate(route, body)
        if errors is not None:
            return 400, _envelope(400, errors)
        number = body["number"]
        if instance in b.unloaded_instances:
            text = f"Cannot read properties of undefined (reading '{_UNLOADED_FIELD[route]}')"
            return 500, _envelope(500, text)
        if instance in b.closed_instances:
            return 500, _envelope(500, "Connection Closed")
        if number in b.not_on_whatsapp:
            return 400, _envelope(
                400, [{"jid": f"{number}@s.whatsapp.net", "exists": False, "number": number}]
            )
        if instance in b.closed_at_send:
            return 400, _envelope(400, ["Error: Connection Closed"])
        if number in b.hang_up:
            return _HANG_UP, None
        if b.fail_first.get(number, 0) > 0:
            b.fail_first[number] -= 1
            return 500, _envelope(500, "Internal Server Error (stub: fail_first)")
        self._counter += 1
        return 201, self._message(route, number, body, self._counter)

    def _message(self, route: str, number: str, body: dict[str, Any], n: int) -> dict[str, Any]:
        if route == "sendText":
            message_type, message = "conversation", {"conversation": body["text"]}
        elif route == "sendWhatsAppAudio":
            message_type = "audioMessage"
            message = {
                "audioMessage": {"url": body["audio"], "mimetype": "audio/ogg; codecs=opus", "ptt": True}
            }
        else:
            message_type = _MESSAGE_TYPES.get(body["mediatype"], "audioMessage")
            content = {"url": body["media"], "caption": body.get("caption"), "fileName": body.get("fileName")}
            message = {message_type: content}
        jid = number if "@" in number else f"{number}@s.whatsapp.net"
        return {
            "key": {"remoteJid": jid, "fromMe": True, "id": f"3EB0{n:016X}"},
            "pushName": "Stub",
            "status": "PENDING",
            "message": message,
            "contextInfo": None,
            "messageType": message_type,
            "messageTimestamp": int(time.time()),
            "instanceId": self._instance_id,
            "source": "web",
        }

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        # For a stub in another process: read what it recorded, clear it, or change behaviour.
        if path == "/_stub/requests" and method == "GET":
            return 200, [r.to_json() for r in self.requests()]
        if path == "/_stub/requests" and method == "DELETE":
            self.reset()
            return 200, {"ok": True}
        if path == "/_stub/config" and method == "POST":
            try:
                self.configure(**json.loads(raw or b"{}"))
            except (ValueError, TypeError, AttributeError) as exc:
                return 400, {"error": str(exc)}
            return 200, {"ok": True}
        return 404, {"error": f"no stub control route {method} {path}"}


def _csv(values: list[str]) -> set[str]:
    return {item.strip() for value in values for item in value.split(",") if item.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stubs.evolution_stub", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="stub-key")
    parser.add_argument("--instances", action="append", default=[], help="names that exist (default: any)")
    parser.add_argument("--not-on-whatsapp", action="append", default=[], metavar="NUMBERS")
    parser.add_argument("--closed-instance", action="append", default=[], metavar="NAMES")
    parser.add_argument("--closed-at-send", action="append", default=[], metavar="NAMES")
    parser.add_argument("--unloaded-instance", action="append", default=[], metavar="NAMES")
    parser.add_argument("--fail-first", action="append", default=[], metavar="NUMBER=N")
    parser.add_argument("--license-gate", action="store_true")
    parser.add_argument("--honour-delay", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit by itself after this long")
    args = parser.parse_args(argv)

    fail_first = {}
    for item in args.fail_first:
        number, _, count = item.partition("=")
        fail_first[number.strip()] = int(count or 1)
    stub = EvolutionStub(
        api_key=args.api_key,
        port=args.port,
        instances=_csv(args.instances) if args.instances else None,
        not_on_whatsapp=_csv(args.not_on_whatsapp),
        closed_instances=_csv(args.closed_instance),
        closed_at_send=_csv(args.closed_at_send),
        unloaded_instances=_csv(args.unloaded_instance),
        fail_first=fail_first,
        license_gate=args.license_gate,
        honour_delay=args.honour_delay,
        latency_s=args.latency_ms / 1000,
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with stub:
        sys.stdout.write(f"EVOLUTION_STUB_URL={stub.url}\n")
        sys.stdout.flush()
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
