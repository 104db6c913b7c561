"""Batched completion: exact counters under replays and lost leases, retries, pauses, campaign endings."""

from __future__ import annotations

import random

import pytest

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.base import InstanceUnavailableError, ServerUnreachableError
from dispara.queue import backoff, handlers
from dispara.queue.backoff import RetryPolicy
from dispara.queue.claim import Claimer, claim
from dispara.queue.complete import apply_batch
from dispara.queue.model import ClaimedJob, Outcome, RunEnd
from tests.integration.queue.conftest import Conn, Seeded, campaign_state, job_rows, scalar, seed_campaign


def claim_all(conn: Conn, s: Seeded, worker: str = "w1") -> list[ClaimedJob]:
    runs = claim(conn, Claimer([s.tenant_id], worker, 30, ["send-message"]), slots=100, run_size=1000)
    conn.commit()
    return [j for r in runs for j in r.jobs]


def sent(job: ClaimedJob) -> Outcome:
    return Outcome(job, "sent", key_id=f"KEY{job.id}", response={"key": {"id": f"KEY{job.id}"}})


def test_sent_is_counted_once_even_when_the_batch_is_replayed(conn: Conn) -> None:
    s = seed_campaign(conn, 3)
    jobs = claim_all(conn, s)
    first = apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[sent(jobs[0])])
    again = apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[sent(jobs[0])])
    assert (len(first.applied), len(again.applied), len(again.lost)) == (1, 0, 1)
    state = campaign_state(conn, s.campaign_id)
    assert (state["sent_count"], state["messages"]) == (1, {"sent": 1, "sending": 2})
    row = conn.execute(
        "SELECT evolution_key, evolution_response, sent_at IS NOT NULL FROM message_logs WHERE id = %s",
        (jobs[0].message_id,),
    ).fetchone()
    assert row == (f"KEY{jobs[0].id}", {"key": {"id": f"KEY{jobs[0].id}"}}, True)
    job = job_rows(conn, [jobs[0].id])[0]
    assert (job["status"], job["result"], job["locked_by"]) == (
        "completed",
        {"key_id": f"KEY{jobs[0].id}"},
        None,
    )
    assert job["finished_at"] is not None


def test_a_worker_whose_lease_was_taken_over_cannot_write(conn: Conn) -> None:
    s = seed_campaign(conn, 1)
    job = claim_all(conn, s)[0]
    conn.execute("UPDATE jobs SET locked_by = 'someone-else'")
    conn.commit()
    result = apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[sent(job)])
    assert (result.applied, [o.job.id for o in result.lost]) == ([], [job.id])
    assert campaign_state(conn, s.campaign_id)["messages"] == {"sending": 1}


def test_campaign_completes_when_sent_plus_failed_reach_total(conn: Conn) -> None:
    s = seed_campaign(conn, 2)
    a, b = claim_all(conn, s)
    apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[sent(a)])
    assert campaign_state(conn, s.campaign_id)["status"] == "processing"
    failed = Outcome(b, "failed", "number 55 is not on WhatsApp", "not_on_whatsapp")
    result = apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[failed])
    assert [(c.status, c.sent, c.failed) for c in result.campaigns] == [("completed", 1, 1)]
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 1, 1)
    assert state["completed_at"] is not None
    row = conn.execute("SELECT error_message, error_kind FROM message_logs WHERE id = %s", (b.message_id,))
    assert row.fetchone() == ("number 55 is not on WhatsApp", "not_on_whatsapp")
    assert job_rows(conn, [b.id])[0]["error_kind"] == "not_on_whatsapp"


def test_retry_puts_job_and_message_back_with_backoff(conn: Conn) -> None:
    s = seed_campaign(conn, 1)
    job = claim_all(conn, s)[0]
    outcome = handlers.failure(job, TransientServiceError("Evolution answered HTTP 500", status=500))
    assert outcome.kind == "retry"
    assert 0 <= outcome.delay_s <= backoff.DEFAULT_POLICY.retry_base_s
    outcome.delay_s = 120.0
    apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[outcome])
    row = job_rows(conn, [job.id])[0]
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "pending",
        1,
        "Evolution answered HTTP 500",
    )
    assert scalar(conn, "SELECT run_at - now() > interval '100 seconds' FROM jobs") is True
    msg = conn.execute("SELECT status, retry_count, error_message FROM message_logs").fetchone()
    assert msg == ("queued", 1, "Evolution answered HTTP 500")
    assert campaign_state(conn, s.campaign_id)["failed_count"] == 0


def test_last_attempt_fails_for_good_and_permanent_errors_never_retry(conn: Conn) -> None:
    s = seed_campaign(conn, 2, retries=0)
    a, b = claim_all(conn, s)
    last = handlers.failure(a, TransientServiceError("timeout"))
    assert (last.kind, last.error_kind) == ("failed", "transient")
    assert last.error == "timeout (gave up after 1 attempts)"
    bad = handlers.failure(b, PermanentServiceError("Evolution API key rejected (401)", status=401))
    assert (bad.kind, bad.error_kind) == ("failed", "permanent")


def test_retry_after_is_respected_and_attempts_spread_over_minutes() -> None:
    policy = backoff.DEFAULT_POLICY
    for attempt in (1, 5, 30):
        assert policy.retry_delay(attempt, retry_after=42.0) >= 42.0
        assert policy.retry_delay(attempt) <= policy.retry_cap_s
    # Three retries never all land within seconds of each other (equal jitter, not full jitter).
    rng = random.Random(7)
    shortest = min(sum(policy.retry_delay(a, rng=rng) for a in (1, 2, 3)) for _ in range(1000))
    assert shortest >= (policy.retry_base_s / 2) * (1 + 2 + 4)


def test_release_refunds_the_attempt(conn: Conn) -> None:
    s = seed_campaign(conn, 1)
    job = claim_all(conn, s)[0]
    apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[Outcome(job, "release")])
    row = job_rows(conn, [job.id])[0]
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert scalar(conn, "SELECT status FROM message_logs") == "queued"


def test_campaign_pauses_itself_after_consecutive_failures(conn: Conn) -> None:
    s = seed_campaign(conn, 6)
    jobs = claim_all(conn, s)
    fail = [Outcome(j, "failed", "Evolution API key rejected (401)", "permanent") for j in jobs[:3]]
    apply_batch(
        conn,
        worker="w1",
        tenant_id=s.tenant_id,
        outcomes=[fail[0], sent(jobs[3]), *fail[1:]],
        policy=RetryPolicy(pause_campaign_after=3),
    )
    assert campaign_state(conn, s.campaign_id)["status"] == "processing"  # the success broke the streak
    result = apply_batch(
        conn,
        worker="w1",
        tenant_id=s.tenant_id,
        policy=RetryPolicy(pause_campaign_after=3),
        outcomes=[Outcome(jobs[4], "failed", "Evolution API key rejected (401)", "permanent")],
    )
    assert [c.status for c in result.campaigns] == ["paused"]
    state = campaign_state(conn, s.campaign_id)
    assert state["status"] == "paused"
    assert state["reason"] == (
        "auto-paused after 3 failed messages in a row; last error: Evolution API key rejected (401)"
    )
    assert (state["sent_count"], state["failed_count"]) == (1, 4)


@pytest.mark.parametrize("streak", [1, 2, 11])
def test_instance_pause_escalates_with_the_streak(streak: int) -> None:
    policy = backoff.DEFAULT_POLICY
    closed = InstanceUnavailableError("Connection Closed", instance="a")
    expected = min(policy.pause_base_s * 2 ** (streak - 1), policy.pause_cap_s)
    assert policy.instance_pause(closed, streak) == expected
    down = ServerUnreachableError("connection refused", instance="a")
    assert policy.instance_pause(down, streak) == min(expected, policy.unreachable_cap_s)
    gone = InstanceUnavailableError("deleted", instance="a", permanent=True)
    assert policy.instance_pause(gone, streak) == policy.pause_permanent_s


def test_instance_pause_is_stored_and_releases_the_lease(conn: Conn) -> None:
    s = seed_campaign(conn, 1)
    job = claim_all(conn, s)[0]
    end = RunEnd(
        "inst-a",
        0.0,
        pause=True,
        pause_s=8.0,
        pause_reason="instance 'inst-a' is not connected",
        streak=3,
        probe=True,
    )
    apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[Outcome(job, "release")], ends=[end])
    row = conn.execute(
        "SELECT extract(epoch FROM paused_until - now())::float8, pause_reason, consecutive_failures, "
        "probe, locked_by FROM instances"
    ).fetchone()
    assert row is not None
    assert row[0] == pytest.approx(8.0, abs=2)
    assert row[1:] == ("instance 'inst-a' is not connected", 3, True, None)
    assert job_rows(conn, [job.id])[0]["attempts"] == 0


def test_run_end_sets_the_gap_and_counts_the_day(conn: Conn) -> None:
    s = seed_campaign(conn, 2, delay=(30, 30))
    job = claim_all(conn, s)[0]
    apply_batch(conn, worker="w1", tenant_id=s.tenant_id, outcomes=[sent(job)], ends=[RunEnd("inst-a", 30.0)])
    row = conn.execute(
        "SELECT extract(epoch FROM next_send_at - now())::float8, sent_today, locked_by, "
        "last_sent_at IS NOT NULL FROM instances"
    ).fetchone()
    assert row is not None
    assert row[0] == pytest.approx(30, abs=2)
    assert row[1:] == (1, None, True)
