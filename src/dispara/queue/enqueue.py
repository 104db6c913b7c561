"""Creating one job of any task type (audio jobs, ...), as the seed's publish routes do."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from dispara.db import Connection
from dispara.db.queries import q


def enqueue(
    conn: Connection,
    tenant_id: UUID,
    task_type: str,
    data: dict[str, Any],
    *,
    run_location: str = "supabase",
    max_attempts: int | None = None,
    run_at: datetime | None = None,
) -> int:
    """Insert the job (payload `{run_location, task_type, data}`) and return its id; the caller commits."""
    payload = {"run_location": run_location, "task_type": task_type, "data": data}
    row = conn.execute(
        q("jobs_enqueue"),
        {"tenant_id": tenant_id, "payload": Jsonb(payload), "run_at": run_at, "max_attempts": max_attempts},
    ).fetchone()
    assert row is not None
    return int(row[0])
