"""Cheap checks of the services dispara talks to: one authenticated request each, nothing spent or sent.

Each `check_*` returns a one-line description on success and raises `CheckFailed` (a `ServiceError`) whose
`hint` tells the operator what to fix. The reply parsers (`elevenlabs_error`, `groq_error`, `storage_error`)
and `storage_headers` are meant for the real clients too (docs/providers.md).

No function here puts a secret in a message: keys only travel in request headers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

import dispara
from dispara.errors import ServiceError, TransientServiceError
from dispara.providers.base import (
    InstanceUnavailableError,
    Sender,
    ServerNotActivatedError,
    ServerUnreachableError,
    UnknownInstanceError,
)
from dispara.providers.evolution_errors import (
    ApiKeyRejectedError,
    classify_response,
    flatten_message,
    one_line,
    parse_json,
)
from dispara.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, job_event, sign
from dispara.redact import public_url

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "CheckFailed",
    "check_elevenlabs",
    "check_evolution_instance",
    "check_evolution_server",
    "check_groq",
    "check_qstash",
    "check_storage",
    "check_webhook",
    "elevenlabs_error",
    "groq_error",
    "is_jwt",
    "ping_event",
    "storage_error",
    "storage_headers",
]

DEFAULT_TIMEOUT_S: Final = 5.0

EVOLUTION_URL_HINT: Final = (
    "check EVOLUTION_API_URL (scheme, host and port of the Evolution API server) and that the server is up"
)
EVOLUTION_KEY_HINT: Final = (
    "set EVOLUTION_API_KEY to the server's global key (AUTHENTICATION_API_KEY in its .env)"
)

_JWT: Final = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
# Storage error codes that mean "this key may not do that", whatever the body's statusCode says.
_STORAGE_AUTH_CODES: Final = frozenset({"AccessDenied", "InvalidJWT", "Unauthorized", "InvalidSignature"})


class CheckFailed(ServiceError):
    """A health check failed; `hint` is one line on what to do about it ("" when there is nothing to add)."""

    def __init__(
        self, message: str, *, hint: str = "", status: int | None = None, transient: bool = False
    ) -> None:
        super().__init__(message, transient=transient, status=status)
        self.hint = hint


# ---- HTTP plumbing -----------------------------------------------------------------------------------


def _request(
    method: str,
    base: str,
    path: str = "",
    *,
    service: str,
    url_hint: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """One request to `base + path` with a short timeout; network failures become `CheckFailed` naming the
    public part of `base` only (no credentials, query or path beyond it)."""
    url = base.strip().rstrip("/") + path if path else base.strip()
    shown = public_url(base)
    for value in (headers or {}).values():
        if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            # httpx would quote the illegal value in its error: refuse it here without echoing it.
            raise CheckFailed(
                f"the {service} key contains spaces or control characters",
                hint="set the key again without stray spaces or line breaks",
            )
    try:
        with httpx.Client(
            timeout=timeout, headers={"user-agent": f"dispara/{dispara.__version__}"}, follow_redirects=False
        ) as client:
            return client.request(method, url, headers=headers, content=content)
    except httpx.TimeoutException:
        raise CheckFailed(
            f"{service} did not answer within {timeout:g} s ({shown})", hint=url_hint, transient=True
        ) from None
    except httpx.TransportError as exc:
        reason = one_line(str(exc) or type(exc).__name__, 160)
        raise CheckFailed(
            f"cannot reach {service} at {shown}: {reason}", hint=url_hint, transient=True
        ) from None
    except httpx.InvalidURL:
        raise CheckFailed(f"{service} URL {shown!r} is not a valid URL", hint=url_hint) from None


def _body_text(response: httpx.Response, limit: int = 160) -> str:
    raw = response.content.decode("utf-8", errors="replace")
    return one_line(raw, limit) or response.reason_phrase or "no body"


# ---- Evolution API (docs/evolution.md) -----------------------------------------------------------------


def check_evolution_server(url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Reachable and key accepted: `GET /instance/fetchInstances` needs the global key and names no instance.

    (`connectionState` cannot check the key alone: Evolution looks the instance up before the key, so an
    unknown instance answers 404 whatever the key.)
    """
    response = _request(
        "GET",
        url,
        "/instance/fetchInstances",
        service="Evolution",
        url_hint=EVOLUTION_URL_HINT,
        timeout=timeout,
        headers={"apikey": api_key, "accept": "application/json"},
    )
    shown = public_url(url)
    if response.is_success:
        data = parse_json(response.content)
        if not isinstance(data, list):
            raise CheckFailed(
                f"{shown} answered HTTP {response.status_code} but not with a list of instances "
                f"({_body_text(response, 80)})",
                hint=EVOLUTION_URL_HINT,
                status=response.status_code,
            )
        return f"{shown} reachable, API key accepted ({len(data)} instance(s) on the server)"
    error = classify_response(response, instance="", number=None, secret=api_key)
    if isinstance(error, ApiKeyRejectedError):
        raise CheckFailed("API key rejected (HTTP 401)", hint=EVOLUTION_KEY_HINT, status=401)
    if isinstance(error, ServerNotActivatedError):
        raise CheckFailed(str(error), hint="activate the Evolution server (2.4 licence gate)", status=503)
    hint = EVOLUTION_URL_HINT if response.status_code in (404, 405) or response.is_redirect else ""
    raise CheckFailed(str(error), hint=hint, status=response.status_code, transient=error.transient)


def check_evolution_instance(sender: Sender, instance: str) -> str:
    """The instance is `open` (`GET /instance/connectionState/{instance}` through the sender)."""
    try:
        state = sender.instance_state(instance)
    except ApiKeyRejectedError:
        raise CheckFailed("API key rejected (HTTP 401)", hint=EVOLUTION_KEY_HINT, status=401) from None
    except UnknownInstanceError:
        raise CheckFailed(
            "does not exist on the Evolution server (HTTP 404)",
            hint="check the instance name in the campaign file (the name, not its id) or create the instance",
            status=404,
        ) from None
    except ServerNotActivatedError as exc:
        raise CheckFailed(
            str(exc), hint="activate the Evolution server (2.4 licence gate)", status=503
        ) from None
    except ServerUnreachableError as exc:
        raise CheckFailed(str(exc), hint=EVOLUTION_URL_HINT, status=exc.status, transient=True) from None
    except InstanceUnavailableError as exc:
        raise CheckFailed(
            str(exc), hint="restart the instance in the Evolution manager", status=exc.status, transient=True
        ) from None
    except TransientServiceError as exc:
        # No status: the network failed or timed out, so the URL (or the server) is the problem.
        hint = EVOLUTION_URL_HINT if exc.status is None else ""
        raise CheckFailed(str(exc), hint=hint, status=exc.status, transient=True) from None
    except ServiceError as exc:
        raise CheckFailed(str(exc), status=exc.status) from None
    if state == "open":
        return "open (connected to WhatsApp)"
    if state == "unknown":
        raise CheckFailed(
            "no connection state: the instance is not loaded on the Evolution server",
            hint="restart the instance in the Evolution manager (or restart the Evolution server)",
        )
    raise CheckFailed(
        f"state {state!r}: not connected to WhatsApp",
        hint="connect it: scan the QR code in the Evolution manager (GET /instance/connect/NAME)",
    )


# ---- QStash (docs/providers.md) -----------------------------------------------------------------------


def check_qstash(url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Token valid: `GET /v2/queues` (List Queues) is authenticated, read-only, tiny and not billed."""
    response = _request(
        "GET",
        url,
        "/v2/queues",
        service="QStash",
        url_hint="check QSTASH_URL (https://qstash.upstash.io, or the region's URL)",
        timeout=timeout,
        headers={"authorization": f"Bearer {token}", "accept": "application/json"},
    )
    if response.is_success:
        data = parse_json(response.content)
        queues = f" ({len(data)} queue(s))" if isinstance(data, list) else ""
        return f"{public_url(url)}: token accepted{queues}"
    body = parse_json(response.content)
    text = flatten_message(body.get("error")) if isinstance(body, dict) and body.get("error") else ""
    text = text or _body_text(response)
    status = response.status_code
    if status in (401, 403):
        raise CheckFailed(
            f"token rejected (HTTP {status}: {text})",
            hint="check QSTASH_TOKEN; each region (QSTASH_URL) has its own token",
            status=status,
        )
    raise CheckFailed(f"QStash answered HTTP {status}: {text}", status=status, transient=status >= 500)


# ---- ElevenLabs (docs/providers.md) -------------------------------------------------------------------


def elevenlabs_error(response: httpx.Response) -> tuple[str | None, str]:
    """`(code, message)` of an error reply: `detail.status` / `detail.message`; a list `detail` is a 422."""
    body = parse_json(response.content)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code = detail.get("status")
        message = detail.get("message")
        return (code if isinstance(code, str) else None), one_line(str(message or response.reason_phrase))
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)
        ]
        return "validation_error", one_line("; ".join(parts) or response.reason_phrase)
    if isinstance(detail, str):
        return None, one_line(detail)
    return None, _body_text(response)


def check_elevenlabs(
    url: str,
    api_key: str,
    voice_id: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    key_name: str = "ELEVENLABS_API_KEY",
    voice_name: str = "ELEVENLABS_VOICE_ID",
) -> str:
    """Key and voice in one request, `GET /v1/voices/{voice_id}`; key alone via `GET /v1/models`.

    Neither spends characters. `key_name` and `voice_name` say where the values came from, for the hints.
    """
    path = f"/v1/voices/{quote(voice_id, safe='')}" if voice_id else "/v1/models"
    response = _request(
        "GET",
        url,
        path,
        service="ElevenLabs",
        url_hint="check ELEVENLABS_API_URL (https://api.elevenlabs.io or a regional URL)",
        timeout=timeout,
        headers={"xi-api-key": api_key, "accept": "application/json"},
    )
    if response.is_success:
        return _elevenlabs_accepted(response, voice_id)
    raise _elevenlabs_failed(response, voice_id, key_name=key_name, voice_name=voice_name)


def _elevenlabs_accepted(response: httpx.Response, voice_id: str | None) -> str:
    if not voice_id:
        return "API key accepted (no default voice set)"
    data = parse_json(response.content)
    name = data.get("name") if isinstance(data, dict) else None
    category = data.get("category") if isinstance(data, dict) else None
    about = f" {name!r}" if isinstance(name, str) else ""
    about += f" ({category})" if isinstance(category, str) else ""
    return f"API key accepted, voice {voice_id}{about} found"


def _elevenlabs_failed(
    response: httpx.Response, voice_id: str | None, *, key_name: str, voice_name: str
) -> CheckFailed:
    status = response.status_code
    code, message = elevenlabs_error(response)
    if code == "voice_not_found" or (voice_id and status == 404):
        return CheckFailed(
            f"voice {voice_id} not found (HTTP {status} {code or ''}: {message})".replace(" :", ":"),
            hint=f"check {voice_name}: a voice id from the ElevenLabs voice library (GET /v1/voices)",
            status=status,
        )
    if code == "missing_permissions":
        return CheckFailed(
            f"the API key lacks a permission (HTTP {status} missing_permissions: {message})",
            hint="give the key the voices_read and text_to_speech permissions in the ElevenLabs dashboard",
            status=status,
        )
    if code == "quota_exceeded":
        return CheckFailed(
            f"quota exceeded (HTTP {status}: {message})",
            hint="add ElevenLabs credits or upgrade the plan",
            status=status,
        )
    if status in (401, 403):
        return CheckFailed(
            f"API key rejected (HTTP {status} {code or ''}: {message})".replace(" :", ":"),
            hint=f"check {key_name}",
            status=status,
        )
    return CheckFailed(
        f"ElevenLabs answered HTTP {status}: {message}", status=status, transient=status >= 500
    )


# ---- Groq (docs/providers.md) -------------------------------------------------------------------------


def groq_error(response: httpx.Response) -> tuple[str | None, str]:
    """`(code, message)` of an OpenAI-style error reply `{"error": {"message", "type", "code"}}`."""
    body = parse_json(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return (code if isinstance(code, str) else None), one_line(
            str(error.get("message") or response.reason_phrase)
        )
    if isinstance(error, str):
        return None, one_line(error)
    return None, _body_text(response)


def check_groq(
    url: str,
    api_key: str,
    model: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    key_name: str = "GROQ_API_KEY",
) -> str:
    """Key valid: `GET /openai/v1/models`; and, when `model` is given, that the key may use it."""
    response = _request(
        "GET",
        url,
        "/openai/v1/models",
        service="Groq",
        url_hint="check GROQ_API_URL (https://api.groq.com)",
        timeout=timeout,
        headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
    )
    status = response.status_code
    if not response.is_success:
        code, message = groq_error(response)
        if status in (401, 403):
            raise CheckFailed(
                f"API key rejected (HTTP {status} {code or ''}: {message})".replace(" :", ":"),
                hint=f"check {key_name} (a key from console.groq.com/keys, gsk_...)",
                status=status,
            )
        raise CheckFailed(f"Groq answered HTTP {status}: {message}", status=status, transient=status >= 500)
    data = parse_json(response.content)
    items = data.get("data") if isinstance(data, dict) else None
    ids = [item["id"] for item in items or [] if isinstance(item, dict) and isinstance(item.get("id"), str)]
    if model and ids and model not in ids:
        whisper = ", ".join(sorted(i for i in ids if "whisper" in i)) or "none"
        raise CheckFailed(
            f"API key accepted, but model {model!r} is not offered to it (whisper models: {whisper})",
            hint="set groq.model to one of the whisper models listed",
        )
    if model and model in ids:
        return f"API key accepted, model {model} available"
    return "API key accepted"


# ---- Supabase Storage (docs/providers.md) -------------------------------------------------------------


def is_jwt(key: str) -> bool:
    """A legacy Supabase key (anon / service_role) is a JWT; the new `sb_secret_...` keys are not."""
    return _JWT.fullmatch(key.strip()) is not None


def storage_headers(key: str) -> dict[str, str]:
    """`apikey` always; `Authorization: Bearer` only for a legacy JWT key (Storage verifies it as a JWT)."""
    headers = {"apikey": key}
    if is_jwt(key):
        headers["authorization"] = f"Bearer {key}"
    return headers


def storage_error(response: httpx.Response) -> tuple[int, str, str]:
    """`(status, code, message)`: Storage answers HTTP 400 for client errors, the real status is the body's
    string `statusCode`; the HTTP status is used when the body has none (gateway errors, 500)."""
    body = parse_json(response.content)
    if not isinstance(body, dict):
        return response.status_code, "", _body_text(response)
    status = response.status_code
    raw = body.get("statusCode")
    if isinstance(raw, str | int) and str(raw).strip().isdigit():
        status = int(str(raw).strip())
    code = body.get("code") or body.get("error") or ""
    message = body.get("message") or body.get("msg") or body.get("error") or response.reason_phrase
    return status, str(code), one_line(str(message))


def check_storage(
    url: str,
    key: str,
    bucket: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    key_name: str = "SUPABASE_SERVICE_ROLE_KEY",
) -> str:
    """Reachable, key accepted and bucket present: `GET /storage/v1/bucket/{bucket}`."""
    response = _request(
        "GET",
        url,
        f"/storage/v1/bucket/{quote(bucket, safe='')}",
        service="Supabase Storage",
        url_hint="check SUPABASE_URL (https://<project>.supabase.co)",
        timeout=timeout,
        headers={**storage_headers(key), "accept": "application/json"},
    )
    if response.is_success:
        data = parse_json(response.content)
        public = data.get("public") if isinstance(data, dict) else None
        kind = " (public)" if public is True else " (private)" if public is False else ""
        return f"bucket {bucket!r} reachable{kind}"
    status, code, message = storage_error(response)
    what = f"HTTP {response.status_code}" + (
        f", statusCode {status}" if status != response.status_code else ""
    )
    what += f" {code}" if code else ""
    if code in _STORAGE_AUTH_CODES or status in (401, 403):
        raise CheckFailed(
            f"key rejected ({what}: {message})",
            hint=f"set {key_name} to the project's service_role key or an sb_secret_ key",
            status=status,
        )
    if status == 404:
        raise CheckFailed(
            f"bucket {bucket!r} not found ({what}: {message})",
            hint=f"create the bucket {bucket!r} in Supabase Storage, or set supabase.bucket to another one",
            status=status,
        )
    raise CheckFailed(f"Supabase Storage answered {what}: {message}", status=status, transient=status >= 500)


# ---- Job webhook ---------------------------------------------------------------------------------------


def ping_event(now: datetime | None = None) -> dict[str, Any]:
    """The event `check_webhook` posts: a job event whose status `ping` no real job ever has."""
    moment = now or datetime.now(UTC)
    return job_event("doctor", "ping", moment, moment, {"check": "dispara doctor"})


def check_webhook(
    url: str,
    secret: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    url_name: str = "JOB_WEBHOOK",
) -> str:
    """Reachable: one POST of a `ping` job event, signed like the worker signs (no retries).

    A POST, not a HEAD: webhook receivers (n8n, Make, serverless functions) usually route only POST, and
    this exercises exactly the worker's path (TLS, routing, body, signature). 2xx and 4xx mean a receiver
    answered; 3xx, 5xx, timeouts and network errors mean the worker's events would be lost.
    """
    body = json.dumps(ping_event(), ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"content-type": "application/json"}
    if secret:
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    hint = f"check {url_name} and that the receiver is up"
    response = _request(
        "POST", url, service="the webhook", url_hint=hint, timeout=timeout, headers=headers, content=body
    )
    status = response.status_code
    shown = public_url(url)
    signed = "signed" if secret else "unsigned"
    if 200 <= status < 300:
        return f"{shown} reachable (HTTP {status} to a {signed} ping event)"
    if 400 <= status < 500:
        note = "; if it checks signatures, check webhook-secret" if status in (401, 403) else ""
        return f"{shown} reachable (answered HTTP {status} to a {signed} ping event{note})"
    if 300 <= status < 400:
        target = public_url(response.headers.get("location", "")) or "?"
        raise CheckFailed(
            f"{shown} redirects (HTTP {status}) to {target}; the worker does not follow redirects",
            hint=f"set {url_name} to the final URL",
            status=status,
        )
    raise CheckFailed(f"{shown} answered HTTP {status}", hint=hint, status=status, transient=True)
