"""The claim statements against a real PostgreSQL: runs, pacing, leases, what is never claimed."""

from __future__ import annotations

from uuid import UUID

from dispara.queue import leases
from dispara.queue.backoff import DEFAULT_POLICY
from dispara.queue.claim import Claimer, Run, claim
from tests.integration.queue.conftest import Conn, job_rows, scalar, seed_campaign

TYPES = ["send-message"]


def paced(
    conn: Conn, tenant: UUID, *, worker: str = "w1", instances: int = 10, run_size: int = 100
) -> list[Run]:
    runs = claim(conn, Claimer([tenant], worker, 30, TYPES), slots=instances, run_size=run_size)
    conn.commit()
    return runs


def test_no_gap_campaign_claims_a_run_per_instance(conn: Conn) -> None:
    s = seed_campaign(conn, 9, instances=["a", "b", "c"])
    runs = paced(conn, s.tenant_id, run_size=2)
    assert sorted((r.instance, len(r.jobs)) for r in runs) == [("a", 2), ("b", 2), ("c", 2)]
    first = next(r for r in runs if r.instance == "a")
    assert [j.id for j in first.jobs] == [s.job_ids[0], s.job_ids[3]]  # claim order: run_at, id
    job = first.jobs[0]
    assert (job.phone, job.content, job.message_type, job.message_status) == (
        s.phones[0],
        f"Olá {s.phones[0]}",
        "text",
        "sending",
    )
    rows = {r["id"]: r for r in job_rows(conn, s.job_ids)}
    assert rows[job.id]["status"] == "processing"
    # The claim spends no attempt: the job says which attempt it is, the row counts tries made.
    assert (job.attempts, rows[job.id]["attempts"]) == (1, 0)
    assert rows[job.id]["locked_by"] == "w1"
    assert scalar(conn, "SELECT status FROM message_logs WHERE id = %s", job.message_id) == "sending"
    assert scalar(conn, "SELECT locked_by FROM instances WHERE name = 'a'") == "w1"


def test_an_instance_in_flight_is_not_claimed_again_by_anyone(conn: Conn) -> None:
    s = seed_campaign(conn, 4, instances=["a"])
    assert len(paced(conn, s.tenant_id, worker="w1", run_size=1)[0].jobs) == 1
    assert paced(conn, s.tenant_id, worker="w2") == []
    assert paced(conn, s.tenant_id, worker="w1") == []


def test_a_gapped_campaign_claims_one_job_per_instance(conn: Conn) -> None:
    s = seed_campaign(conn, 6, instances=["a", "b"], delay=(1, 2))
    runs = paced(conn, s.tenant_id)
    assert sorted((r.instance, len(r.jobs)) for r in runs) == [("a", 1), ("b", 1)]
    assert runs[0].jobs[0].delay_min == 1.0
    assert runs[0].jobs[0].delay_max == 2.0


def test_next_send_at_paused_until_and_campaign_status_gate_the_claim(conn: Conn) -> None:
    s = seed_campaign(conn, 3, instances=["a", "b", "c"])
    conn.execute("UPDATE instances SET next_send_at = now() + interval '1 hour' WHERE name = 'a'")
    conn.execute("UPDATE instances SET paused_until = now() + interval '1 hour' WHERE name = 'b'")
    conn.commit()
    assert [r.instance for r in paced(conn, s.tenant_id)] == ["c"]
    other = seed_campaign(conn, 2, instances=["d"], status="paused")
    cancelled = seed_campaign(conn, 2, instances=["e"], status="cancelled")
    assert paced(conn, other.tenant_id) == []
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM jobs WHERE campaign_id = %s AND status = 'pending'",
            cancelled.campaign_id,
        )
        == 2
    )


def test_blocked_instances_do_not_take_the_slots_of_instances_with_work(conn: Conn) -> None:
    seed_campaign(conn, 5, instances=["aaa"], status="paused")
    s = seed_campaign(conn, 1, instances=["zzz"])
    conn.execute("UPDATE instances SET next_send_at = now() - interval '1 day' WHERE name = 'aaa'")
    conn.commit()
    assert [r.instance for r in paced(conn, s.tenant_id, instances=1)] == ["zzz"]


def test_daily_cap_counts_sao_paulo_days_and_limits_runs(conn: Conn) -> None:
    s = seed_campaign(conn, 6, instances=["a"], daily_cap=5)
    sp_today = "(now() AT TIME ZONE 'America/Sao_Paulo')::date"
    conn.execute(f"UPDATE instances SET sent_today = 3, day = {sp_today}")
    conn.commit()
    runs = paced(conn, s.tenant_id)
    assert len(runs[0].jobs) == 2  # 3 sent today + 2 = the cap
    conn.execute(
        f"UPDATE instances SET sent_today = 5, day = {sp_today}, locked_by = NULL, locked_until = NULL"
    )
    conn.commit()
    assert paced(conn, s.tenant_id) == []
    conn.execute(f"UPDATE instances SET day = {sp_today} - 1")
    conn.commit()
    assert len(paced(conn, s.tenant_id)[0].jobs) == 4  # yesterday's count no longer applies


def test_priority_then_run_at_order(conn: Conn) -> None:
    low = seed_campaign(conn, 2, instances=["a"])
    high = seed_campaign(conn, 1, instances=["a"], priority=5)
    runs = paced(conn, low.tenant_id, run_size=3)
    assert [j.id for j in runs[0].jobs] == [high.job_ids[0], *low.job_ids]


def test_future_jobs_wait(conn: Conn) -> None:
    s = seed_campaign(conn, 2, instances=["a"], run_at_offset_s=3600)
    assert paced(conn, s.tenant_id) == []


def test_a_run_stops_before_a_job_whose_campaign_wants_a_gap(conn: Conn) -> None:
    fast = seed_campaign(conn, 2, instances=["a"])
    slow = seed_campaign(conn, 2, instances=["a"], delay=(5, 10))
    runs = paced(conn, fast.tenant_id)
    assert [j.id for j in runs[0].jobs] == fast.job_ids
    conn.execute("UPDATE jobs SET status = 'completed' WHERE id = ANY(%s)", (fast.job_ids,))
    conn.execute("UPDATE instances SET locked_by = NULL, locked_until = NULL")
    conn.commit()
    assert [j.id for j in paced(conn, fast.tenant_id)[0].jobs] == slow.job_ids[:1]


def test_cancelled_message_comes_back_without_its_message(conn: Conn) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    conn.execute("UPDATE message_logs SET status = 'cancelled'")
    conn.commit()
    job = paced(conn, s.tenant_id)[0].jobs[0]
    assert job.message_id == s.message_ids[0]
    assert job.message_status is None
    assert scalar(conn, "SELECT status FROM message_logs") == "cancelled"


def test_unpaced_claim_takes_known_task_types_only(conn: Conn) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    conn.execute(
        'INSERT INTO jobs (tenant_id, payload) VALUES (%s, \'{"task_type": "send-message", "data": {}}\'), '
        '(%s, \'{"task_type": "tts", "data": {}}\')',
        (s.tenant_id, s.tenant_id),
    )
    conn.commit()
    conn.execute("UPDATE instances SET paused_until = now() + interval '1 hour'")
    conn.commit()
    runs = claim(conn, Claimer([s.tenant_id], "w", 30, TYPES), slots=10, run_size=1)
    conn.commit()
    assert [(r.instance, r.jobs[0].task_type) for r in runs] == [(None, "send-message")]


def test_expired_leases_go_back_at_no_cost_and_poison_jobs_are_taken_over(conn: Conn) -> None:
    s = seed_campaign(conn, 2, instances=["a"], retries=0)
    paced(conn, s.tenant_id, worker="dead")
    conn.execute("UPDATE jobs SET locked_until = now() - interval '1 second'")
    # The first job already killed its worker twice: the third expiry gives it up.
    conn.execute("UPDATE jobs SET lease_expiries = 2 WHERE id = %s", (s.job_ids[0],))
    conn.execute("UPDATE instances SET locked_until = now() - interval '1 second'")
    conn.commit()
    reset = leases.reset_expired(conn, tenants=[s.tenant_id], worker="me", lease_s=0.001)
    conn.commit()
    assert (reset.jobs, reset.instances, [j.id for j in reset.exhausted]) == (1, 1, [s.job_ids[0]])
    assert "stopped 3 times" in reset.failures(DEFAULT_POLICY)[0].error  # type: ignore[operator]
    rows = {r["id"]: r for r in job_rows(conn, s.job_ids)}
    assert (rows[s.job_ids[0]]["status"], rows[s.job_ids[0]]["locked_by"]) == ("processing", "me")
    # retries: 0 and yet back to pending: a lapsed lease spends no attempt.
    assert (rows[s.job_ids[1]]["status"], rows[s.job_ids[1]]["locked_by"]) == ("pending", None)
    assert rows[s.job_ids[1]]["attempts"] == 0
    assert scalar(conn, "SELECT status FROM message_logs WHERE id = %s", s.message_ids[1]) == "queued"
    assert scalar(conn, "SELECT locked_by FROM instances") is None


def test_leases_get_a_leases_grace_after_a_server_restart(conn: Conn) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    paced(conn, s.tenant_id, worker="cut-off")
    conn.execute("UPDATE jobs SET locked_until = now() - interval '1 second'")
    conn.execute("UPDATE instances SET locked_until = now() - interval '1 second'")
    conn.commit()
    # The server started less than a day ago: a holder cut off by the restart may still come back.
    reset = leases.reset_expired(conn, tenants=[s.tenant_id], worker="me", lease_s=86_400)
    conn.commit()
    assert (reset.jobs, reset.instances) == (0, 0)
    assert job_rows(conn, s.job_ids)[0]["locked_by"] == "cut-off"


def test_a_lapsed_lease_of_a_cancelled_campaign_cancels_its_message(conn: Conn) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    paced(conn, s.tenant_id, worker="dead")
    conn.execute("UPDATE jobs SET locked_until = now() - interval '1 second'")
    conn.execute("UPDATE campaigns SET status = 'cancelled'")
    conn.commit()
    leases.reset_expired(conn, tenants=[s.tenant_id], worker="me", lease_s=0.001)
    conn.commit()
    assert job_rows(conn, s.job_ids)[0]["status"] == "cancelled"
    assert scalar(conn, "SELECT status FROM message_logs WHERE id = %s", s.message_ids[0]) == "cancelled"


def test_heartbeat_extends_only_my_leases(conn: Conn) -> None:
    s = seed_campaign(conn, 2, instances=["a", "b"], delay=(1, 1))
    claim(conn, Claimer([s.tenant_id], "me", 5, TYPES), slots=1, run_size=1)
    claim(conn, Claimer([s.tenant_id], "you", 5, TYPES), slots=1, run_size=1)
    conn.commit()
    mine_ids = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE locked_by = 'me'").fetchall()]
    # A job the worker no longer holds in memory (forgotten) is not renewed, even though it is locked_by me.
    conn.execute("UPDATE jobs SET locked_by = 'me' WHERE locked_by = 'you'")
    conn.commit()
    leases.heartbeat(
        conn, worker="me", lease_s=600, jobs=mine_ids, instances=[(s.tenant_id, "a"), (s.tenant_id, "b")]
    )
    conn.execute("UPDATE jobs SET locked_by = 'you' WHERE NOT (id = ANY(%s))", (mine_ids,))
    conn.commit()
    mine = scalar(
        conn, "SELECT locked_until - now() > interval '500 seconds' FROM jobs WHERE locked_by = 'me'"
    )
    yours = scalar(
        conn, "SELECT locked_until - now() > interval '500 seconds' FROM jobs WHERE locked_by = 'you'"
    )
    assert (mine, yours) == (True, False)
    assert (
        scalar(conn, "SELECT count(*) FROM instances WHERE locked_until - now() > interval '500 seconds'")
        == 1
    )
