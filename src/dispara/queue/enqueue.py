"""Putting one job of any task type on the queue: the core that the CLI, `dispara serve` and tests share.

Payloads keep the seed's shape `{run_location, task_type, data}`; the insert wakes workers (NOTIFY).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.errors import InputError

RunLocation = Literal["supabase", "external"]
RUN_LOCATIONS: Final[tuple[RunLocation, ...]] = ("supabase", "external")


def payload(task_type: str, data: Mapping[str, Any], run_location: str = "supabase") -> dict[str, Any]:
    """The seed's job payload, checked: a task type, a known run location, a JSON object of data."""
    if not isinstance(task_type, str) or not task_type.strip():
        raise InputError("job task_type is empty")
    if run_location not in RUN_LOCATIONS:
        raise InputError(f"job run_location {run_location!r}: must be one of {', '.join(RUN_LOCATIONS)}")
    if not isinstance(data, Mapping):
        raise InputError(f"job data must be an object, not {type(data).__name__}")
    return {"run_location": run_location, "task_type": task_type, "data": dict(data)}


def enqueue(
    conn: Connection,
    tenant_id: UUID,
    task_type: str,
    data: Mapping[str, Any],
    *,
    run_location: str = "supabase",
    max_attempts: int | None = None,
    run_at: datetime | None = None,
) -> int:
    """Insert one unpaced job in the caller's transaction and return its id (workers wake on COMMIT)."""
    body = payload(task_type, data, run_location)
    if max_attempts is not None and max_attempts < 1:
        raise InputError(f"job max_attempts must be at least 1, got {max_attempts}")
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InputError(f"job data is not JSON: {exc}") from None
    if "\\u0000" in text:  # jsonb cannot hold NUL
        raise InputError("job data contains a NUL character")
    row = conn.execute(
        q("jobs_enqueue"),
        {"tenant_id": tenant_id, "payload": text, "max_attempts": max_attempts, "run_at": run_at},
    ).fetchone()
    assert row is not None
    return int(row[0])
