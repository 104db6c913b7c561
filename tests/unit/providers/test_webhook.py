"""WebhookNotifier: retries, giving up quietly, HMAC signatures, and the job event shape."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.providers.webhook import WebhookNotifier, job_event, sign, verify_signature

URL = "https://hooks.example.com/dispara?token=abc"
SECRET = "whsec-TOPSECRET-42"
EVENT = {"job_name": "campaign:black-friday", "status": "completed", "data": {"sent": 10, "nome": "João"}}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def notifier(sleeps: Sleeps, **kwargs: Any) -> WebhookNotifier:
    kwargs.setdefault("secret", None)
    return WebhookNotifier(URL, sleep=sleeps, **kwargs)


def test_success_posts_json_once(httpx_mock: HTTPXMock, sleeps: Sleeps) -> None:
    httpx_mock.add_response(method="POST", url=URL, status_code=204)
    with notifier(sleeps) as hook:
        assert hook.notify(EVENT) is True
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == EVENT
    assert "x-dispara-signature" not in request.headers and "x-dispara-timestamp" not in request.headers
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        {"status_code": 500},
        {"status_code": 503},
        {"status_code": 429},
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_retries_transient_failures_then_succeeds(
    httpx_mock: HTTPXMock, sleeps: Sleeps, failure: Any
) -> None:
    for _ in range(2):
        if isinstance(failure, Exception):
            httpx_mock.add_exception(failure)
        else:
            httpx_mock.add_response(**failure)
    httpx_mock.add_response(status_code=200)
    with notifier(sleeps, attempts=3) as hook:
        assert hook.notify(EVENT) is True
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2
    assert all(0 < s <= 2.25 for s in sleeps)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_not_retried(
    httpx_mock: HTTPXMock, sleeps: Sleeps, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_mock.add_response(status_code=status)
    with notifier(sleeps) as hook:
        assert hook.notify(EVENT) is False
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []
    [record] = [r for r in caplog.records if r.name == "dispara.webhook"]
    assert f"HTTP {status}" in record.getMessage() and "1 attempt" in record.getMessage()


def test_final_failure_returns_false_logs_one_line_and_hides_secrets(
    httpx_mock: HTTPXMock, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dispara.webhook")
    for _ in range(4):
        httpx_mock.add_exception(httpx.ConnectError(f"refused {URL} {SECRET}"))
    with notifier(sleeps, secret=SECRET, attempts=4) as hook:
        assert hook.notify(EVENT) is False
        assert SECRET not in repr(hook) and "token=abc" not in repr(hook)
    assert len(httpx_mock.get_requests()) == 4
    assert len(sleeps) == 3 and sum(sleeps) < 10
    records = [r for r in caplog.records if r.name == "dispara.webhook"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "\n" not in text and "4 attempt" in text
    assert SECRET not in text and "token=abc" not in text
    assert text.startswith("webhook https://hooks.example.com/dispara:")


def test_default_backoff_is_short(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_response(status_code=502)
    started = time.monotonic()
    with WebhookNotifier(URL, secret=None) as hook:  # the real sleep
        assert hook.notify(EVENT) is False
    assert time.monotonic() - started < 3


def test_invalid_url_does_not_raise(sleeps: Sleeps) -> None:
    with WebhookNotifier("not a url", secret=None, sleep=sleeps) as hook:
        assert hook.notify(EVENT) is False


def test_signature_verifies_over_the_exact_bytes(httpx_mock: HTTPXMock, sleeps: Sleeps) -> None:
    httpx_mock.add_response(status_code=200)
    with notifier(sleeps, secret=SECRET) as hook:
        assert hook.notify(EVENT) is True
    request = httpx_mock.get_request()
    assert request is not None
    timestamp = request.headers["x-dispara-timestamp"]
    signature = request.headers["x-dispara-signature"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = hmac.new(
        SECRET.encode(), f"{timestamp}.".encode() + request.content, hashlib.sha256
    ).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify_signature(SECRET, request.content, signature, timestamp)
    assert not verify_signature("other", request.content, signature, timestamp)
    assert not verify_signature(SECRET, request.content + b" ", signature, timestamp)
    assert not verify_signature(SECRET, request.content, signature, str(int(timestamp) - 1))
    assert not verify_signature(SECRET, request.content, signature, timestamp, now=int(timestamp) + 301)
    assert not verify_signature(SECRET, request.content, signature, "yesterday")
    assert SECRET not in request.content.decode()


def test_every_retry_is_signed_afresh(httpx_mock: HTTPXMock, sleeps: Sleeps) -> None:
    httpx_mock.add_response(status_code=500)
    httpx_mock.add_response(status_code=200)
    with notifier(sleeps, secret=SECRET) as hook:
        assert hook.notify(EVENT)
    first, second = httpx_mock.get_requests()
    assert first.content == second.content
    for request in (first, second):
        assert verify_signature(
            SECRET,
            request.content,
            request.headers["x-dispara-signature"],
            request.headers["x-dispara-timestamp"],
        )


def test_sign_is_documented_format() -> None:
    assert sign("k", 1700000000, b"{}") == "sha256=" + hmac.new(b"k", b"1700000000.{}", "sha256").hexdigest()


def test_job_event_shape_on_start_and_finish() -> None:
    started = datetime(2025, 11, 28, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-3)))
    start = job_event("campaign:bf", "processing", started, None, {"total": 3})
    assert start == {
        "job_name": "campaign:bf",
        "startedAt": "2025-11-28T12:00:00.123Z",
        "finishedAt": None,
        "status": "processing",
        "data": {"total": 3},
    }
    assert list(start) == ["job_name", "startedAt", "finishedAt", "status", "data"]
    done = job_event("campaign:bf", "completed", started, datetime(2025, 11, 28, 12, 5, tzinfo=UTC), {})
    assert done["finishedAt"] == "2025-11-28T12:05:00.000Z"
    naive = job_event("j", "completed", datetime(2025, 1, 1, 0, 0), None, {})
    assert naive["startedAt"] == "2025-01-01T00:00:00.000Z"  # naive means UTC
    assert json.loads(json.dumps(done)) == done


def test_non_json_values_in_data_are_stringified(httpx_mock: HTTPXMock, sleeps: Sleeps) -> None:
    httpx_mock.add_response(status_code=200)
    with notifier(sleeps) as hook:
        assert hook.notify({"data": {"at": datetime(2025, 1, 1, tzinfo=UTC)}})
    request = httpx_mock.get_request()
    assert request is not None
    assert json.loads(request.content) == {"data": {"at": "2025-01-01 00:00:00+00:00"}}
