"""`dispara jobs list/show/retry/cancel` and `dispara redrive`, run in-process against a real database."""

from __future__ import annotations

import json
import re

import pytest

from dispara.queue.claim import Claimer, claim
from dispara.queue.complete import apply_batch
from dispara.queue.model import Outcome, RunEnd
from tests.helpers import run_cli
from tests.integration.queue.conftest import Conn, Seeded, campaign_state, job_rows, scalar, seed_campaign


def finish(conn: Conn, s: Seeded, outcomes: dict[int, str]) -> None:
    """Claim everything, then store `sent` or a permanent failure for the jobs at the given indexes."""
    runs = claim(conn, Claimer([s.tenant_id], "w", 30, ["send-message"]), slots=10, run_size=100)
    jobs = {j.id: j for r in runs for j in r.jobs}
    done = []
    for index, kind in outcomes.items():
        job = jobs[s.job_ids[index]]
        done.append(
            Outcome(job, "sent", key_id="K")
            if kind == "sent"
            else Outcome(job, "failed", "Evolution rejected the message: bad", "permanent")
        )
    rest = [Outcome(j, "release") for jid, j in jobs.items() if jid not in {o.job.id for o in done}]
    ends = [RunEnd(r.instance, 0.0) for r in runs if r.instance]
    apply_batch(conn, worker="w", tenant_id=s.tenant_id, outcomes=[*done, *rest], ends=ends)
    conn.commit()


def test_list_show_and_filters(env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    s = seed_campaign(conn, 3, instances=["sales"])
    finish(conn, s, {0: "failed"})
    listed = run_cli(capsys, "jobs", "list")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "TYPE", "INSTANCE", "TRIES", "RUN", "AT", "ERROR"]
    assert len(lines) == 4
    assert re.search(
        rf"^\s+{s.job_ids[0]}\s+failed\s+send-message\s+sales\s+1/3\s.*Evolution rejected",
        listed.out,
        re.MULTILINE,
    )
    failed = json.loads(run_cli(capsys, "jobs", "list", "--status", "failed", "--json").out)
    assert [(j["id"], j["status"], j["attempts"]) for j in failed] == [(s.job_ids[0], "failed", 1)]
    assert run_cli(capsys, "jobs", "list", "--type", "tts").out.strip() == "no jobs"
    assert len(json.loads(run_cli(capsys, "jobs", "list", "--limit", "2", "--json").out)) == 2

    shown = run_cli(capsys, "jobs", "show", str(s.job_ids[0]))
    assert shown.code == 0
    assert "status:     failed (permanent)" in shown.out
    assert "attempts:   1 of 3" in shown.out
    assert "last error: Evolution rejected the message: bad" in shown.out
    assert f'"message_id": {s.message_ids[0]}' in shown.out
    as_json = json.loads(run_cli(capsys, "jobs", "show", str(s.job_ids[0]), "--json").out)
    assert as_json["payload"]["task_type"] == "send-message"

    missing = run_cli(capsys, "jobs", "show", "999999")
    assert (missing.code, missing.err.strip()) == (4, "dispara: error: job 999999 not found")


def test_retry_requeues_and_keeps_counters_exact(
    env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    s = seed_campaign(conn, 2, instances=["a"])
    finish(conn, s, {0: "sent", 1: "failed"})
    before = campaign_state(conn, s.campaign_id)
    assert (before["status"], before["sent_count"], before["failed_count"]) == ("completed", 1, 1)

    result = run_cli(capsys, "jobs", "retry", str(s.job_ids[1]))
    assert (result.code, result.out.strip()) == (0, f"job {s.job_ids[1]} queued again")
    row = job_rows(conn, [s.job_ids[1]])[0]
    assert (row["status"], row["attempts"], row["error_kind"]) == ("pending", 0, None)
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("processing", 1, 0)
    assert state["messages"] == {"sent": 1, "queued": 1}

    assert run_cli(capsys, "worker", "--once", "--max-seconds", "20").code == 0
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 2, 0)

    again = run_cli(capsys, "jobs", "retry", str(s.job_ids[0]))
    assert again.code == 4
    assert (
        again.err.strip()
        == f"dispara: error: job {s.job_ids[0]} is completed: only failed jobs can be retried"
    )


def test_cancel_pending_job(env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    s = seed_campaign(conn, 2, instances=["a"], name="promo")
    finish(conn, s, {0: "sent"})
    result = run_cli(capsys, "jobs", "cancel", str(s.job_ids[1]))
    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"job {s.job_ids[1]} cancelled; campaign promo has nothing left and is completed"
    )
    assert job_rows(conn, [s.job_ids[1]])[0]["status"] == "cancelled"
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["messages"]) == ("completed", {"sent": 1, "cancelled": 1})
    again = run_cli(capsys, "jobs", "cancel", str(s.job_ids[1]))
    assert again.code == 4
    assert "is cancelled: only pending jobs can be cancelled" in again.err
    # A cancelled job is never claimed or re-armed.
    assert run_cli(capsys, "redrive", "--max-seconds", "5").code == 0
    assert job_rows(conn, [s.job_ids[1]])[0]["status"] == "cancelled"


def test_redrive_repairs_then_drains(env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    s = seed_campaign(conn, 4, instances=["a", "b"])
    claim(conn, Claimer([s.tenant_id], "dead", 30, ["send-message"]), slots=1, run_size=1)
    # The dead worker's lease is over; another job failed on a crash with attempts left; "b" rested enough.
    conn.execute("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE locked_by = 'dead'")
    conn.execute("UPDATE instances SET locked_until = now() - interval '1 second' WHERE locked_by = 'dead'")
    conn.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, error_kind = 'transient', "
        "last_error = 'worker crashed' WHERE id = %s",
        (s.job_ids[3],),
    )
    conn.execute("UPDATE message_logs SET status = 'failed' WHERE id = %s", (s.message_ids[3],))
    conn.execute("UPDATE campaigns SET failed_count = 1")
    conn.execute(
        "UPDATE instances SET paused_until = now() - interval '1 second', pause_reason = 'x' WHERE name = 'b'"
    )
    conn.commit()

    result = run_cli(capsys, "redrive", "--max-seconds", "20")
    assert result.code == 0, result.err
    assert re.fullmatch(
        r"redrive: 1 lease reset, 1 job re-armed, 1 instance resumed, 0 old jobs pruned, 4 sent, 0 failed"
        r" in \d+\.\ds\n",
        result.out,
    ), result.out
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 4, 0)
    assert scalar(conn, "SELECT count(*) FROM instances WHERE paused_until IS NOT NULL") == 0


def test_redrive_leaves_permanent_failures_alone(
    env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    finish(conn, s, {0: "failed"})
    result = run_cli(capsys, "redrive", "--max-seconds", "5")
    assert result.out.startswith(
        "redrive: 0 leases reset, 0 jobs re-armed, 0 instances resumed, 0 old jobs pruned, 0 sent, 0 failed"
    )
    assert job_rows(conn, s.job_ids)[0]["status"] == "failed"


def test_redrive_prunes_completed_jobs_past_the_retention(
    env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    s = seed_campaign(conn, 3, instances=["a"])
    finish(conn, s, {0: "sent", 1: "sent", 2: "failed"})
    conn.execute(
        "UPDATE jobs SET finished_at = now() - interval '31 days' WHERE id = ANY(%s)", (s.job_ids[1:],)
    )
    conn.commit()
    result = run_cli(capsys, "redrive", "--max-seconds", "5")
    assert ", 1 old job pruned, " in result.out
    remaining = {r["id"]: r["status"] for r in job_rows(conn, s.job_ids)}
    assert remaining == {s.job_ids[0]: "completed", s.job_ids[2]: "failed"}  # recent and failed ones stay
    assert scalar(conn, "SELECT count(*) FROM message_logs WHERE campaign_id = %s", s.campaign_id) == 3
