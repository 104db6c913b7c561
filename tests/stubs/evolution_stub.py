"""A local Evolution API v2 stub for tests and benchmarks: a Starlette app served by uvicorn on 127.0.0.1.

In-process: `with EvolutionStub(api_key="K") as stub: stub.url` (uvicorn runs in a daemon thread). Standalone:
`python -m tests.stubs.evolution_stub --port 0 --api-key K` prints `EVOLUTION_STUB_URL=http://127.0.0.1:PORT`;
`GET /_stub/requests` returns what it recorded, `POST /_stub/config` changes its behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import unquote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

HOST = "127.0.0.1"  # never reachable from outside this machine
_SEND_ROUTES = {"sendText", "sendMedia", "sendWhatsAppAudio"}
_UNLOADED_FIELD = {
    "sendText": "textMessage",
    "sendMedia": "mediaMessage",
    "sendWhatsAppAudio": "audioWhatsapp",
}
_MESSAGE_TYPES = {"image": "imageMessage", "video": "videoMessage", "document": "documentMessage"}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
_GATEWAY_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
_HANG_UP = 0  # the status recorded for a request the stub closed the connection on without answering
_TRANSPORT_KEY = "evolution_stub.transport"  # where the protocol below leaves the connection in the scope
_LICENSE_REQUIRED = {
    "error": "service not activated",
    "code": "LICENSE_REQUIRED",
    "register_url": "https://license.example/register",
    "docs_url": "https://license.example/docs",
    "message": "This Evolution API server must be activated",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub saw it; `at` is time.time() and `mono` time.monotonic() on arrival.

    `path` is the raw (still percent-encoded) path; `status` is what was answered, 0 for a hang-up.
    """

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


@dataclass
class Behaviour:
    """What the stub does; change fields under `stub.lock` (or via `stub.configure`) while it runs."""

    api_key: str = "stub-key"
    other_keys: set[str] = field(default_factory=set)  # also accepted (one server, many tenants' keys)
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
    hang_s: float = 0.0  # every send is accepted (201, recorded) but its reply comes this much later
    proxy_error: int | None = None  # a proxy before a dead Evolution: this status, nginx's HTML, every route
    closed_rate: float = 0.0  # this fraction of sends -> 400 ["Error: Connection Closed"]
    transient_rate: float = 0.0  # this fraction of sends -> 500
    seed: int = 0  # of the RNG drawing closed_rate / transient_rate; setting it restarts the sequence
    reply_headers: dict[str, str] = field(default_factory=dict)  # added to every Evolution reply


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str  # raw
    group: str
    route: str
    instance: str | None
    headers: dict[str, str]
    body: Any
    query: dict[str, str]


def _key_ok(b: Behaviour, call: _Call) -> bool:
    key = call.headers.get("apikey")
    return key == b.api_key or key in b.other_keys


def _envelope(status: int, message: Any) -> dict[str, Any]:
    return {"status": status, "error": _REASONS.get(status, "Error"), "response": {"message": message}}


def _connection_state(b: Behaviour, instance: str) -> dict[str, Any]:
    inner: dict[str, Any] = {"instanceName": instance}
    if instance not in b.unloaded_instances:
        inner["state"] = "close" if instance in b.closed_instances else "open"
    return inner


def _gateway_page(status: int) -> Response:
    # nginx's own error page: what a reverse proxy answers when Evolution behind it is down or too slow.
    title = f"{status} {_GATEWAY_REASONS.get(status, 'Error')}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(page, status_code=status, media_type="text/html", headers={"server": "nginx"})


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


class _HangUp(Response):
    """No reply at all: the connection is closed once the request has been read."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = scope.get(_TRANSPORT_KEY)
        if transport is not None:
            transport.close()
        for _ in range(3):  # let uvicorn see the connection lost, so it does not answer in our place
            await asyncio.sleep(0)


def _protocol_class(stub: EvolutionStub) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, counting connections and exposing each request's connection to the app
    (ASGI has no way to drop a connection without answering, which `hang_up` needs)."""
    base: Any = AutoHTTPProtocol

    class StubProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            with stub.lock:
                stub.connections += 1
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.scope is not None:  # the request task starts on the next loop turn: it sees this
                self.scope[_TRANSPORT_KEY] = self.transport

    return StubProtocol


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop when installed (uvicorn's own choice too): the stub then costs the benchmarks less CPU.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Server:
    """One uvicorn server on an already bound socket, running its own event loop in a daemon thread."""

    def __init__(
        self, app: Starlette, sock: socket.socket, protocol: type[asyncio.Protocol], keepalive_s: float
    ) -> None:
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=keepalive_s,  # type: ignore[arg-type]  # a float works: tests use fractions
            timeout_graceful_shutdown=1,
            backlog=1024,
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="evolution-stub", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and not self.failure and self.thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("evolution stub did not start within 10 s")
            time.sleep(0.005)
        if self.failure:
            raise self.failure[0]
        if not self.server.started:
            raise RuntimeError("evolution stub stopped while starting")

    def _run(self) -> None:
        loop = self.loop = _new_event_loop()
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
            pending = asyncio.all_tasks(loop)  # requests still held (hang_s), their connections gone
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException as exc:  # surfaced by start()
            self.failure.append(exc)
        finally:
            loop.close()
            self.sock.close()

    def stop(self) -> None:
        """Close every connection (in flight or idle) and the listening socket, like a process that died."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(self._drop_connections)
        self.server.force_exit = True
        self.server.should_exit = True
        self.thread.join(10)

    def _drop_connections(self) -> None:
        for server in getattr(self.server, "servers", []):
            server.close()  # refuse new connections at once, not at the next tick
        for connection in list(self.server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()


class EvolutionStub:
    """The stub server; stops when the context exits. `down()` / `up()` take it off and back on its port."""

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
        hang_s: float = 0.0,
        proxy_error: int | None = None,
        closed_rate: float = 0.0,
        transient_rate: float = 0.0,
        seed: int = 0,
        keepalive_timeout_s: float = 5.0,  # Node's default keepAliveTimeout, which Evolution runs with
        max_records: int = 200_000,
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
            hang_s=hang_s,
            proxy_error=proxy_error,
            closed_rate=closed_rate,
            transient_rate=transient_rate,
            seed=seed,
        )
        self.lock = threading.Lock()
        self.connections = 0  # TCP connections accepted so far
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)  # bounded memory on long benchmarks
        self._rng = random.Random(seed)
        self._counter = 0
        self._in_flight: Counter[str | None] = Counter()  # None: every instance
        self._max_in_flight: Counter[str | None] = Counter()
        self._instance_id = str(uuid.uuid4())
        self._webhooks: dict[str, dict[str, Any]] = {}
        self._requested_port = port
        self._port: int | None = None
        self._keepalive_s = keepalive_timeout_s
        self._server: _Server | None = None
        self.app = Starlette(
            routes=[
                Route("/_stub/requests", self._recorded, methods=["GET", "DELETE"]),
                Route("/_stub/config", self._configure_route, methods=["POST"]),
                Route("/{path:path}", self._evolution, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            ]
        )

    # ---- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("stub not started")
        return f"http://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stub not started")
        return self._port

    def start(self) -> EvolutionStub:
        self.up()
        return self

    def up(self) -> None:
        """Listen again (on the same port once it has had one): connections are accepted from now on."""
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio: TCP_NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self._port if self._port is not None else self._requested_port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        server = _Server(self.app, sock, _protocol_class(self), self._keepalive_s)
        server.start()
        self._server = server

    def down(self) -> None:
        """Stop listening and drop every open connection: connecting is refused until `up()`."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> EvolutionStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- introspection ---------------------------------------------------------------------------------
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._records)

    def sends(self, *, ok_only: bool = True) -> list[RecordedRequest]:
        return [r for r in self.requests() if r.route in _SEND_ROUTES and (r.status == 201 or not ok_only)]

    def accepted_numbers(self) -> Counter[str]:
        """How many sends each number got that the stub accepted (201); a count above 1 is a duplicate."""
        return Counter(str(r.body["number"]) for r in self.sends(ok_only=True))

    def max_in_flight(self, instance: str | None = None) -> int:
        """The most sends seen in flight at once on `instance` (None: on all instances together)."""
        with self.lock:
            return self._max_in_flight[instance]

    def reset(self) -> None:
        """Forget the recorded requests and the in-flight peaks (not the behaviour)."""
        with self.lock:
            self._records.clear()
            self._max_in_flight = Counter(self._in_flight)

    def configure(self, **changes: Any) -> None:
        """Change behaviour while running, e.g. `stub.configure(closed_instances={"sales"})`."""
        names = {f.name for f in fields(Behaviour)}
        with self.lock:
            for name, value in changes.items():
                if name not in names:
                    raise AttributeError(f"no stub behaviour named {name!r}")
                as_set = isinstance(getattr(self.behaviour, name), set) or name == "instances"
                setattr(self.behaviour, name, set(value) if as_set and value is not None else value)
                if name == "seed":
                    self._rng = random.Random(value)

    # ---- routes ----------------------------------------------------------------------------------------
    async def _recorded(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.reset()
            return JSONResponse({"ok": True})
        return JSONResponse([r.to_json() for r in self.requests()])

    async def _configure_route(self, request: Request) -> Response:
        try:
            self.configure(**json.loads(await request.body() or b"{}"))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _evolution(self, request: Request) -> Response:
        call = self._call(request, await request.body())
        arrived, mono = time.time(), time.monotonic()  # no await until recorded: records stay in order
        sending = call.group == "message" and call.route in _SEND_ROUTES and call.instance is not None
        if sending:
            self._enter(call.instance)
        try:
            status, reply, delay_s = self._decide(call)
            c = call
            record = RecordedRequest(
                c.method, c.path, c.route, c.instance, c.headers, c.body, status, arrived, mono
            )
            with self.lock:
                self._records.append(record)
            if delay_s > 0:
                await asyncio.sleep(delay_s)
        finally:
            if sending:
                self._leave(call.instance)
        answer: Response = reply if isinstance(reply, Response) else JSONResponse(reply, status_code=status)
        answer.headers.update(self.behaviour.reply_headers)
        return answer

    @staticmethod
    def _call(request: Request, raw: bytes) -> _Call:
        path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        parts = path.strip("/").split("/")
        group, route, instance = "", "", None
        if len(parts) == 3:
            group, route, instance = parts[0], parts[1], unquote(parts[2])
        elif len(parts) == 2:
            group, route = parts
        headers = {name.lower(): value for name, value in request.headers.items()}
        query = dict(request.query_params)
        return _Call(request.method, path, group, route, instance, headers, body, query)

    def _enter(self, instance: str | None) -> None:
        with self.lock:
            for key in (instance, None):
                self._in_flight[key] += 1
                self._max_in_flight[key] = max(self._max_in_flight[key], self._in_flight[key])

    def _leave(self, instance: str | None) -> None:
        with self.lock:
            for key in (instance, None):
                self._in_flight[key] -= 1

    # ---- what Evolution would answer -------------------------------------------------------------------
    def _decide(self, call: _Call) -> tuple[int, Any, float]:
        """(status, JSON body or a Response, seconds to wait before answering)."""
        with self.lock:
            b = self.behaviour
            if b.proxy_error is not None:
                return b.proxy_error, _gateway_page(b.proxy_error), 0.0
            if b.license_gate:
                return 503, _LICENSE_REQUIRED, 0.0
            if call.method == "GET" and call.group == "instance" and call.route == "fetchInstances":
                return self._fetch_instances(b, call)
            if call.group == "webhook" and call.instance is not None:
                return self._webhook(b, call)
            known = (call.method == "POST" and call.group == "message" and call.route in _SEND_ROUTES) or (
                call.method == "GET" and call.group == "instance" and call.route == "connectionState"
            )
            if call.instance is None or not known:
                return 404, _envelope(404, [f"Cannot {call.method} {call.path}"]), 0.0
            # Guard order of the real server: instance exists, then the key.
            if b.instances is not None and call.instance not in b.instances:
                return 404, _envelope(404, [f'The "{call.instance}" instance does not exist']), 0.0
            if not _key_ok(b, call):
                return 401, _envelope(401, "Unauthorized"), 0.0
            if call.route == "connectionState":
                return 200, {"instance": _connection_state(b, call.instance)}, b.latency_s
            return self._send(b, call, call.instance)

    def _send(self, b: Behaviour, call: _Call, instance: str) -> tuple[int, Any, float]:
        status, reply = self._send_outcome(b, call.route, instance, call.body)
        delay_s = b.latency_s
        if status == 201:
            delay_s += b.hang_s
            if b.honour_delay and isinstance(call.body.get("delay"), int):
                delay_s += call.body["delay"] / 1000
        return status, reply, delay_s

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
        drawn = self._random_failure(b)
        if drawn is not None:
            return drawn
        if number in b.hang_up:
            return _HANG_UP, _HangUp()
        if b.fail_first.get(number, 0) > 0:
            b.fail_first[number] -= 1
            return 500, _envelope(500, "Internal Server Error (stub: fail_first)")
        self._counter += 1
        return 201, self._message(route, number, body, self._counter)

    def _random_failure(self, b: Behaviour) -> tuple[int, Any] | None:
        if b.closed_rate <= 0 and b.transient_rate <= 0:
            return None
        draw = self._rng.random()
        if draw < b.closed_rate:
            return 400, _envelope(400, ["Error: Connection Closed"])
        if draw < b.closed_rate + b.transient_rate:
            return 500, _envelope(500, "Internal Server Error (stub: transient_rate)")
        return None

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

    def _webhook(self, b: Behaviour, call: _Call) -> tuple[int, Any, float]:
        # GET /webhook/find/{instance} and POST /webhook/set/{instance} (body nested under `webhook`).
        if not _key_ok(b, call):
            return 401, _envelope(401, "Unauthorized"), 0.0
        assert call.instance is not None
        if call.method == "GET" and call.route == "find":
            return 200, self._webhooks.get(call.instance, {}), b.latency_s
        if call.method == "POST" and call.route == "set" and isinstance(call.body, dict):
            hook = call.body.get("webhook")
            if not isinstance(hook, dict) or not hook.get("url"):
                return 400, _envelope(400, [['instance requires property "webhook"']]), 0.0
            stored = {"instanceId": self._instance_id, **hook}
            self._webhooks[call.instance] = stored
            return 201, stored, b.latency_s
        return 404, _envelope(404, [f"Cannot {call.method} {call.path}"]), 0.0

    def webhooks(self) -> dict[str, dict[str, Any]]:
        """The webhook each instance was given through `POST /webhook/set`."""
        with self.lock:
            return dict(self._webhooks)

    def _fetch_instances(self, b: Behaviour, call: _Call) -> tuple[int, Any, float]:
        # No instance in the path, so only the key guard; with `instanceName` an unknown name is a 404.
        if not _key_ok(b, call):
            return 401, _envelope(401, "Unauthorized"), 0.0
        wanted = call.query.get("instanceName")
        if b.instances is not None:
            names = set(b.instances)
        else:  # every name exists: list the ones this stub has heard of
            names = b.closed_instances | b.closed_at_send | b.unloaded_instances
            names |= {r.instance for r in self._records if r.instance is not None}
        if wanted is not None:
            if b.instances is not None and wanted not in b.instances:
                return 404, _envelope(404, [f'Instance "{wanted}" not found']), 0.0
            names = {wanted}
        sent = Counter(r.instance for r in self._records if r.status == 201 and r.route in _SEND_ROUTES)
        return 200, [self._instance_row(b, name, sent[name]) for name in sorted(names)], b.latency_s

    def _instance_row(self, b: Behaviour, name: str, sent: int) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"evolution-stub:{name}")),
            "name": name,
            "connectionStatus": "close" if name in b.closed_instances else "open",
            "ownerJid": "5511900000000@s.whatsapp.net",
            "profileName": "Stub",
            "profilePicUrl": None,
            "integration": "WHATSAPP-BAILEYS",
            "number": None,
            "token": str(uuid.uuid5(uuid.NAMESPACE_URL, f"evolution-stub-token:{name}")).upper(),
            "clientName": "evolution_exchange",
            "disconnectionReasonCode": None,
            "disconnectionAt": None,
            "createdAt": now,
            "updatedAt": now,
            "Setting": {"rejectCall": False, "groupsIgnore": False, "alwaysOnline": False},
            "_count": {"Message": sent, "Contact": 0, "Chat": 0},
        }


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
    parser.add_argument("--hang-s", type=float, default=0.0)
    parser.add_argument("--proxy-error", type=int, default=None, metavar="STATUS")
    parser.add_argument("--closed-rate", type=float, default=0.0)
    parser.add_argument("--transient-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
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
        hang_s=args.hang_s,
        proxy_error=args.proxy_error,
        closed_rate=args.closed_rate,
        transient_rate=args.transient_rate,
        seed=args.seed,
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
