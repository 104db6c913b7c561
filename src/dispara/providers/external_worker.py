"""Handing a job to an external worker (`run_location: external`): POST the job, take its JSON answer.

A 2xx with a JSON object completes the job with that object as its result; 408, 409, 429, 5xx and network
failures are retried like any job; any other answer fails it.
"""

from __future__ import annotations

from typing import Any

import httpx

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.evolution_errors import one_line
from dispara.providers.retrying import ApiClient, CallRetries, retry_after


class ExternalWorker(ApiClient):
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        retries: CallRetries | None = None,
    ) -> None:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # No in-call retries by default: the job itself is retried, and the external worker may be slow.
        super().__init__(
            "external worker", url, timeout_s=timeout_s, transport=transport,
            retries=retries or CallRetries(retries=0), headers=headers,
        )  # fmt: skip
        self._url = url.strip()

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The external worker's result for `job` (the seed payload plus `job_id` and `attempt`)."""
        response = self._send(lambda: self._client.post(self._url, json=job))
        status = response.status_code
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise PermanentServiceError(f"{self.label} answered HTTP {status} without a JSON object")
            return body
        text = one_line(response.text, 200) or response.reason_phrase
        what = f"{self.label} answered HTTP {status}: {text}"
        if status in (408, 409, 429) or status >= 500:
            raise TransientServiceError(what, status=status, retry_after=retry_after(response))
        hint = "; check EXTERNAL_WORKER_TOKEN" if status in (401, 403) else ""
        raise PermanentServiceError(what + hint, status=status)
