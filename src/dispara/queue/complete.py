"""Writing a batch of outcomes in one transaction: jobs, messages, exact campaign counters, instance pacing.

Counters move by the rows that actually changed status in the same transaction, so a redelivered outcome
or a replay after a crash can never count a message twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from dispara.config import WorkerConfig
from dispara.db import Connection
from dispara.db.queries import q
from dispara.queue.backoff import DEFAULT_POLICY
from dispara.queue.model import Finished, Outcome, RunEnd

# kind -> (job status, attempts refunded, message status, retry_count increment)
_EFFECTS: dict[str, tuple[str, int, str | None, int]] = {
    "sent": ("completed", 0, "sent", 0),
    "done": ("completed", 0, None, 0),
    "skip": ("completed", 0, None, 0),
    "failed": ("failed", 0, "failed", 0),
    "retry": ("pending", 0, "queued", 1),
    "release": ("pending", 1, "queued", 0),
}


@dataclass(frozen=True, slots=True)
class CampaignChange:
    """A campaign that completed or paused itself in this batch."""

    id: UUID
    name: str
    status: str
    total: int
    sent: int
    failed: int
    first_claimed_at: datetime | None
    completed_at: datetime | None
    reason: str | None


@dataclass
class BatchResult:
    applied: list[Outcome] = field(default_factory=list)
    lost: list[Outcome] = field(default_factory=list)  # the lease had passed to another worker
    finished: list[Finished] = field(default_factory=list)
    campaigns: list[CampaignChange] = field(default_factory=list)
    paused_instances: list[str] = field(default_factory=list)


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a provider echoing one must not wedge the whole batch.
    return value.replace("\x00", "") if value is not None else None


def _json(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).replace("\\u0000", "")


def _job_params(worker: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("job_ids", "job_status", "refund", "delay_s", "errors", "results", "kinds")
    }
    for o in outcomes:
        job_status, refund, _, _ = _EFFECTS[o.kind]
        result = o.result
        if o.kind == "sent" and result is None:
            result = {"key_id": o.key_id}
        cols["job_ids"].append(o.job.id)
        cols["job_status"].append(job_status)
        cols["refund"].append(refund)
        cols["delay_s"].append(float(o.delay_s))
        cols["errors"].append(_text(o.error))
        cols["results"].append(_json(result))
        cols["kinds"].append(o.error_kind if o.kind == "failed" else None)
    return {"worker": worker, **cols}


def _message_params(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("msg_ids", "msg_status", "keys", "responses", "errors", "kinds", "retry_inc")
    }
    for o in outcomes:
        _, _, msg_status, retry_inc = _EFFECTS[o.kind]
        if msg_status is None or o.job.message_id is None:
            continue
        cols["msg_ids"].append(o.job.message_id)
        cols["msg_status"].append(msg_status)
        cols["keys"].append(_text(o.key_id) if o.kind == "sent" else None)
        cols["responses"].append(_json(o.response) if o.kind == "sent" else None)
        cols["errors"].append(_text(o.error))
        cols["kinds"].append(o.error_kind if o.kind == "failed" else None)
        cols["retry_inc"].append(retry_inc)
    return cols


def _campaign_params(applied: Sequence[Outcome], moved: dict[int, str]) -> dict[str, list[Any]]:
    # Per campaign, in batch order: sent/failed transitions and the trailing run of failures.
    acc: dict[UUID, list[Any]] = {}  # id -> [sent, failed, reset, streak, last_error]
    for o in applied:
        status = moved.get(o.job.id)
        if status is None or o.job.campaign_id is None:
            continue
        entry = acc.setdefault(o.job.campaign_id, [0, 0, False, 0, None])
        if status == "sent":
            entry[0] += 1
            entry[2], entry[3] = True, 0
        elif status == "failed":
            entry[1] += 1
            entry[3] += 1
            entry[4] = _text(o.error)
    ids = sorted(acc)
    return {
        "ids": ids,
        "sent": [acc[i][0] for i in ids],
        "failed": [acc[i][1] for i in ids],
        "reset": [acc[i][2] for i in ids],
        "streak": [acc[i][3] for i in ids],
        "last_error": [acc[i][4] for i in ids],
    }


def _instance_params(outcomes: Sequence[Outcome], ends: Sequence[RunEnd]) -> dict[str, list[Any]]:
    acc: dict[str, list[Any]] = {}  # name -> [sent, failed, release, gap, pause, pause_min, reason]
    for o in outcomes:
        if o.job.instance is None or o.kind not in ("sent", "failed"):
            continue
        entry = acc.setdefault(o.job.instance, [0, 0, False, 0.0, False, 0.0, None])
        entry[0 if o.kind == "sent" else 1] += 1
    for end in ends:
        entry = acc.setdefault(end.instance, [0, 0, False, 0.0, False, 0.0, None])
        entry[2], entry[3] = True, end.gap_s
        if end.pause:
            entry[4], entry[5], entry[6] = True, end.pause_min_s, _text(end.pause_reason)
    names = sorted(acc)
    return {
        key: [acc[n][i] for n in names]
        for i, key in enumerate(("sent", "failed", "release", "gap_s", "pause", "pause_min_s", "reasons"))
    } | {"names": names}


def apply_batch(
    conn: Connection,
    *,
    worker: str,
    tenant_id: UUID,
    outcomes: Sequence[Outcome],
    ends: Sequence[RunEnd] = (),
    policy: WorkerConfig = DEFAULT_POLICY,
) -> BatchResult:
    """Store outcomes and run ends in one transaction; report what changed."""
    result = BatchResult()
    with conn.transaction():
        moved: dict[int, str] = {}  # job id -> the status its message moved into
        if outcomes:
            by_id = {o.job.id: o for o in outcomes}
            returned: set[int] = set()
            for job_id, status, finished_at in conn.execute(
                q("queue_complete_jobs"), _job_params(worker, outcomes)
            ):
                returned.add(job_id)
                if status in ("completed", "failed"):
                    result.finished.append(Finished(by_id[job_id].job, status, finished_at))
            for o in outcomes:
                (result.applied if o.job.id in returned else result.lost).append(o)
            moved = _store_messages(conn, result.applied)
        result.campaigns = _move_counters(conn, result.applied, moved, policy)
        # Effects on instances follow the sends that happened, even those whose lease was lost.
        pacing = _instance_params(outcomes, ends)
        if pacing["names"]:
            conn.execute(
                q("queue_instances_update"),
                {
                    **pacing,
                    "worker": worker,
                    "tenant_id": tenant_id,
                    "pause_base_s": policy.pause_base_s,
                    "pause_cap_s": policy.pause_cap_s,
                },
            )
            result.paused_instances = [e.instance for e in ends if e.pause]
    return result


def _store_messages(conn: Connection, applied: Sequence[Outcome]) -> dict[int, str]:
    """Write the messages of stored outcomes; job id -> the status its message actually moved into."""
    moved: dict[int, str] = {}
    messages = _message_params(applied)
    if messages["msg_ids"]:
        job_of = {o.job.message_id: o.job.id for o in applied}
        for message_id, _campaign, status in conn.execute(q("queue_complete_messages"), messages):
            moved[job_of[message_id]] = status
    return moved


def _move_counters(
    conn: Connection, applied: Sequence[Outcome], moved: dict[int, str], policy: WorkerConfig
) -> list[CampaignChange]:
    """Move the campaign counters by the messages that moved; the campaigns that completed or paused."""
    changes: list[CampaignChange] = []
    counters = _campaign_params(applied, moved)
    if counters["ids"]:
        for row in conn.execute(
            q("queue_campaign_counters"), {**counters, "pause_after": policy.pause_campaign_after}
        ):
            cid, old, new, name, total, sent, failed, first, completed_at, reason = row
            if new != old and new in ("completed", "paused"):
                changes.append(
                    CampaignChange(cid, name, new, total, sent, failed, first, completed_at, reason)
                )
    return changes


def apply_message_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], *, policy: WorkerConfig = DEFAULT_POLICY
) -> BatchResult:
    """Store outcomes of messages that have no job row (QStash deliveries), in one transaction.

    The same message update and counter move as `apply_batch`; each outcome's `job.id` only has to be
    unique in the batch (the message id does).
    """
    result = BatchResult(applied=list(outcomes))
    with conn.transaction():
        moved = _store_messages(conn, outcomes)
        result.campaigns = _move_counters(conn, outcomes, moved, policy)
    finished_at = datetime.now(UTC)
    for o in outcomes:
        status = moved.get(o.job.id)
        if status in ("sent", "failed"):
            result.finished.append(
                Finished(o.job, "completed" if status == "sent" else "failed", finished_at)
            )
    return result
