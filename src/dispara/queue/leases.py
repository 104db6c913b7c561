"""Lease upkeep: renew what this worker holds, take back what dead workers left, and look ahead."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from psycopg.rows import dict_row

from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.backoff import DEFAULT_POLICY, RetryPolicy
from dispara.queue.model import ClaimedJob, Outcome


def exhausted_reason(expiries: int) -> str:
    return (
        f"its worker stopped {expiries} times while running it (killed or cut off): "
        "given up, the outcome of the last try is unknown"
    )


@dataclass
class ResetResult:
    jobs: int = 0  # back to pending (or cancelled with their campaign)
    instances: int = 0
    exhausted: list[ClaimedJob] = field(default_factory=list)  # a poison job: now leased to the caller

    def failures(self, policy: RetryPolicy) -> list[Outcome]:
        """The outcomes that fail the exhausted jobs through the normal completion path."""
        why = exhausted_reason(policy.max_lease_expiries)
        return [Outcome(job, "failed", why, "transient") for job in self.exhausted]


def heartbeat(
    conn: Connection,
    *,
    worker: str,
    lease_s: float,
    jobs: Collection[int],
    instances: Collection[tuple[UUID, str]],
) -> None:
    """Push the leases of what this worker holds (`jobs`, (tenant, instance) pairs) `lease_s` ahead."""
    params = {"worker": worker, "lease_s": lease_s}
    if jobs:
        conn.execute(q("queue_heartbeat_jobs"), {**params, "ids": list(jobs)})
    if instances:
        tenants, names = zip(*instances, strict=True)
        conn.execute(
            q("queue_heartbeat_instances"), {**params, "tenants": list(tenants), "names": list(names)}
        )


def reset_expired(
    conn: Connection,
    *,
    tenants: Sequence[UUID],
    worker: str,
    lease_s: float,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> ResetResult:
    """Expired job leases back to pending (messages back to queued), expired instance leases freed."""
    params = {
        "tenants": list(tenants),
        "worker": worker,
        "lease_s": lease_s,
        "max_expiries": policy.max_lease_expiries,
    }
    result = ResetResult()
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(q("queue_reset_expired_jobs"), params).fetchall():
            if row["status"] != "processing":
                result.jobs += 1
                continue
            result.exhausted.append(ClaimedJob.from_row(row, None))
    result.instances = conn.execute(q("queue_reset_expired_instances"), params).rowcount
    return result


def ensure_instances(conn: Connection, *, tenant_id: UUID) -> int:
    """Create missing `instances` rows for pending paced jobs; returns how many were created."""
    return conn.execute(q("queue_ensure_instances"), {"tenant_id": tenant_id}).rowcount


def next_due_in(conn: Connection, *, tenants: Sequence[UUID]) -> float | None:
    """Seconds until an instance with due work may send again, or None when none is waiting."""
    row = conn.execute(q("queue_next_due"), {"tenants": list(tenants)}).fetchone()
    if row is None or row[0] is None:
        return None
    return max(0.0, float(row[0]))


def has_work_soon(
    conn: Connection, *, tenants: Sequence[UUID], task_types: Sequence[str], horizon_s: float
) -> bool:
    row = conn.execute(
        q("queue_has_work_soon"),
        {"tenants": list(tenants), "task_types": list(task_types), "horizon_s": horizon_s},
    ).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Left:
    """Jobs still queued for one reason, and when the earliest of them may go."""

    reason: str
    jobs: int
    until: datetime | None


def left(conn: Connection, *, tenants: Sequence[UUID]) -> list[Left]:
    """Why what is still queued did not go out (the largest groups first)."""
    rows = conn.execute(q("queue_left"), {"tenants": list(tenants)}).fetchall()
    return [Left(reason, int(jobs), until) for reason, jobs, until in rows]
