"""Operator actions on single jobs (list, show, retry, cancel), keeping campaign counters exact."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from dispara.db import Connection, MessageId, message_id_json
from dispara.db.queries import q
from dispara.db.rows import all_as, all_dicts, one_as, one_dict
from dispara.errors import InputError, NotFoundError
from dispara.states import JOB_STATUSES


@dataclass(frozen=True)
class JobSummary:
    id: int
    status: str
    task_type: str | None
    instance: str | None
    attempts: int
    max_attempts: int
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    campaign_id: UUID | None
    message_id: MessageId | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "task_type": self.task_type,
            "instance": self.instance,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_at": _iso(self.run_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "last_error": self.last_error,
            "campaign_id": str(self.campaign_id) if self.campaign_id else None,
            "message_id": None if self.message_id is None else message_id_json(self.message_id),
        }


@dataclass(frozen=True)
class JobDetail:
    id: int
    status: str
    payload: dict[str, Any]
    instance: str | None
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    error_kind: str | None
    result: Any
    locked_by: str | None
    locked_until: datetime | None
    campaign_id: UUID | None
    message_id: MessageId | None
    campaign_name: str | None
    message_status: str | None
    phone: str | None
    webhooks: list[dict[str, Any]] = field(default_factory=list)  # its events and their delivery state

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, datetime):
                out[key] = _iso(value)
            elif isinstance(value, UUID):
                out[key] = str(value)
            else:
                out[key] = value
        return out


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def list_jobs(
    conn: Connection,
    tenant_id: UUID,
    *,
    status: str | None = None,
    task_type: str | None = None,
    limit: int = 50,
) -> list[JobSummary]:
    """The newest jobs first, optionally of one status and one task type."""
    if status is not None and status not in JOB_STATUSES:
        raise InputError(f"unknown job status {status!r}; one of: {', '.join(JOB_STATUSES)}")
    params = {"tenant_id": tenant_id, "status": status, "task_type": task_type, "limit": limit}
    return all_as(conn, JobSummary, q("jobs_list"), params)


def show_job(conn: Connection, tenant_id: UUID, job_id: int) -> JobDetail:
    job = one_as(conn, JobDetail, q("jobs_show"), {"tenant_id": tenant_id, "id": job_id})
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return replace(job, webhooks=all_dicts(conn, q("webhook_of_job"), {"job_id": job_id}))


def _status(conn: Connection, tenant_id: UUID, job_id: int) -> str:
    row = conn.execute(q("jobs_status"), {"tenant_id": tenant_id, "id": job_id}).fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id} not found")
    return str(row[0])


@dataclass(frozen=True)
class Retried:
    campaign: str | None
    campaign_status: str | None


def retry_job(conn: Connection, tenant_id: UUID, job_id: int) -> Retried:
    """A failed job runs again now with its attempts reset; its message is queued again and leaves the
    campaign's failed count (a completed campaign goes back to processing)."""
    with conn.transaction():
        row = one_dict(conn, q("jobs_retry"), {"tenant_id": tenant_id, "id": job_id})
        if row is None or not row["retried"]:
            status = _status(conn, tenant_id, job_id)
            raise InputError(f"job {job_id} is {status}: only failed jobs can be retried")
    return Retried(campaign=row["campaign"], campaign_status=row["campaign_status"])


@dataclass(frozen=True)
class Cancelled:
    campaign_completed: str | None


def cancel_job(conn: Connection, tenant_id: UUID, job_id: int) -> Cancelled:
    """A pending job never runs; its message is cancelled, which may leave its campaign complete."""
    with conn.transaction():
        row = one_dict(conn, q("jobs_cancel"), {"tenant_id": tenant_id, "id": job_id})
        if row is None or not row["cancelled"]:
            status = _status(conn, tenant_id, job_id)
            hint = " (it is being sent right now)" if status == "processing" else ""
            raise InputError(f"job {job_id} is {status}{hint}: only pending jobs can be cancelled")
        completed = None
        if row["campaign_id"] is not None:
            done = conn.execute(q("campaign_complete_if_done"), {"id": row["campaign_id"]}).fetchone()
            completed = str(done[0]) if done else None
    return Cancelled(campaign_completed=completed)
