"""Claiming due jobs: one statement per kind, leases and pacing enforced in SQL so many workers stay safe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, LiteralString
from uuid import UUID

from psycopg.rows import dict_row

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
    """Jobs of one instance (or one unpaced job), sent one after the other by one thread.

    `streak` and `probe` are the instance's pacing state at claim time (failures in a row; whether its
    connection must be checked before the first send).
    """

    instance: str | None
    jobs: tuple[ClaimedJob, ...]
    streak: int = 0
    probe: bool = False


def claim_paced(conn: Connection, claimer: Claimer, *, instances: int, run_size: int) -> list[Run]:
    """Lease up to `instances` ready instances, each with its next run of due jobs."""
    if instances <= 0:
        return []
    params = {**claimer._params(), "instances": instances, "run_size": run_size}
    rows = _rows(conn, q("queue_claim_paced"), params)
    runs: list[Run] = []
    current: list[ClaimedJob] = []
    first: dict[str, Any] = {}
    for row, job in _jobs(rows):  # ordered by instance, then claim order
        if current and current[0].instance != job.instance:
            runs.append(_run(current, first))
            current = []
        if not current:
            first = row
        current.append(job)
    if current:
        runs.append(_run(current, first))
    return runs


def _run(jobs: list[ClaimedJob], first: dict[str, Any]) -> Run:
    return Run(jobs[0].instance, tuple(jobs), streak=int(first["streak"] or 0), probe=bool(first["probe"]))


def claim_unpaced(conn: Connection, claimer: Claimer, *, limit: int) -> list[Run]:
    """Up to `limit` due jobs that no instance paces, each its own run."""
    if limit <= 0:
        return []
    rows = _rows(conn, q("queue_claim_unpaced"), {**claimer._params(), "limit": limit})
    return [Run(None, (job,)) for _row, job in _jobs(rows)]


def _rows(conn: Connection, query: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _jobs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], ClaimedJob]]:
    # The claim returns job rows ('j', in claim order) and message rows ('m'), matched here by message id.
    messages = {row["message_id"]: row for row in rows if row["kind"] == "m"}
    return [
        (row, ClaimedJob.from_row(row, messages.get(row["message_id"]))) for row in rows if row["kind"] == "j"
    ]
