"""The ASGI app of `dispara serve` (Starlette): routes, bearer auth, body limits, request logs.

Database and sending work runs in Starlette's thread pool; handlers are the plain functions of
`deliveries.py` and the queue, so the HTTP layer only parses, checks and answers.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from dispara.config import Settings, reveal
from dispara.db import Connection
from dispara.db.connect import connect, locate
from dispara.errors import ConfigError, DisparaError
from dispara.providers.base import Sender
from dispara.queue import handlers
from dispara.queue.backoff import RetryPolicy
from dispara.queue.webhooks import JobEvents, WebhookDispatcher, tenant_target
from dispara.queue.worker import new_worker_id
from dispara.receipts.setup import mask_secret_path
from dispara.server import evolution_hooks
from dispara.server.deliveries import Answer, BadDelivery, Deliveries, DeliveryBody
from dispara.server.drains import DrainGate
from dispara.server.signature import InvalidSignature, verify
from dispara.supabase import pooler
from dispara.transports.qstash import FAILED_PATH, MESSAGES_PATH, endpoint

log = logging.getLogger("dispara.serve")
access = logging.getLogger("dispara.serve.access")

LogFormat = Literal["text", "json"]
POOL_SIZE = 16


class _TooLarge(Exception):
    pass


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


# ---- request bodies of the publish routes ------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TtsPublish(_Body):
    """Text to speak, and optionally the WhatsApp number (and instance) that gets it as a voice note."""

    text: str = Field(min_length=1, max_length=5000)
    voice_id: str | None = None
    phone_number: str | None = None
    instance_name: str | None = None


class AsrPublish(_Body):
    """Audio to transcribe (a URL or a storage path), and optionally who gets the text back."""

    audio_url: str = Field(min_length=1)
    language: str | None = None
    phone_number: str | None = None
    instance_name: str | None = None


AUDIO_ROUTES: dict[str, tuple[str, type[_Body]]] = {
    "/audio/tts/publish": ("text-to-speech", TtsPublish),
    "/audio/asr/publish": ("transcribe-audio", AsrPublish),
}


def _field_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


class Server:
    """State shared by the routes: settings, the connection pool, the sender, the delivery handler."""

    def __init__(self, settings: Settings, *, sender: Sender | None = None) -> None:
        api_key = reveal(settings.server.api_key)
        if not api_key:
            raise ConfigError("dispara serve needs DISPARA_API_KEY (server.api_key): it will not run open")
        self.settings = settings
        self.api_key = api_key
        self.keys = [
            k.get_secret_value()
            for k in (settings.qstash.current_signing_key, settings.qstash.next_signing_key)
            if k
        ]
        base = settings.server.signature_url or settings.server.public_url
        self.messages_url = endpoint(base, MESSAGES_PATH) if base else None
        self.failed_url = endpoint(base, FAILED_PATH) if base else None
        self.given_sender = sender
        self.pool: ConnectionPool[Connection] | None = None
        self.sender: Sender | None = None
        self.webhooks = WebhookDispatcher(
            settings, worker=f"serve:{new_worker_id()}", policy=RetryPolicy.of(settings.worker)
        )
        self.deliveries: Deliveries | None = None
        self.inbox: evolution_hooks.InboxProcessor | None = None
        self.inbox_writer: evolution_hooks.InboxWriter | None = None
        self.drains = DrainGate()

    def open(self) -> None:
        from dispara.queue.worker import make_sender
        from dispara.tenants import tenant_id

        with connect(self.settings) as conn:  # migrates the embedded database, refuses an old schema
            tenant = tenant_id(conn, self.settings.tenant)
            self.webhooks.configure(tenant_target(self.settings, conn, tenant))
            conn.commit()
        self.tenant = tenant
        self.webhooks.start(tenant)
        dsn = locate(self.settings).dsn
        self.pool = ConnectionPool(
            dsn,
            min_size=2,
            max_size=POOL_SIZE,
            kwargs={"application_name": "dispara-serve", **pooler.connect_options(dsn)},
            open=True,
        )
        self.sender = self.given_sender or make_sender(self.settings, POOL_SIZE * 2)
        events = JobEvents(self.webhooks, campaign_level=self.settings.webhook.campaign_events == "campaign")
        policy = RetryPolicy.of(self.settings.worker)
        ctx = handlers.HandlerContext(self.settings, self.sender, policy, tenant_id=tenant)
        self.deliveries = Deliveries(self.settings, self.pool, ctx, events, tenant)
        self.inbox = evolution_hooks.InboxProcessor(self.pool, tenant, self.settings.evolution, self.sender)
        self.inbox.start()
        self.inbox_writer = evolution_hooks.InboxWriter(self.pool, tenant, self.inbox.wake.set)
        self.inbox_writer.start()
        if not self.settings.evolution.webhook_secret:
            log.warning("no EVOLUTION_WEBHOOK_SECRET set: every Evolution webhook will be refused (401)")
        if not self.keys:
            log.warning("no QSTASH_CURRENT_SIGNING_KEY set: every QStash delivery will be refused (401)")

    def close(self) -> None:
        if self.inbox_writer is not None:
            self.inbox_writer.stop()
        if self.inbox is not None:
            self.inbox.stop()
        if self.deliveries is not None:
            self.deliveries.close()
        self.webhooks.close(5.0)
        if self.pool is not None:
            self.pool.close()
        if self.sender is not None and self.given_sender is None:
            self.sender.close()
        log.info("dispara serve: stopped")

    # ---- helpers ---------------------------------------------------------------------------------------
    async def body(self, request: Request) -> bytes:
        limit = self.settings.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def authorize(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise _Refused(401, "missing or wrong bearer token")

    def signed(self, request: Request, raw: bytes, url: str | None) -> None:
        try:
            verify(
                request.headers.get("upstash-signature"),
                raw,
                keys=self.keys,
                url=url,
                leeway_s=self.settings.qstash.clock_tolerance_s,
            )
        except InvalidSignature as exc:
            log.warning("%s refused: %s", request.url.path, exc)
            raise _Refused(401, f"invalid signature: {exc}") from None

    @property
    def handler(self) -> Deliveries:
        assert self.deliveries is not None, "server not opened"
        return self.deliveries


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def _routes(server: Server) -> list[Route]:
    async def openapi(request: Request) -> Response:
        return JSONResponse(_schemas.get_schema(routes=request.app.routes))

    return [
        *_qstash_routes(server),
        *_audio_routes(server),
        *_operator_routes(server),
        *evolution_hooks.routes(server),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    ]


def _qstash_routes(server: Server) -> list[Route]:
    async def qstash_messages(request: Request) -> Response:
        """
        summary: A QStash delivery of one campaign message (signed; sends it through Evolution)
        responses:
          200: {description: sent, failed for good, held, or already done}
          401: {description: bad, missing or expired Upstash-Signature}
          503: {description: not sent yet; QStash retries}
        """
        raw = await server.body(request)
        server.signed(request, raw, server.messages_url)
        try:
            body = DeliveryBody.parse(raw)
        except BadDelivery as exc:
            return JSONResponse({"error": str(exc)}, 489, headers={"Upstash-NonRetryable-Error": "true"})
        retried_header = request.headers.get("upstash-retried", "0")
        retried = int(retried_header) if retried_header.isdigit() else 0
        return _json(await run_in_threadpool(server.handler.deliver, body, retried))

    async def qstash_failed(request: Request) -> Response:
        """
        summary: QStash's failure callback (signed) - the message's deliveries are exhausted
        responses:
          200: {description: recorded (or nothing to record)}
          401: {description: bad signature}
        """
        raw = await server.body(request)
        server.signed(request, raw, server.failed_url)
        try:
            callback = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "body: not JSON"}, 400)
        if not isinstance(callback, dict):
            return JSONResponse({"error": "body: not a JSON object"}, 400)
        return _json(await run_in_threadpool(server.handler.failed, callback))

    return [
        Route(MESSAGES_PATH, qstash_messages, methods=["POST"]),
        Route(FAILED_PATH, qstash_failed, methods=["POST"]),
    ]


def _audio_routes(server: Server) -> list[Route]:
    def audio(task_type: str, model: type[_Body]) -> Callable[[Request], Awaitable[Response]]:
        async def publish(request: Request) -> Response:
            server.authorize(request)
            raw = await server.body(request)
            try:
                data = model.model_validate_json(raw or b"{}")
            except ValidationError as exc:
                return JSONResponse({"error": _field_error(exc)}, 422)
            job_id = await run_in_threadpool(_enqueue, server, task_type, data.model_dump(exclude_none=True))
            return JSONResponse({"job_id": job_id}, 202)

        publish.__doc__ = f"""
        summary: Queue a {task_type} job (bearer auth); answers at once with its id
        responses:
          202: {{description: queued}}
          422: {{description: a field is missing or wrong}}
        """
        return publish

    return [Route(path, audio(task, model), methods=["POST"]) for path, (task, model) in AUDIO_ROUTES.items()]


def _operator_routes(server: Server) -> list[Route]:
    async def dispatch(request: Request) -> Response:
        """
        summary: Drain due jobs for a bounded time (pg_net / pg_cron call this; bearer auth)
        responses:
          200: {description: what the drain did}
          202: {description: a drain is already running here; it runs once more and takes these jobs}
        """
        server.authorize(request)
        await server.body(request)
        summary = await run_in_threadpool(server.drains.run, lambda: _dispatch(server))
        return JSONResponse(summary, 200) if summary is not None else JSONResponse({"draining": True}, 202)

    async def healthz(request: Request) -> Response:
        """
        summary: Is the database reachable?
        responses:
          200: {description: yes}
          503: {description: no}
        """
        ok = await run_in_threadpool(_db_ok, server)
        return JSONResponse({"ok": ok}, 200 if ok else 503)

    async def campaign(request: Request) -> Response:
        """
        summary: A campaign's progress, the `dispara status --json` document (bearer auth)
        responses:
          200: {description: the snapshot}
          404: {description: no such campaign in this tenant}
        """
        server.authorize(request)
        return JSONResponse(await run_in_threadpool(_snapshot, server, request.path_params["ref"]))

    return [
        Route("/dispatch", dispatch, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/campaigns/{ref}", campaign, methods=["GET"]),
    ]


_schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "dispara serve", "version": "1"}})


def _enqueue(server: Server, task_type: str, data: dict[str, Any]) -> int:
    from dispara.queue.enqueue import enqueue

    assert server.pool is not None
    with server.pool.connection() as conn:
        return enqueue(conn, server.tenant, task_type, data)


def _dispatch(server: Server) -> dict[str, Any]:
    from dispara.queue.worker import run_worker

    summary = run_worker(
        server.settings,
        once=True,
        max_seconds=server.settings.server.dispatch_seconds,
        sender=server.sender,
        all_tenants=server.settings.server.dispatch_all_tenants,
    )
    return asdict(summary)


def _db_ok(server: Server) -> bool:
    assert server.pool is not None
    try:
        with server.pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return False
    return True


def _snapshot(server: Server, ref: str) -> dict[str, Any]:
    from dispara.errors import InputError
    from dispara.status import resolve, snapshot

    assert server.pool is not None
    with server.pool.connection() as conn:
        try:
            campaign_id = resolve(conn, server.tenant, ref)
        except InputError as exc:
            raise _Refused(404, str(exc)) from None
        return snapshot(conn, server.tenant, campaign_id).as_json()


def create_app(
    settings: Settings, *, sender: Sender | None = None, log_format: LogFormat = "text"
) -> Starlette:
    """The app; refuses (ConfigError) to exist without an API key. The pool opens with the app's lifespan."""
    server = Server(settings, sender=sender)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(server.open)
        try:
            yield
        finally:
            await run_in_threadpool(server.close)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return JSONResponse({"error": exc.error}, exc.status)

    async def too_large(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "body too large"}, 413)

    async def crashed(request: Request, exc: Exception) -> Response:
        # Never a stack trace in the answer; the log has the type only for DisparaErrors, a trace otherwise.
        if isinstance(exc, DisparaError):
            log.error("%s %s: %s", request.method, request.url.path, exc)
        else:
            log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "internal error"}, 500)

    app = Starlette(
        routes=_routes(server),
        lifespan=lifespan,
        exception_handlers={_Refused: refused, _TooLarge: too_large, Exception: crashed},
    )
    app.state.server = server
    app.add_middleware(_AccessLog, log_format=log_format)
    return app


class _AccessLog:
    """One line per request: method, path (never the query, which may carry a token), status, duration."""

    def __init__(self, app: Callable[..., Awaitable[None]], log_format: LogFormat) -> None:
        self.app = app
        self.json = log_format == "json"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - started) * 1000
            if self.json:
                line = {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "method": scope["method"],
                    "path": mask_secret_path(scope["path"]),
                    "status": status[0],
                    "ms": round(ms, 2),
                }
                access.info(json.dumps(line, separators=(",", ":")))
            else:
                path = mask_secret_path(scope["path"])
                access.info("%s %s %d %.1fms", scope["method"], path, status[0], ms)
