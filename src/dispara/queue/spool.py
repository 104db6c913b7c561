"""Outcomes a worker could not store before it exited (the database was down), kept in a local file under
the data directory and stored by the next worker or `redrive` that starts there. Sent means sent: an
outcome of a message that went out is never dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from dispara.db import Connection
from dispara.queue.backoff import DEFAULT_POLICY, RetryPolicy
from dispara.queue.complete import BatchResult, apply_batch
from dispara.queue.model import ClaimedJob, Outcome, RunEnd

log = logging.getLogger("dispara.worker")


def spool_dir(data_dir: Path) -> Path:
    return data_dir / "spool"


def write(data_dir: Path, worker: str, tenant: UUID, items: list[Outcome | RunEnd]) -> Path:
    """Append `items` to this worker's spool file, durably (fsync) before returning."""
    folder = spool_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{worker.replace(':', '_').replace('/', '_')}.jsonl"
    record = {
        "worker": worker,
        "tenant": str(tenant),
        "outcomes": [_outcome(o) for o in items if isinstance(o, Outcome)],
        "ends": [asdict(e) for e in items if isinstance(e, RunEnd)],
    }
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def replay(conn: Connection, data_dir: Path, policy: RetryPolicy = DEFAULT_POLICY) -> BatchResult:
    """Store every spooled outcome under the worker id that held the leases; delete each file once done.

    A file is first renamed to claim it, so two processes starting at once never store it twice.
    """
    total = BatchResult()
    folder = spool_dir(data_dir)
    if not folder.is_dir():
        return total
    for path in sorted(folder.glob("*.jsonl")):
        claimed = path.with_suffix(f".replaying-{os.getpid()}")
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another process took it
            continue
        try:
            _replay_file(conn, claimed, total, policy)
        except BaseException:
            with contextlib.suppress(OSError):
                claimed.rename(path)  # keep it for the next try
            raise
        claimed.unlink()
    if total.applied or total.lost:
        log.info("stored %d spooled outcome(s) from an earlier run", len(total.applied) + len(total.lost))
    return total


def _replay_file(conn: Connection, path: Path, total: BatchResult, policy: RetryPolicy) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        result = apply_batch(
            conn,
            worker=record["worker"],
            tenant_id=UUID(record["tenant"]),
            outcomes=[_parse_outcome(o) for o in record["outcomes"]],
            ends=[RunEnd(**_with_tenant(e)) for e in record["ends"]],
            policy=policy,
        )
        total.applied += result.applied
        total.lost += result.lost
        total.campaigns += result.campaigns


def _outcome(o: Outcome) -> dict[str, Any]:
    return {**asdict(o), "job": asdict(o.job)}


def _with_tenant(data: dict[str, Any]) -> dict[str, Any]:
    tenant = data.get("tenant_id")
    return {**data, "tenant_id": UUID(tenant)} if tenant else data


def _parse_outcome(data: dict[str, Any]) -> Outcome:
    job = _with_tenant(dict(data.pop("job")))
    if job.get("campaign_id"):
        job["campaign_id"] = UUID(job["campaign_id"])
    job["started_at"] = datetime.fromisoformat(job["started_at"])
    return Outcome(ClaimedJob(**job), **data)
