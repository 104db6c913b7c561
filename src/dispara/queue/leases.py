"""Lease upkeep: renew what this worker holds, take back what dead workers left, and look ahead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.model import ClaimedJob

EXHAUSTED = "lease expired on the last attempt: the worker running it died or stalled"


@dataclass
class ResetResult:
    jobs: int = 0  # back to pending
    instances: int = 0
    exhausted: list[ClaimedJob] = field(default_factory=list)  # out of attempts: now leased to the caller


def heartbeat(conn: Connection, *, tenant_id: UUID, worker: str, lease_s: float) -> None:
    """Push the leases of this worker's in-flight jobs and instances `lease_s` into the future."""
    params = {"tenant_id": tenant_id, "worker": worker, "lease_s": lease_s}
    conn.execute(q("queue_heartbeat_jobs"), params)
    conn.execute(q("queue_heartbeat_instances"), params)


def reset_expired(conn: Connection, *, tenant_id: UUID, worker: str, lease_s: float) -> ResetResult:
    """Expired job leases back to pending (messages back to queued), expired instance leases freed."""
    params = {"tenant_id": tenant_id, "worker": worker, "lease_s": lease_s}
    result = ResetResult()
    for row in conn.execute(q("queue_reset_expired_jobs"), params).fetchall():
        *job, status = row
        if status == "pending":
            result.jobs += 1
            continue
        # Same columns as a claim's job row (no message, no pacing): one constructor for both.
        result.exhausted.append(ClaimedJob.from_rows(("j", *job, 0.0, 0.0), None))
    result.instances = conn.execute(q("queue_reset_expired_instances"), params).rowcount
    return result


def ensure_instances(conn: Connection, *, tenant_id: UUID) -> int:
    """Create missing `instances` rows for pending paced jobs; returns how many were created."""
    return conn.execute(q("queue_ensure_instances"), {"tenant_id": tenant_id}).rowcount


def next_due_in(conn: Connection, *, tenant_id: UUID) -> float | None:
    """Seconds until an instance with due work may send again, or None when none is waiting."""
    row = conn.execute(q("queue_next_due"), {"tenant_id": tenant_id}).fetchone()
    if row is None or row[0] is None:
        return None
    return max(0.0, float(row[0]))


def has_work_soon(conn: Connection, *, tenant_id: UUID, task_types: Sequence[str], horizon_s: float) -> bool:
    row = conn.execute(
        q("queue_has_work_soon"),
        {"tenant_id": tenant_id, "task_types": list(task_types), "horizon_s": horizon_s},
    ).fetchone()
    return bool(row and row[0])
