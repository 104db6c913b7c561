"""Turn Evolution API error replies and network failures into dispara's exception tree.

Pure functions over `httpx.Response` / `httpx.TransportError`, so every row of the contract is testable alone.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from dispara.errors import PermanentServiceError, ServiceError, TransientServiceError
from dispara.providers.base import (
    CredentialsRejectedError,
    InstanceUnavailableError,
    NoAnswerError,
    NotOnWhatsAppError,
    ServerNotActivatedError,
    ServerUnreachableError,
    UnknownInstanceError,
)
from dispara.redact import scrub

MAX_TEXT = 300  # server text is quoted in one-line messages and stored in message_logs.error_message

# 408 and 425 say "try again"; 429 is WhatsApp/proxy rate limiting. Every other 4xx is the request's fault.
_TRANSIENT_4XX = frozenset({408, 425, 429})
# Substrings of a 400 `["Error: ..."]` that are Baileys/WhatsApp hiccups, not a bad message (contract §8).
_TRANSIENT_400_MARKERS = ("rate-overlimit", "timed out")
_UNKNOWN_INSTANCE = re.compile(r'instance does not exist|^Instance ".*" not found', re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
# Raised by httpx before any byte of the request was written (connecting, waiting for a pooled connection,
# a proxy refusing the tunnel): the server cannot have acted on the request. Every other transport error
# may come after the request was written, and then the message may have gone out.
NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
_MAYBE_DELIVERED = " (the message may have been delivered)"
# What a reverse proxy answers, with a page of its own, when nothing listens behind it.
_PROXY_DOWN = frozenset({502, 503})


class ApiKeyRejectedError(CredentialsRejectedError):
    """401 from Evolution: every message on that server would fail the same way, so it is a config error."""


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten_message(value: object) -> str:
    """`response.message` may be str | list[str] | list[list[str]] | list[dict]: make it one readable line."""
    parts: list[str] = []

    def walk(item: object) -> None:
        if isinstance(item, str):
            if item.strip():
                parts.append(item.strip())
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub)
        elif item is not None:
            parts.append(json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str))

    walk(value)
    return one_line("; ".join(parts))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or garbled."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; some servers omit the zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_json(content: bytes) -> Any:
    """The JSON body, or None when it is empty or not JSON (an HTML page from a proxy, say)."""
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:  # includes UnicodeDecodeError
        return None


def _describe_non_json(response: httpx.Response) -> str:
    try:
        raw = response.content.decode("utf-8", errors="replace")
    except httpx.ResponseNotRead:
        raw = ""
    title = _TITLE.search(raw)
    if title:
        raw = title.group(1)
    elif "<" in raw and ">" in raw:
        raw = _TAG.sub(" ", raw)
    text = one_line(raw, 120)
    return text or response.reason_phrase or "no body"


def _redact(text: str, secret: str) -> str:
    # Belt and braces: a server or proxy that echoes the request headers must not leak the key.
    return scrub(text, [secret])


def error_text(body: Any, response: httpx.Response) -> str:
    """The human part of an error reply: `response.message` of the envelope, else something readable."""
    if isinstance(body, dict):
        inner = body.get("response")
        if isinstance(inner, dict) and "message" in inner:
            return flatten_message(inner["message"]) or response.reason_phrase
        for key in ("message", "error"):
            if body.get(key):
                return flatten_message(body[key])
        return one_line(json.dumps(body, ensure_ascii=False, default=str))
    if body is not None:
        return flatten_message(body) or response.reason_phrase
    return _describe_non_json(response)


def _not_on_whatsapp(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
        return None
    message = body["response"].get("message")
    items = message if isinstance(message, list) else [message]
    for item in items:
        if isinstance(item, dict) and item.get("exists") is False:
            return item
    return None


def classify_response(
    response: httpx.Response, *, instance: str, number: str | None, secret: str
) -> ServiceError:
    """The exception for a non-2xx Evolution reply (docs/evolution.md)."""
    status = response.status_code
    body = parse_json(response.content)
    text = _redact(error_text(body, response), secret)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 401:
        return ApiKeyRejectedError(
            "Evolution API key rejected (401): check EVOLUTION_API_KEY", instance=instance, status=401
        )
    if status == 503 and isinstance(body, dict) and body.get("code") == "LICENSE_REQUIRED":
        register = body.get("register_url")
        hint = f"; register at {_redact(str(register), secret)}" if isinstance(register, str) else ""
        return ServerNotActivatedError(
            f"Evolution server not activated (license required){hint}", instance=instance
        )
    if status == 404:
        return _not_found(text, instance)
    down = _instance_down(status, text, instance, retry_after)
    if down is not None:
        return down
    if status == 400:
        return _bad_request(body, text, number, secret)
    if status in _TRANSIENT_4XX or status >= 500:
        return _transient_status(status, body, text, retry_after, instance)
    if 300 <= status < 400:
        where = _redact(response.headers.get("location", "?"), secret)
        return PermanentServiceError(
            f"Evolution redirected (HTTP {status}) to {where}; set EVOLUTION_API_URL to the final address",
            status=status,
        )
    return PermanentServiceError(f"Evolution refused the request (HTTP {status}): {text}", status=status)


def _not_found(text: str, instance: str) -> ServiceError:
    if _UNKNOWN_INSTANCE.search(text):
        return UnknownInstanceError(
            f"instance {instance!r} does not exist on the Evolution server (404: {text})",
            instance=instance,
        )
    return PermanentServiceError(
        f"Evolution route not found (404: {text}); is EVOLUTION_API_URL an Evolution API v2 server?",
        status=404,
    )


def _instance_down(
    status: int, text: str, instance: str, retry_after: float | None
) -> InstanceUnavailableError | None:
    """The replies that say the instance, not the message, is the problem (pause it), else None."""
    lowered = text.lower()
    if status in (400, 500) and "connection closed" in lowered:
        what = "is not connected to WhatsApp"
    elif status == 500 and "cannot read properties of undefined" in lowered:
        # The instance is in Evolution's DB but not loaded in memory (#1412, #2583): restart it.
        what = "is not loaded on the Evolution server"
    else:
        return None
    return InstanceUnavailableError(
        f"instance {instance!r} {what} (HTTP {status}: {text})",
        instance=instance,
        status=status,
        retry_after=retry_after,
    )


def _bad_request(body: Any, text: str, number: str | None, secret: str) -> ServiceError:
    missing = _not_on_whatsapp(body)
    if missing is not None:
        shown = _redact(str(missing.get("number") or number or "?"), secret)
        return NotOnWhatsAppError(f"number {shown} is not on WhatsApp", number=shown, status=400)
    lowered = text.lower()
    if any(marker in lowered for marker in _TRANSIENT_400_MARKERS):
        return TransientServiceError(f"Evolution: {_strip_error_prefix(text)} (HTTP 400)", status=400)
    if 'requires property "textmessage"' in lowered or 'requires property "mediamessage"' in lowered:
        text += " (this looks like an Evolution v1 server; dispara speaks the v2 API)"
    return PermanentServiceError(f"Evolution rejected the message: {_strip_error_prefix(text)}", status=400)


def _transient_status(
    status: int, body: Any, text: str, retry_after: float | None, instance: str
) -> TransientServiceError:
    if status == 504:
        # A gateway gave up waiting for Evolution, usually after passing the request on: maybe sent.
        return NoAnswerError(
            f"Evolution answered HTTP 504: {text}{_MAYBE_DELIVERED}", maybe_delivered=True, status=504
        )
    if status in _PROXY_DOWN and not isinstance(body, dict):
        # A proxy's own page: Evolution behind it is down and got nothing, so no attempt is spent.
        return ServerUnreachableError(
            f"Evolution is unreachable behind its proxy (HTTP {status}: {text})",
            instance=instance,
            status=status,
            retry_after=retry_after,
        )
    return TransientServiceError(
        f"Evolution answered HTTP {status}: {text}", status=status, retry_after=retry_after
    )


def _strip_error_prefix(text: str) -> str:
    # The send `catch` wraps every failure as "Error: <text>"; the prefix adds nothing for a reader.
    return re.sub(r"(^|; )Error: ", r"\1", text)


def classify_transport_error(
    exc: httpx.TransportError, *, what: str, secret: str, instance: str | None = None
) -> TransientServiceError:
    """Network failure or timeout. What never left (refused, DNS, TLS, a connect timeout) is, for an
    instance's request, `ServerUnreachableError`: the instance rests and no attempt is spent. Anything after
    the request may have been written is `NoAnswerError(maybe_delivered=True)`.
    """
    detail = _redact(one_line(str(exc) or type(exc).__name__, 160), secret)
    never_sent = isinstance(exc, NEVER_SENT)
    if isinstance(exc, httpx.TimeoutException):
        text = f"Evolution timed out on {what} ({type(exc).__name__})"
    else:
        text = f"cannot reach Evolution for {what}: {detail}"
    if never_sent and instance:
        return ServerUnreachableError(text, instance=instance)
    return NoAnswerError(text if never_sent else text + _MAYBE_DELIVERED, maybe_delivered=not never_sent)
