"""Claiming due jobs in one statement, leases and pacing enforced in SQL so many workers stay safe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from uuid import UUID

from psycopg.types.json import set_json_loads

from dispara import jsontext
from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.model import ClaimedJob

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Claimer:
    """Who claims (the lease holder's id), for which tenants, for how long, and which task types.

    Unpaced jobs of several tenants are taken in turns, in the order of `tenants`.
    """

    tenants: Sequence[UUID]
    worker: str
    lease_s: float
    task_types: Sequence[str]


@dataclass(frozen=True, slots=True)
class Run:
    """Jobs of one instance (or one unpaced job), sent one after the other by one thread.

    `streak` and `probe` are the instance's pacing state at claim time (failures in a row; whether its
    connection must be checked before the first send).
    """

    instance: str | None
    jobs: tuple[ClaimedJob, ...]
    streak: int = 0
    probe: bool = False

    @property
    def tenant_id(self) -> UUID | None:
        return self.jobs[0].tenant_id if self.jobs else None


def claim(conn: Connection, claimer: Claimer, *, slots: int, run_size: int) -> list[Run]:
    """Lease up to `slots` runs: ready instances, each with its next run of due jobs, then unpaced jobs."""
    if slots <= 0 or not claimer.tenants:
        return []
    params = {
        "tenants": list(claimer.tenants),
        "worker": claimer.worker,
        "lease_s": claimer.lease_s,
        "task_types": list(claimer.task_types),
        "instances": slots,
        "run_size": run_size,
    }
    with conn.cursor() as cur:
        set_json_loads(jsontext.loads, cur)  # payloads: json.loads on bytes detects their encoding first
        rows = cur.execute(q("queue_claim"), params).fetchall()
        col = {c.name: i for i, c in enumerate(cur.description or ())}
    runs: list[Run] = []
    current: list[ClaimedJob] = []
    first: Row = ()
    for row, job in _jobs(rows, col):  # ordered by tenant, instance, then claim order; unpaced jobs last
        if current and (job.instance is None or _where(current[0]) != _where(job)):
            runs.append(_run(current, first, col))
            current = []
        if not current:
            first = row
        current.append(job)
    if current:
        runs.append(_run(current, first, col))
    return runs


def _where(job: ClaimedJob) -> tuple[UUID | None, str | None]:
    return job.tenant_id, job.instance


def _run(jobs: list[ClaimedJob], first: Row, col: dict[str, int]) -> Run:
    streak, probe = first[col["streak"]], first[col["probe"]]
    return Run(jobs[0].instance, tuple(jobs), streak=int(streak or 0), probe=bool(probe))


_JOB_COLUMNS = (
    "id",
    "instance",
    "payload",
    "attempts",
    "max_attempts",
    "campaign_id",
    "message_id",
    "started_at",
)
_MESSAGE_COLUMNS = ("status", "phone_number", "message_content", "message_type", "media_url", "file_name")


def _jobs(rows: list[Row], col: dict[str, int]) -> list[tuple[Row, ClaimedJob]]:
    # The claim returns job rows ('j', in claim order) and message rows ('m'), matched here by message id.
    # Rows stay tuples read by position: a dict per row was a fifth of the claim thread's time.
    kind, message_id = col["kind"], col["message_id"]
    messages = {row[message_id]: row for row in rows if row[kind] == "m"}
    job_fields = itemgetter(*(col[c] for c in _JOB_COLUMNS))
    message_fields = itemgetter(*(col[c] for c in _MESSAGE_COLUMNS))
    delay_min, delay_max, tenant_id = col["delay_min"], col["delay_max"], col["tenant_id"]
    no_message = (None,) * len(_MESSAGE_COLUMNS)
    jobs = []
    for row in rows:
        if row[kind] != "j":
            continue
        id_, instance, payload, attempts, max_attempts, campaign, message, started = job_fields(row)
        sendable = messages.get(message)
        status, phone, content, message_type, media_url, file_name = (
            message_fields(sendable) if sendable is not None else no_message
        )
        job = ClaimedJob(
            id=id_,
            instance=instance,
            payload=payload if isinstance(payload, dict) else {},
            attempts=attempts,
            max_attempts=max_attempts,
            campaign_id=campaign,
            message_id=message,
            started_at=started,
            delay_min=float(row[delay_min] or 0.0),
            delay_max=float(row[delay_max] or 0.0),
            message_status=status,
            phone=phone,
            content=content,
            message_type=message_type,
            media_url=media_url,
            file_name=file_name,
            tenant_id=row[tenant_id],
        )
        jobs.append((row, job))
    return jobs
