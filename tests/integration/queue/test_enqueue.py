"""The seam for task types other than campaign messages: enqueue -> claim -> execute -> complete -> webhook,
and following one job to its end with LISTEN/NOTIFY."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dispara.config import WebhookConfig
from dispara.errors import InputError, PermanentServiceError, TransientServiceError
from dispara.queue import handlers
from dispara.queue.enqueue import enqueue
from dispara.queue.follow import claim_by_id, follow, job_state
from dispara.queue.model import ClaimedJob
from tests.integration.queue.conftest import Conn, Receiver, job_rows, make_settings, tenant, wait_for

ECHO = "test-echo"


@pytest.fixture
def echo() -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """A registered task type that records what it ran and returns its data; fails on demand."""
    ran: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def handler(job: ClaimedJob, ctx: handlers.HandlerContext) -> dict[str, Any]:
        assert ctx.tenant_id is not None and ctx.connection is not None
        with lock:
            ran.append((job.id, job.data))
        (one,) = ctx.connection().execute("SELECT 1").fetchone() or (None,)
        if job.data.get("fail") == "permanent":
            raise PermanentServiceError("asked to fail")
        if job.data.get("fail") == "once" and job.attempts == 1:
            raise TransientServiceError("try again", retry_after=0.3)
        return {"echo": job.data, "one": one}

    handlers.register(ECHO, handler)
    yield ran
    handlers._HANDLERS.pop(ECHO, None)


def test_enqueue_inserts_the_seed_payload_and_notifies(conn: Conn, db_dsn: str) -> None:
    tid = tenant(conn)
    conn.commit()
    with psycopg.connect(db_dsn, autocommit=True) as listener:
        listener.execute("LISTEN dispara_jobs")
        job_id = enqueue(conn, tid, ECHO, {"a": 1}, max_attempts=5)
        conn.commit()
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert len(notes) == 1
    row = conn.execute(
        "SELECT payload, status, max_attempts, instance, campaign_id, tenant_id FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (
        {"run_location": "supabase", "task_type": ECHO, "data": {"a": 1}},
        "pending",
        5,
        None,
        None,
        tid,
    )


def test_enqueue_defaults_and_run_at(conn: Conn) -> None:
    tid = tenant(conn)
    later = datetime.now(UTC) + timedelta(hours=1)
    job_id = enqueue(conn, tid, ECHO, {}, run_location="external", run_at=later)
    row = conn.execute(
        "SELECT payload->>'run_location', max_attempts, run_at FROM jobs WHERE id = %s", (job_id,)
    )
    location, attempts, run_at = row.fetchone() or (None, None, None)
    assert (location, attempts) == ("external", 3)
    assert run_at is not None and abs((run_at - later).total_seconds()) < 0.001


@pytest.mark.parametrize(
    ("task_type", "data", "kwargs", "message"),
    [
        ("", {}, {}, "task_type is empty"),
        (ECHO, {}, {"run_location": "mars"}, "run_location 'mars'"),
        (ECHO, [1], {}, "data must be an object"),
        (ECHO, {"x": object()}, {}, "not JSON"),
        (ECHO, {"x": "a\x00b"}, {}, "NUL"),
        (ECHO, {}, {"max_attempts": 0}, "max_attempts must be at least 1"),
    ],
)
def test_enqueue_refuses_bad_jobs(
    conn: Conn, task_type: str, data: Any, kwargs: dict[str, Any], message: str
) -> None:
    tid = tenant(conn)
    with pytest.raises(InputError, match=message):
        enqueue(conn, tid, task_type, data, **kwargs)
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_a_registered_handler_runs_through_the_worker_with_webhooks(
    conn: Conn, db_dsn: str, tmp_path: Path, echo: list[tuple[int, dict[str, Any]]], receiver: Receiver
) -> None:
    tid = tenant(conn)
    ok = enqueue(conn, tid, ECHO, {"n": 1})
    bad = enqueue(conn, tid, ECHO, {"fail": "permanent"})
    conn.commit()
    settings = make_settings(db_dsn, tmp_path / "data", webhook=WebhookConfig(url=receiver.url))
    from dispara.queue.worker import run_worker

    summary = run_worker(settings, once=True)
    assert summary.done == 1 and summary.failed == 1
    rows = {r["id"]: r for r in job_rows(conn, [ok, bad])}
    assert rows[ok]["status"] == "completed" and rows[ok]["result"] == {"echo": {"n": 1}, "one": 1}
    assert rows[bad]["status"] == "failed" and rows[bad]["last_error"] == "asked to fail"
    assert sorted(i for i, _ in echo) == [ok, bad]
    wait_for(lambda: len(receiver.received()) == 4, what="start and finish events of both jobs")
    events = receiver.received()
    for data, final in (({"n": 1}, "completed"), ({"fail": "permanent"}, "failed")):
        mine = [e for e in events if e["data"] == data]
        assert [e["status"] for e in mine] == ["processing", final]
        assert {e["job_name"] for e in mine} == {ECHO}
        assert mine[0]["finishedAt"] is None and mine[1]["finishedAt"] is not None
        assert set(mine[1]) == {"job_name", "startedAt", "finishedAt", "status", "data"}


def test_completion_notifies_its_own_channel_with_the_job_id(conn: Conn, db_dsn: str) -> None:
    tid = tenant(conn)
    job_id = enqueue(conn, tid, ECHO, {})
    conn.commit()
    with psycopg.connect(db_dsn, autocommit=True) as listener:
        listener.execute("LISTEN dispara_job_done")
        conn.execute("UPDATE jobs SET status = 'processing' WHERE id = %s", (job_id,))
        conn.commit()
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # not finished yet
        conn.execute("UPDATE jobs SET status = 'completed' WHERE id = %s", (job_id,))
        conn.commit()
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notes] == [str(job_id)]


def test_follow_runs_a_job_here_when_no_worker_does(
    conn: Conn, db_dsn: str, tmp_path: Path, echo: list[tuple[int, dict[str, Any]]]
) -> None:
    tid = tenant(conn)
    job_id = enqueue(conn, tid, ECHO, {"here": True})
    conn.commit()
    said: list[str] = []
    state = follow(make_settings(db_dsn, tmp_path / "data"), tid, job_id, notice=said.append)
    assert state.status == "completed" and state.result == {"echo": {"here": True}, "one": 1}
    assert echo == [(job_id, {"here": True})]
    assert said == [f"job {job_id}: running it here (attempt 1/3)"]


def test_follow_waits_for_a_job_another_worker_holds(
    conn: Conn, db_dsn: str, tmp_path: Path, echo: list[tuple[int, dict[str, Any]]]
) -> None:
    tid = tenant(conn)
    job_id = enqueue(conn, tid, ECHO, {})
    conn.commit()
    held = claim_by_id(conn, tid, job_id, worker="someone-else", lease_s=60)
    conn.commit()
    assert held is not None and held.attempts == 1
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(follow(make_settings(db_dsn, tmp_path), tid, job_id))
    )
    thread.start()
    wait_for(lambda: job_state(conn, tid, job_id).status == "processing", what="claimed")
    conn.commit()
    conn.execute(
        "UPDATE jobs SET status = 'completed', result = %s::jsonb WHERE id = %s",
        (json.dumps({"by": "other"}), job_id),
    )
    conn.commit()
    thread.join(10)
    assert not thread.is_alive()
    assert result[0].result == {"by": "other"}
    assert echo == []  # never run here: someone else held it


def test_follow_waits_out_a_retry_and_runs_it_again(
    conn: Conn, db_dsn: str, tmp_path: Path, echo: list[tuple[int, dict[str, Any]]]
) -> None:
    tid = tenant(conn)
    job_id = enqueue(conn, tid, ECHO, {"fail": "once"})
    conn.commit()
    base = make_settings(db_dsn, tmp_path / "data")
    settings = base.model_copy(update={"worker": base.worker.model_copy(update={"retry_base_s": 0.01})})
    said: list[str] = []
    state = follow(settings, tid, job_id, notice=said.append)
    assert (state.status, state.attempts) == ("completed", 2)
    assert [i for i, _ in echo] == [job_id, job_id]
    assert said[0] == f"job {job_id}: running it here (attempt 1/3)"
    assert said[1].startswith(f"job {job_id}: attempt 1 failed (try again); next in ")
    assert said[2] == f"job {job_id}: running it here (attempt 2/3)"


def test_follow_takes_over_a_job_whose_worker_died(
    conn: Conn, db_dsn: str, tmp_path: Path, echo: list[tuple[int, dict[str, Any]]]
) -> None:
    tid = tenant(conn)
    job_id = enqueue(conn, tid, ECHO, {"orphan": True})
    conn.commit()
    assert claim_by_id(conn, tid, job_id, worker="dead-worker", lease_s=0.2) is not None
    conn.commit()
    state = follow(make_settings(db_dsn, tmp_path / "data"), tid, job_id)
    # The dead worker's lapsed lease cost no attempt: the one try made here is the only one counted.
    assert (state.status, state.attempts) == ("completed", 1)
    assert echo == [(job_id, {"orphan": True})]
