"""Evolution's webhooks in `dispara serve`: the secret check, the routes, and the inbox processing thread.

A request is answered as soon as its body is in the inbox (one INSERT); the thread processes it after,
so Evolution never waits on receipts, opt-outs or pauses, and a crash in between loses nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import jwt
from psycopg_pool import ConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispara import summary
from dispara.config import EvolutionConfig, reveal
from dispara.db import Connection
from dispara.providers.base import OutgoingMessage, Sender
from dispara.receipts import inbox
from dispara.receipts.setup import PATH as BASE_PATH
from dispara.server.grouped import groups

if TYPE_CHECKING:
    from dispara.server.app import Server

log = logging.getLogger("dispara.serve")

HEADER = "x-dispara-secret"
_IDLE_S = 1.0
_PRUNE_EVERY_S = 3600.0
MAX_GROUP = 1000
_JWT_LEEWAY_S = 30


class WebhookRefused(Exception):
    """The request lacks the webhook secret; the reason is safe to log (it never holds the secret)."""


def check_secret(secret: str | None, headers: dict[str, str], path_secret: str | None) -> None:
    """Accept the secret as a header, as the HS256 bearer JWT Evolution signs with it, or in the path."""
    if not secret:
        raise WebhookRefused("no EVOLUTION_WEBHOOK_SECRET configured")
    expected = secret.encode()
    if path_secret is not None:
        if hmac.compare_digest(path_secret.encode(), expected):
            return
        raise WebhookRefused("wrong secret in the path")
    given = headers.get(HEADER)
    if given is not None:
        if hmac.compare_digest(given.encode(), expected):
            return
        raise WebhookRefused(f"wrong {HEADER} header")
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        _check_jwt(token, secret)
        return
    raise WebhookRefused("no secret: neither header, bearer JWT nor secret path")


def _check_jwt(token: str, secret: str) -> None:
    try:
        # Evolution's clock may run a little ahead of ours: iat in the near future is no forgery.
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=_JWT_LEEWAY_S, options={"require": ["exp", "iat"]}
        )
    except jwt.PyJWTError as exc:
        raise WebhookRefused(f"bearer JWT refused: {type(exc).__name__}") from None
    if claims.get("app") != "evolution" or claims.get("action") != "webhook":
        raise WebhookRefused("bearer JWT is not an Evolution webhook token")


class InboxWriter:
    """Group commit of the inbox: one INSERT and one commit for every body that arrived meanwhile.

    Each request still answers only once its own body is committed; a group that fails fails each of its
    requests (503, so Evolution retries them).
    """

    def __init__(
        self, pool: ConnectionPool[Connection], tenant_id: UUID, on_stored: Callable[[], None]
    ) -> None:
        self.pool, self.tenant_id, self.on_stored = pool, tenant_id, on_stored
        self.items: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="dispara-evolution-inbox-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.items.put(None)
        self.thread.join(timeout)

    def submit(self, raw: bytes, recorded: inbox.Recorded) -> Future[None]:
        done: Future[None] = Future()
        self.items.put(_Pending(raw, recorded, done))
        return done

    def _run(self) -> None:
        for group in groups(self.items, MAX_GROUP):
            self._store(group)

    def _store(self, group: list[_Pending]) -> None:
        try:
            with self.pool.connection() as conn:
                inbox.record_many(conn, self.tenant_id, [(p.raw, p.recorded) for p in group])
        except Exception as exc:
            log.error("recording %d Evolution webhook event(s) failed: %s", len(group), type(exc).__name__)
            for p in group:
                p.done.set_exception(exc)
            return
        for p in group:
            p.done.set_result(None)
        self.on_stored()


@dataclass(frozen=True)
class _Pending:
    raw: bytes
    recorded: inbox.Recorded
    done: Future[None]


class InboxProcessor:
    """A thread that processes the inbox when an event arrives, and every second for waiting receipts."""

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        tenant_id: UUID,
        config: EvolutionConfig,
        sender: Sender | None = None,
    ) -> None:
        self.pool, self.tenant_id, self.config, self.sender = pool, tenant_id, config, sender
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.compactor = summary.Compactor()
        self.thread = threading.Thread(target=self._run, name="dispara-evolution-inbox", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        pruned = 0.0
        while not self.stopping.is_set():
            self.wake.wait(_IDLE_S)
            self.wake.clear()
            try:
                with self.pool.connection() as conn:
                    done = inbox.drain(conn, self.tenant_id, self.config)
                    self.compactor.maybe(conn)
                    if time.monotonic() - pruned > _PRUNE_EVERY_S:
                        inbox.prune(conn)
                        pruned = time.monotonic()
            except Exception:
                # The events stay in the inbox; the next pass takes them again.
                log.exception("processing Evolution webhook events failed; retrying")
                self.stopping.wait(_IDLE_S)
                continue
            self._confirm(done.optouts)

    def _confirm(self, optouts: list[tuple[str, str]]) -> None:
        """The confirmation text, after the opt-outs are committed: at most once per opt-out."""
        text = self.config.optout_confirmation
        if not text or self.sender is None:
            return
        for instance, phone in optouts:
            try:
                self.sender.send(OutgoingMessage(instance, phone, "text", text, None, None, None))
            except Exception as exc:
                log.warning("opt-out confirmation via %s not sent: %s", instance, type(exc).__name__)


def routes(server: Server) -> list[Route]:
    async def webhook(request: Request) -> Response:
        """
        summary: An Evolution API webhook event (secret header, HS256 bearer JWT, or secret path)
        responses:
          200: {description: recorded (processed shortly after)}
          400: {description: not an Evolution event}
          401: {description: no or wrong secret}
        """
        secret = reveal(server.settings.evolution.webhook_secret)
        try:
            check_secret(secret, dict(request.headers), request.path_params.get("secret"))
        except WebhookRefused as exc:
            log.warning("Evolution webhook refused: %s", exc)
            return JSONResponse({"error": "missing or wrong webhook secret"}, 401)
        raw = await server.body(request)
        try:
            _, recorded = inbox.parse_body(raw)
        except inbox.BadEvent as exc:
            return JSONResponse({"error": str(exc)}, 400)
        assert server.inbox_writer is not None, "server not opened"
        try:
            await asyncio.wrap_future(server.inbox_writer.submit(raw, recorded))
        except Exception:
            return JSONResponse({"error": "not recorded, retry"}, 503)
        return JSONResponse({"ok": True, "event": recorded.event})

    return [
        Route(BASE_PATH, webhook, methods=["POST"]),
        Route(BASE_PATH + "/s/{secret}", webhook, methods=["POST"], include_in_schema=False),
        Route(BASE_PATH + "/s/{secret}/{suffix}", webhook, methods=["POST"], include_in_schema=False),
        Route(BASE_PATH + "/{suffix}", webhook, methods=["POST"]),
    ]
