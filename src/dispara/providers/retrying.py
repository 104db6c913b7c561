"""Short in-call retries for the audio providers, after the Groq/ElevenLabs SDKs' policy.

429, 408, 409 and 5xx (and connection failures) are tried again up to `retries` times when the wait is short;
a longer Retry-After is handed to the queue instead, which reschedules the job (`TransientServiceError`).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx

import dispara
from dispara.errors import TransientServiceError
from dispara.redact import public_url

RETRYABLE: Final = frozenset({408, 409, 429})
MAX_IN_CALL_WAIT_S: Final = 5.0  # longer waits are the queue's business: the worker thread moves on


@dataclass(frozen=True)
class CallRetries:
    retries: int = 2
    backoff_s: float = 0.5
    max_wait_s: float = MAX_IN_CALL_WAIT_S


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    raw_ms = response.headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def should_retry(response: httpx.Response) -> bool:
    forced = str(response.headers.get("x-should-retry", "")).lower()
    if forced in ("true", "false"):
        return forced == "true"
    status: int = response.status_code
    return status in RETRYABLE or status >= 500


def send_with_retries(
    send: Callable[[], httpx.Response], *, service: str, policy: CallRetries = CallRetries()
) -> httpx.Response:
    """The last response (success or not, for the caller to classify); network failures that persist
    become TransientServiceError. A read timeout is not retried here: the request may have been served."""
    attempt = 0
    while True:
        try:
            response = send()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            if attempt >= policy.retries:
                raise TransientServiceError(f"cannot reach {service} ({type(exc).__name__})") from None
            wait = _backoff(policy, attempt)
        except httpx.TimeoutException:
            raise TransientServiceError(f"{service} did not answer in time") from None
        except httpx.TransportError as exc:
            raise TransientServiceError(f"{service}: {type(exc).__name__}") from None
        else:
            if response.is_success or not should_retry(response) or attempt >= policy.retries:
                return response
            hint = retry_after(response)
            wait = _backoff(policy, attempt) if hint is None else hint
            if wait > policy.max_wait_s:
                return response
        time.sleep(wait)
        attempt += 1


def _backoff(policy: CallRetries, attempt: int) -> float:
    base: float = policy.backoff_s * 2**attempt
    return min(policy.max_wait_s, base + random.uniform(0, base / 4))


class ApiClient:
    """One provider's httpx client (base URL, timeouts, user agent) and its in-call retries.

    Shared between threads; credentials travel per call, since they may be a tenant's own.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
        retries: CallRetries | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.label = f"{name} {public_url(url)}"
        self._retries = retries or CallRetries()
        self._client = httpx.Client(
            base_url=url.strip().rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
            headers={"user-agent": f"dispara/{dispara.__version__}", **(headers or {})},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def _send(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        return send_with_retries(send, service=self.label, policy=self._retries)
