"""Job start/finish notifications POSTed to the operator's webhook, optionally HMAC-signed.

Signature: `X-Dispara-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body bytes)>`, with
that `timestamp` (unix seconds) in `X-Dispara-Timestamp`; receivers should refuse stale timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

import dispara
from dispara.redact import public_url

log = logging.getLogger("dispara.webhook")

SIGNATURE_HEADER = "X-Dispara-Signature"
TIMESTAMP_HEADER = "X-Dispara-Timestamp"
# Backoff: ~0.25 s, ~0.5 s, ... capped at 2 s, plus up to 0.25 s jitter; 3 attempts wait < 1.5 s in total.
_WAIT = wait_exponential(multiplier=0.25, max=2.0) + wait_random(0, 0.25)


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive datetimes are taken to be UTC already (utcnow(), psycopg without tz)
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_event(
    job_name: str, status: str, started_at: datetime, finished_at: datetime | None, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The webhook payload; `finishedAt` is null for the start event. Timestamps: ISO-8601 UTC, ms, "Z"."""
    return {
        "job_name": job_name,
        "startedAt": _iso_utc(started_at),
        "finishedAt": _iso_utc(finished_at) if finished_at is not None else None,
        "status": status,
        "data": dict(data),
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Dispara-Signature` value for these exact body bytes."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the HMAC over the raw body; refuse timestamps outside the tolerance."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | _RetryableStatus)


class WebhookNotifier:
    """POSTs events to one URL; `notify` returns False after the last failed attempt, never raises for it."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        timeout: float = 5.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.label = f"webhook {public_url(url)}"  # the URL's query may carry a token: never shown
        self._secret = secret or None
        self._attempts = max(1, attempts)
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"user-agent": f"dispara/{dispara.__version__}"},
        )

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.label!r}, signed={self._secret is not None})"

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def notify(self, event: Mapping[str, Any]) -> bool:
        """Deliver one event; True on a 2xx."""
        return self.deliver(event) is None

    def deliver(self, event: Mapping[str, Any]) -> str | None:
        """Deliver one event: None on a 2xx, else why not (no secret in it). Retries network errors,
        timeouts, 429 and 5xx a few times with a short backoff.
        """
        # Serialise once: the signature covers these exact bytes, whatever the receiver's JSON parser does.
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=_WAIT,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            status = retrying(self._post_once, body)
        except _RetryableStatus as exc:
            reason = f"HTTP {exc.status}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if 200 <= status < 300:
                return None
            reason = f"HTTP {status}, not retried"
        tries = retrying.statistics.get("attempt_number", 1)
        return self._failed(reason, tries)

    def _post_once(self, body: bytes) -> int:
        headers = {"content-type": "application/json"}
        if self._secret is not None:
            # A fresh timestamp per attempt, so a delayed retry is not rejected as stale by the receiver.
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        response = self._client.post(self.url, content=body, headers=headers)
        if response.status_code == 429 or response.status_code >= 500:
            raise _RetryableStatus(response.status_code)
        return response.status_code

    def _failed(self, reason: str, tries: int) -> str:
        text = reason.replace(self._secret, "***") if self._secret else reason
        if self.url and self.url != public_url(self.url):
            text = text.replace(self.url, public_url(self.url))
        log.warning("%s: delivery failed after %d attempt(s): %s", self.label, tries, text)
        return text
