"""Claiming due jobs in one statement, leases and pacing enforced in SQL so many workers stay safe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.model import ClaimedJob


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
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q("queue_claim"), params).fetchall()
    runs: list[Run] = []
    current: list[ClaimedJob] = []
    first: dict[str, Any] = {}
    for row, job in _jobs(rows):  # ordered by tenant, instance, then claim order; unpaced jobs last
        if current and (job.instance is None or _where(current[0]) != _where(job)):
            runs.append(_run(current, first))
            current = []
        if not current:
            first = row
        current.append(job)
    if current:
        runs.append(_run(current, first))
    return runs


def _where(job: ClaimedJob) -> tuple[UUID | None, str | None]:
    return job.tenant_id, job.instance


def _run(jobs: list[ClaimedJob], first: dict[str, Any]) -> Run:
    return Run(jobs[0].instance, tuple(jobs), streak=int(first["streak"] or 0), probe=bool(first["probe"]))


def _jobs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], ClaimedJob]]:
    # The claim returns job rows ('j', in claim order) and message rows ('m'), matched here by message id.
    messages = {row["message_id"]: row for row in rows if row["kind"] == "m"}
    return [
        (row, ClaimedJob.from_row(row, messages.get(row["message_id"]))) for row in rows if row["kind"] == "j"
    ]
