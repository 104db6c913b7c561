"""A local QStash for tests and benchmarks (Starlette + uvicorn), following the documented contract.

Publish and batch, `Upstash-Not-Before` and `Upstash-Delay`, flow-control parallelism per key, retries
with `Upstash-Retried`, deduplication ids, optional at-least-once duplicate deliveries, failure callbacks,
and signatures made as QStash makes them (HS256 JWT over the body's SHA-256, signed with the current key).

In-process: `with QStashStub(token="T") as qs: qs.url`. Standalone: `python -m tests.stubs.qstash_stub
--port 0` prints `QSTASH_STUB_URL=http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import heapq
import itertools
import json
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.stubs.serving import ThreadedServer

HOST = "127.0.0.1"
DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
_DELAY = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FLOW = re.compile(r"^\s*(parallelism|rate|period)\s*=\s*([0-9a-z]+)\s*$")


def sign(key: str, url: str, raw: bytes, *, now: float | None = None, **overrides: Any) -> str:
    """An `Upstash-Signature` as QStash makes it; `overrides` change claims (for forged or expired ones)."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": "Upstash",
        "sub": url,
        "exp": int(now) + 300,
        "nbf": 0,  # QStash has sent nbf 0 since September 2024
        "iat": int(now),
        "jti": f"jwt_{uuid.uuid4().hex}",
        "body": base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode(),  # padded, as QStash does
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "JWT"})


def parse_delay(text: str) -> float:
    """`Upstash-Delay`: `30s`, `2m`, `1d10h30m`; a bare number is seconds."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    parts = _DELAY.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid Upstash-Delay {text!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def parse_flow(value: str) -> int:
    """The parallelism of an `Upstash-Flow-Control-Value`; rate/period are accepted and not enforced."""
    parallelism = 0
    for part in value.split(","):
        match = _FLOW.match(part)
        if match is None:
            raise ValueError(
                "Upstash-Flow-Control-Value should be either rate=X or parallelism=Y, "
                "or both as comma-separated values"
            )
        if match.group(1) == "parallelism":
            parallelism = int(match.group(2))
    return parallelism


@dataclass
class Message:
    """One accepted message: where it goes, what it carries, and how QStash treats it."""

    id: str
    destination: str
    body: bytes
    headers: dict[str, str]  # as published (Upstash-* and Content-Type)
    forward: dict[str, str]
    retries: int
    not_before: float
    flow_key: str | None
    parallelism: int
    failure_callback: str | None
    dedup_id: str | None
    created_at: float
    retried: int = 0
    state: str = "scheduled"  # scheduled, delivered, failed


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as the stub made it; `duplicate` marks an at-least-once extra delivery."""

    message_id: str
    retried: int
    status: int
    started: float
    ended: float
    flow_key: str | None
    duplicate: bool = False


@dataclass
class Behaviour:
    token: str = DEV_TOKEN
    current_key: str = DEV_CURRENT_KEY
    next_key: str = DEV_NEXT_KEY
    sign_with: str = "current"  # or "next": as during a key rotation
    retry_delay_s: float = (
        0.05  # between attempts (real QStash: e^(2.5n) s); Retry-After is capped to it x 10
    )
    duplicate_rate: float = 0.0  # share of deliveries also delivered a second time, concurrently
    reject_dedup_ids: set[str] = field(default_factory=set)  # batch items answered with an error
    reject_every: int = 0  # every Nth batch item (counted over all calls) is answered with an error
    fail_batches: int = 0  # the next N batch calls answer 500
    rate_limit_batches: int = 0  # the next N batch calls answer 429 (burst limit, reset in 1 s)
    unauthorized: bool = False  # every call answers 401, as with a wrong token
    honour_not_before: bool = True
    callback_retries: int = 0  # a failure callback that is not answered 2xx is tried again this many times
    callback_retry_s: float = 0.5
    hold: bool = False  # accept messages but deliver none until set back to False
    delivery_timeout_s: float = 30.0


class QStashStub:
    """The stub server in a daemon thread with its own event loop; deliveries run in that loop too."""

    def __init__(self, *, port: int = 0, seed: int = 0, **behaviour: Any) -> None:
        self.behaviour = Behaviour(**behaviour)
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self._port = port or _free_port()
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self.messages: dict[str, Message] = {}
        self.dedup: dict[str, str] = {}
        self.calls: list[dict[str, Any]] = []  # every publish/batch call: path, headers, raw body, status
        self.attempts: list[Attempt] = []
        self.callbacks: list[dict[str, Any]] = []
        self._heap: list[tuple[float, int, str]] = []
        self._in_flight: dict[str, int] = defaultdict(int)
        self._max_in_flight: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, list[str]] = defaultdict(list)
        self._active = 0
        self._items_seen = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ThreadedServer | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    def start(self) -> QStashStub:
        app = Starlette(
            routes=[
                Route("/v2/batch", self._batch, methods=["POST"]),
                Route("/v2/publish/{destination:path}", self._publish, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )
        config = uvicorn.Config(app, host=HOST, port=self._port, log_level="warning", lifespan="on")
        server = self._server = ThreadedServer(config, "qstash-stub")
        server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> QStashStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.behaviour.delivery_timeout_s)
        task = asyncio.create_task(self._scheduler())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._client.aclose()

    # ---- introspection ---------------------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                if not hasattr(self.behaviour, name):
                    raise AttributeError(f"no behaviour {name!r}")
                setattr(self.behaviour, name, value)
        self._poke()

    def batch_items(self) -> list[dict[str, Any]]:
        """Every message of every accepted /v2/batch call, in order, as sent."""
        with self.lock:
            calls = [c for c in self.calls if c["path"] == "/v2/batch" and c["status"] == 200]
        return [item for c in calls for item in json.loads(c["body"])]

    def max_in_flight(self, flow_key: str) -> int:
        with self.lock:
            return self._max_in_flight.get(flow_key, 0)

    def flow_keys(self) -> list[str]:
        with self.lock:
            return sorted(self._max_in_flight)

    def idle(self) -> bool:
        """Nothing scheduled, waiting or being delivered."""
        with self.lock:
            return self._active == 0 and not self._heap and not any(self._waiting.values())

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"qstash stub still busy after {timeout} s")
            time.sleep(0.02)

    def states(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = defaultdict(int)
            for m in self.messages.values():
                counts[m.state] += 1
            return dict(counts)

    # ---- publishing ------------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        return (
            not self.behaviour.unauthorized
            and request.headers.get("authorization") == f"Bearer {self.behaviour.token}"
        )

    async def _publish(self, request: Request) -> Response:
        raw = await request.body()
        if not self._authorised(request):
            return self._record_call(request, raw, JSONResponse({"error": "unauthorized"}, 401))
        destination = request.path_params["destination"]
        if request.url.query:
            destination += "?" + request.url.query
        try:
            answer, status = self._accept(destination, dict(request.headers), raw)
        except ValueError as exc:
            return self._record_call(request, raw, JSONResponse({"error": str(exc)}, 400))
        return self._record_call(request, raw, JSONResponse(answer, status))

    async def _batch(self, request: Request) -> Response:
        raw = await request.body()
        b = self.behaviour
        if not self._authorised(request):
            return self._record_call(request, raw, JSONResponse({"error": "unauthorized"}, 401))
        with self.lock:
            if b.rate_limit_batches > 0:
                b.rate_limit_batches -= 1
                headers = {
                    "Burst-RateLimit-Limit": "100",
                    "Burst-RateLimit-Remaining": "0",
                    "Burst-RateLimit-Reset": str(int(time.time()) + 1),
                }
                return self._record_call(request, raw, JSONResponse({"error": "rate limited"}, 429, headers))
            if b.fail_batches > 0:
                b.fail_batches -= 1
                return self._record_call(request, raw, JSONResponse({"error": "internal"}, 500))
        try:
            items = json.loads(raw)
            assert isinstance(items, list)
        except (ValueError, AssertionError):
            return self._record_call(request, raw, JSONResponse({"error": "body must be an array"}, 400))
        answers: list[dict[str, Any]] = []
        for item in items:
            headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
            self._items_seen += 1
            every = b.reject_every
            if headers.get("upstash-deduplication-id") in b.reject_dedup_ids or (
                every and self._items_seen % every == 0
            ):
                answers.append({"error": "stub: rejected on purpose"})
                continue
            body = item.get("body")
            data = body.encode() if isinstance(body, str) else b""
            try:
                answer, _ = self._accept(str(item.get("destination", "")), headers, data)
            except ValueError as exc:
                answers.append({"error": str(exc)})
                continue
            answers.append(answer)
        return self._record_call(request, raw, JSONResponse(answers, 200))

    def _record_call(self, request: Request, raw: bytes, response: JSONResponse) -> JSONResponse:
        with self.lock:
            self.calls.append(
                {
                    "path": request.url.path,
                    "headers": dict(request.headers),
                    "body": raw,
                    "status": response.status_code,
                }
            )
        return response

    def _accept(self, destination: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], int]:
        h = {k.lower(): v for k, v in headers.items()}
        if not destination.startswith(("http://", "https://")):
            raise ValueError(f"invalid destination {destination!r}")
        now = time.time()
        ready = now
        if "upstash-delay" in h:
            ready = now + parse_delay(h["upstash-delay"])
        if "upstash-not-before" in h:  # wins over the delay, as documented
            ready = float(int(h["upstash-not-before"]))
        parallelism = parse_flow(h["upstash-flow-control-value"]) if "upstash-flow-control-value" in h else 0
        dedup = h.get("upstash-deduplication-id")
        with self.lock:
            if dedup is not None and dedup in self.dedup:
                return {"messageId": self.dedup[dedup], "deduplicated": True}, 202
            message = Message(
                id=f"msg_{next(self._ids):08d}",
                destination=destination,
                body=body,
                headers={k: v for k, v in h.items() if k.startswith("upstash-") or k == "content-type"},
                forward={
                    k[len("upstash-forward-") :]: v for k, v in h.items() if k.startswith("upstash-forward-")
                },
                retries=int(h.get("upstash-retries", "3")),
                not_before=ready if self.behaviour.honour_not_before else now,
                flow_key=h.get("upstash-flow-control-key"),
                parallelism=parallelism,
                failure_callback=h.get("upstash-failure-callback"),
                dedup_id=dedup,
                created_at=now,
            )
            self.messages[message.id] = message
            if dedup is not None:
                self.dedup[dedup] = message.id
            heapq.heappush(self._heap, (message.not_before, next(self._seq), message.id))
        self._poke()
        return {"messageId": message.id, "deduplicated": False}, 200

    def _poke(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- delivering ------------------------------------------------------------------------------------
    async def _scheduler(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            wait = 1.0
            with self.lock:
                now = time.time()
                due: list[Message] = []
                while self._heap and self._heap[0][0] <= now and not self.behaviour.hold:
                    _, _, mid = heapq.heappop(self._heap)
                    due.append(self.messages[mid])
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                for message in due:
                    self._admit(message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))

    def _admit(self, message: Message) -> None:
        """Start the delivery, or queue it behind its flow-control key. Called with the lock held."""
        key = message.flow_key
        if key is not None and message.parallelism > 0 and self._in_flight[key] >= message.parallelism:
            self._waiting[key].append(message.id)
            return
        if key is not None:
            self._in_flight[key] += 1
            self._max_in_flight[key] = max(self._max_in_flight[key], self._in_flight[key])
        self._active += 1
        asyncio.get_running_loop().create_task(self._deliver(message))

    def _release(self, message: Message) -> None:
        """A delivery ended: free its flow-control slot and admit the next waiting message. Lock held."""
        self._active -= 1
        key = message.flow_key
        if key is None:
            return
        self._in_flight[key] -= 1
        if self._waiting[key]:
            self._admit(self.messages[self._waiting[key].pop(0)])

    async def _deliver(self, message: Message) -> None:
        try:
            duplicate = None
            with self.lock:
                if self.behaviour.duplicate_rate and self.rng.random() < self.behaviour.duplicate_rate:
                    duplicate = asyncio.create_task(self._attempt(message, duplicate=True))
            status, headers = await self._attempt(message)
            if duplicate is not None:
                await duplicate
            await self._after(message, status, headers)
        finally:
            with self.lock:
                self._release(message)
            self._poke()

    async def _attempt(self, message: Message, *, duplicate: bool = False) -> tuple[int, httpx.Headers]:
        assert self._client is not None
        b = self.behaviour
        key = b.current_key if b.sign_with == "current" else b.next_key
        headers = {
            **message.forward,
            "User-Agent": "Upstash-QStash",
            "Content-Type": message.headers.get("content-type", "application/octet-stream"),
            "Upstash-Signature": sign(key, message.destination, message.body),
            "Upstash-Retried": str(message.retried),
            "Upstash-Message-Id": message.id,
        }
        started = time.monotonic()
        try:
            response = await self._client.post(message.destination, content=message.body, headers=headers)
            status, answer_headers = response.status_code, response.headers
        except httpx.HTTPError:
            status, answer_headers = 0, httpx.Headers()
        with self.lock:
            self.attempts.append(
                Attempt(
                    message.id,
                    message.retried,
                    status,
                    started,
                    time.monotonic(),
                    message.flow_key,
                    duplicate,
                )
            )
        return status, answer_headers

    async def _after(self, message: Message, status: int, headers: httpx.Headers) -> None:
        if 200 <= status < 300:
            message.state = "delivered"
            return
        non_retryable = status == 489 and headers.get("upstash-nonretryable-error", "").lower() == "true"
        if not non_retryable and message.retried < message.retries:
            message.retried += 1
            delay = self.behaviour.retry_delay_s
            hint = headers.get("retry-after", "")
            if hint.isdigit():  # honoured, but scaled down: tests should not wait real seconds
                delay = min(float(hint), 10 * delay)
            with self.lock:
                heapq.heappush(self._heap, (time.time() + delay, next(self._seq), message.id))
            return
        message.state = "failed"
        if message.failure_callback:
            await self._failure_callback(message, status)

    async def _failure_callback(self, message: Message, status: int) -> None:
        assert self._client is not None
        payload = {
            "status": status,
            "header": {},
            "body": base64.b64encode(b"").decode(),
            "retried": message.retried,
            "maxRetries": message.retries,
            "dlqId": f"dlq_{message.id}",
            "sourceMessageId": message.id,
            "url": message.destination,
            "method": "POST",
            "sourceHeader": {k: [v] for k, v in message.forward.items()},
            "sourceBody": base64.b64encode(message.body).decode(),
            "notBefore": int(message.not_before * 1000),
            "createdAt": int(message.created_at * 1000),
        }
        raw = json.dumps(payload).encode()
        url = message.failure_callback or ""
        b = self.behaviour
        key = b.current_key if b.sign_with == "current" else b.next_key
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Upstash-QStash",
            "Upstash-Signature": sign(key, url, raw),
        }
        for attempt in range(1 + b.callback_retries):
            if attempt:
                await asyncio.sleep(b.callback_retry_s)
            try:
                response = await self._client.post(url, content=raw, headers=headers)
                answer = response.status_code
            except httpx.HTTPError:
                answer = 0
            with self.lock:
                self.callbacks.append({"message_id": message.id, "status": answer, "payload": payload})
            if 200 <= answer < 300:
                return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stubs.qstash_stub", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEV_TOKEN)
    parser.add_argument("--current-key", default=DEV_CURRENT_KEY)
    parser.add_argument("--next-key", default=DEV_NEXT_KEY)
    parser.add_argument("--retry-delay-s", type=float, default=0.05)
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit by itself after this long")
    args = parser.parse_args(argv)
    stub = QStashStub(
        port=args.port,
        token=args.token,
        current_key=args.current_key,
        next_key=args.next_key,
        retry_delay_s=args.retry_delay_s,
        duplicate_rate=args.duplicate_rate,
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with stub:
        sys.stdout.write(f"QSTASH_STUB_URL={stub.url}\n")
        sys.stdout.flush()
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
