"""Claiming due jobs: one statement per kind, leases and pacing enforced in SQL so many workers stay safe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.model import ClaimedJob


@dataclass(frozen=True)
class Claimer:
    """Who claims (the lease holder's id), for which tenant, for how long, and which task types."""

    tenant_id: UUID
    worker: str
    lease_s: float
    task_types: Sequence[str]

    def _params(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "worker": self.worker,
            "lease_s": self.lease_s,
            "task_types": list(self.task_types),
        }


@dataclass(frozen=True, slots=True)
class Run:
    """Jobs of one instance (or one unpaced job), sent one after the other by one thread."""

    instance: str | None
    jobs: tuple[ClaimedJob, ...]


def claim_paced(conn: Connection, claimer: Claimer, *, instances: int, run_size: int) -> list[Run]:
    """Lease up to `instances` ready instances, each with its next run of due jobs."""
    if instances <= 0:
        return []
    params = {**claimer._params(), "instances": instances, "run_size": run_size}
    rows = conn.execute(q("queue_claim_paced"), params).fetchall()
    runs: list[Run] = []
    current: list[ClaimedJob] = []
    for job in _jobs(rows):  # ordered by instance, then claim order
        if current and current[0].instance != job.instance:
            runs.append(Run(current[0].instance, tuple(current)))
            current = []
        current.append(job)
    if current:
        runs.append(Run(current[0].instance, tuple(current)))
    return runs


def claim_unpaced(conn: Connection, claimer: Claimer, *, limit: int) -> list[Run]:
    """Up to `limit` due jobs that no instance paces, each its own run."""
    if limit <= 0:
        return []
    rows = conn.execute(q("queue_claim_unpaced"), {**claimer._params(), "limit": limit}).fetchall()
    return [Run(None, (job,)) for job in _jobs(rows)]


def _jobs(rows: list[tuple[Any, ...]]) -> list[ClaimedJob]:
    # The claim returns job rows ('j', in claim order) and message rows ('m'), matched here by message id.
    messages = {row[1]: row for row in rows if row[0] == "m"}
    return [ClaimedJob.from_rows(row, messages.get(row[7])) for row in rows if row[0] == "j"]
