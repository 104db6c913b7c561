"""Writing a batch of outcomes in one transaction: jobs, messages, exact campaign counters, instance pacing.

Counters move by the rows that actually changed status in the same transaction, so a redelivered outcome
or a replay after a crash can never count a message twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from dispara import jsontext
from dispara.db import Connection
from dispara.db.clock import db_now
from dispara.db.queries import q
from dispara.db.rows import all_as, all_dicts
from dispara.queue.backoff import DEFAULT_POLICY, RetryPolicy
from dispara.queue.model import Finished, Outcome, RunEnd

# kind -> (job status, attempts spent, message status, retry_count increment). An attempt is spent by a
# try that was made, never by a claim: a job put back unsent (release, cancel) costs nothing.
_EFFECTS: dict[str, tuple[str, int, str | None, int]] = {
    "sent": ("completed", 1, "sent", 0),
    "done": ("completed", 1, None, 0),
    "skip": ("completed", 0, None, 0),
    "failed": ("failed", 1, "failed", 0),
    "retry": ("pending", 1, "queued", 1),
    "release": ("pending", 0, "queued", 0),
    "cancel": ("cancelled", 0, "cancelled", 0),
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
    return jsontext.dumps(value).replace("\\u0000", "")


def _job_params(worker: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("job_ids", "job_status", "charge", "delay_s", "errors", "results", "kinds", "adopt")
    }
    for o in outcomes:
        job_status, charge, _, _ = _EFFECTS[o.kind]
        result = o.result
        if o.kind == "sent" and result is None:
            result = {"key_id": o.key_id}
        cols["job_ids"].append(o.job.id)
        cols["job_status"].append(job_status)
        cols["charge"].append(charge)
        cols["delay_s"].append(float(o.delay_s))
        cols["errors"].append(_text(o.error))
        cols["results"].append(_json(result))
        cols["kinds"].append(o.error_kind if o.kind == "failed" else None)
        # A message that went out is recorded even if its lease lapsed meanwhile (a long database outage)
        # and the job went back to pending: otherwise it would be sent again.
        cols["adopt"].append(o.kind == "sent")
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
    acc: dict[str, list[Any]] = {}  # name -> [sent, failed, release, gap, pause_s, reason, streak, probe]
    for o in outcomes:
        if o.job.instance is None or o.kind not in ("sent", "failed"):
            continue
        entry = acc.setdefault(o.job.instance, [0, 0, False, 0.0, None, None, None, None])
        entry[0 if o.kind == "sent" else 1] += 1
    for end in ends:
        entry = acc.setdefault(end.instance, [0, 0, False, 0.0, None, None, None, None])
        entry[2], entry[3], entry[6], entry[7] = True, end.gap_s, end.streak, end.probe
        if end.pause:
            entry[4], entry[5] = end.pause_s, _text(end.pause_reason)
    names = sorted(acc)
    keys = ("sent", "failed", "release", "gap_s", "pause_s", "reasons", "streak", "probe")
    return {key: [acc[n][i] for n in names] for i, key in enumerate(keys)} | {"names": names}


def apply_batch(
    conn: Connection,
    *,
    worker: str,
    tenant_id: UUID,
    outcomes: Sequence[Outcome],
    ends: Sequence[RunEnd] = (),
    policy: RetryPolicy = DEFAULT_POLICY,
) -> BatchResult:
    """Store outcomes and run ends in one transaction; report what changed."""
    result = BatchResult()
    with conn.transaction():
        moved: dict[int, str] = {}  # job id -> the status its message moved into
        if outcomes:
            by_id = {o.job.id: o for o in outcomes}
            returned: set[int] = set()
            for row in all_dicts(conn, q("queue_complete_jobs"), _job_params(worker, outcomes)):
                returned.add(row["id"])
                if row["status"] in ("completed", "failed"):
                    result.finished.append(Finished(by_id[row["id"]].job, row["status"], row["finished_at"]))
            for o in outcomes:
                (result.applied if o.job.id in returned else result.lost).append(o)
            moved = _store_messages(conn, result.applied)
        result.campaigns = _move_counters(conn, result.applied, moved, policy)
        # Effects on instances follow the sends that happened, even those whose lease was lost.
        pacing = _instance_params(outcomes, ends)
        if pacing["names"]:
            conn.execute(q("queue_instances_update"), {**pacing, "worker": worker, "tenant_id": tenant_id})
            result.paused_instances = [e.instance for e in ends if e.pause]
        result.campaigns += _halt(conn, tenant_id, ends)
    return result


def _halt(conn: Connection, tenant_id: UUID, ends: Sequence[RunEnd]) -> list[CampaignChange]:
    """Pause every running campaign of the tenant when its sender is misconfigured (a rejected key)."""
    reason = next((e.halt_reason for e in ends if e.halt_reason), None)
    if reason is None:
        return []
    params = {"tenant_id": tenant_id, "reason": _text(reason)}
    return all_as(conn, CampaignChange, q("queue_halt_campaigns"), params)


def _store_messages(conn: Connection, applied: Sequence[Outcome]) -> dict[int, str]:
    """Write the messages of stored outcomes; job id -> the status its message actually moved into."""
    moved: dict[int, str] = {}
    messages = _message_params(applied)
    if messages["msg_ids"]:
        job_of = {o.job.message_id: o.job.id for o in applied}
        for row in all_dicts(conn, q("queue_complete_messages"), messages):
            moved[job_of[row["id"]]] = row["status"]
    return moved


def _move_counters(
    conn: Connection, applied: Sequence[Outcome], moved: dict[int, str], policy: RetryPolicy
) -> list[CampaignChange]:
    """Move the campaign counters by the messages that moved; the campaigns that completed or paused."""
    changes: list[CampaignChange] = []
    counters = _campaign_params(applied, moved)
    if counters["ids"]:
        params = {**counters, "pause_after": policy.pause_campaign_after}
        for row in all_dicts(conn, q("queue_campaign_counters"), params):
            old = row.pop("old_status")
            if row["status"] != old and row["status"] in ("completed", "paused"):
                changes.append(CampaignChange(**row))
    return changes


def apply_message_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], *, policy: RetryPolicy = DEFAULT_POLICY
) -> BatchResult:
    """Store outcomes of messages that have no job row (QStash deliveries), in one transaction.

    The same message update and counter move as `apply_batch`; each outcome's `job.id` only has to be
    unique in the batch (the message id does).
    """
    result = BatchResult(applied=list(outcomes))
    with conn.transaction():
        moved = _store_messages(conn, outcomes)
        result.campaigns = _move_counters(conn, outcomes, moved, policy)
        finished_at = db_now(conn)
    for o in outcomes:
        status = moved.get(o.job.id)
        if status in ("sent", "failed"):
            result.finished.append(
                Finished(o.job, "completed" if status == "sent" else "failed", finished_at)
            )
    return result
