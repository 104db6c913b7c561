"""The worker loop end to end in-process: real PostgreSQL, Evolution faked at the HTTP layer by the stub."""

from __future__ import annotations

import collections
import itertools
import json
import threading

import pytest

from dispara.config import Settings, WorkerConfig
from dispara.queue.worker import run_worker
from tests.integration.queue.conftest import (
    Conn,
    campaign_state,
    job_rows,
    scalar,
    seed_campaign,
    start_worker,
    wait_for,
)
from tests.stubs.evolution_stub import EvolutionStub


def numbers(stub: EvolutionStub) -> list[str]:
    return [r.body["number"] for r in stub.sends()]


def test_two_workers_send_every_message_exactly_once(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 500, instances=[f"inst-{i}" for i in range(5)])
    workers = [start_worker(evo_settings, once=True, max_seconds=60, concurrency=3) for _ in range(2)]
    summaries = [w.join() for w in workers]
    assert sorted(numbers(stub)) == sorted(s.phones)  # each number exactly once
    assert sum(x.sent for x in summaries) == 500
    assert all(x.lost == 0 for x in summaries)
    state = campaign_state(conn, s.campaign_id)
    assert state["messages"] == {"sent": 500}
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 500, 0)
    keys = conn.execute("SELECT count(DISTINCT evolution_key) FROM message_logs").fetchone()
    assert keys == (500,)
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE status <> 'completed'") == 0
    assert scalar(conn, "SELECT count(*) FROM instances WHERE locked_by IS NOT NULL") == 0


def test_pacing_spaces_one_instance_while_instances_run_in_parallel(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    stub.configure(latency_s=0.2)
    s = seed_campaign(conn, 6, instances=["a", "b"], delay=(0.6, 0.8))
    summary = run_worker(evo_settings, once=True, max_seconds=30)
    assert summary.sent == 6
    by_instance: dict[str, list[float]] = collections.defaultdict(list)
    for r in stub.sends():
        assert r.instance is not None
        by_instance[r.instance].append(r.mono)
    for times in by_instance.values():
        assert len(times) == 3
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.6 + 0.2  # the gap runs from the end of the previous send
    # Both instances had a request in flight at the same time (each send takes 0.2 s at the stub).
    assert abs(by_instance["a"][0] - by_instance["b"][0]) < 0.2
    assert campaign_state(conn, s.campaign_id)["status"] == "completed"


def test_not_on_whatsapp_fails_at_once_without_retry(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 3, instances=["a"])
    stub.configure(not_on_whatsapp={s.phones[1]})
    run_worker(evo_settings, once=True, max_seconds=30)
    attempts = collections.Counter(r.body["number"] for r in stub.sends(ok_only=False))
    assert attempts[s.phones[1]] == 1
    job = job_rows(conn, [s.job_ids[1]])[0]
    assert (job["status"], job["attempts"], job["error_kind"]) == ("failed", 1, "not_on_whatsapp")
    row = conn.execute(
        "SELECT status, error_kind, error_message FROM message_logs WHERE id = %s", (s.message_ids[1],)
    ).fetchone()
    assert row == ("failed", "not_on_whatsapp", f"number {s.phones[1]} is not on WhatsApp")
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 2, 1)


def test_server_error_is_retried_then_sent(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evo_settings.worker, "retry_base_s", 0.05)
    s = seed_campaign(conn, 2, instances=["a"])
    stub.configure(fail_first={s.phones[0]: 2})
    summary = run_worker(evo_settings, once=True, max_seconds=30)
    assert (summary.sent, summary.retried, summary.failed) == (2, 2, 0)
    job = job_rows(conn, [s.job_ids[0]])[0]
    assert (job["status"], job["attempts"]) == ("completed", 3)
    assert conn.execute(
        "SELECT status, retry_count FROM message_logs WHERE id = %s", (s.message_ids[0],)
    ).fetchone() == ("sent", 2)
    assert campaign_state(conn, s.campaign_id)["sent_count"] == 2


def test_server_error_on_the_last_attempt_fails(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evo_settings.worker, "retry_base_s", 0.05)
    s = seed_campaign(conn, 1, instances=["a"], retries=1)
    stub.configure(fail_first={s.phones[0]: 5})
    run_worker(evo_settings, once=True, max_seconds=30)
    job = job_rows(conn, [s.job_ids[0]])[0]
    assert (job["status"], job["attempts"], job["error_kind"]) == ("failed", 2, "transient")
    assert "gave up after 2 attempts" in job["last_error"]
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["failed_count"]) == ("completed", 1)


def test_connection_closed_pauses_the_instance_without_spending_attempts(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 4, instances=["down", "up"])
    stub.configure(closed_instances={"down"})
    summary = run_worker(evo_settings, once=True, max_seconds=1.5)
    assert summary.sent == 2
    assert summary.instances_paused >= 1
    rows = job_rows(conn, s.job_ids)
    down = [r for r, inst in zip(rows, ["down", "up"] * 2, strict=True) if inst == "down"]
    assert [(r["status"], r["attempts"]) for r in down] == [("pending", 0), ("pending", 0)]
    assert down[0]["last_error"] == (
        "not sent: instance 'down' is not connected to WhatsApp (HTTP 500: Connection Closed)"
    )
    inst = conn.execute(
        "SELECT paused_until > now(), pause_reason, consecutive_failures, probe, locked_by FROM instances "
        "WHERE name = 'down'"
    ).fetchone()
    assert inst is not None
    assert inst[0] is True
    assert "not connected to WhatsApp" in inst[1]
    assert inst[3:] == (True, None)  # its connection is checked before it sends again
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["messages"]) == ("processing", {"sent": 2, "queued": 2})


def test_outbox_when_no_evolution_url(conn: Conn, outbox_settings: Settings) -> None:
    s = seed_campaign(conn, 3, instances=["a"], message_type="image")
    notices: list[str] = []
    summary = run_worker(outbox_settings, once=True, max_seconds=30, notice=notices.append)
    outbox = outbox_settings.data_dir / "outbox.jsonl"
    assert any(str(outbox) in n and "not to WhatsApp" in n for n in notices)
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [(x["number"], x["type"], x["caption"]) for x in lines] == [
        (p, "image", f"Olá {p}") for p in s.phones
    ]
    assert summary.sent == 3


def test_stop_lets_the_send_in_flight_finish_and_puts_the_rest_back(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    stub.configure(latency_s=0.3)
    s = seed_campaign(conn, 10, instances=["a"])  # one run of 10, sent one after the other
    running = start_worker(evo_settings)
    wait_for(lambda: len(stub.sends()) >= 2, what="two sends")
    running.stop.set()
    summary = running.join()
    assert summary.released >= 1
    sent_numbers = numbers(stub)
    rows = job_rows(conn, s.job_ids)
    assert all(r["status"] in ("completed", "pending") for r in rows)
    assert sum(r["status"] == "completed" for r in rows) == len(sent_numbers)
    assert all(r["attempts"] == 0 for r in rows if r["status"] == "pending")
    assert scalar(conn, "SELECT count(*) FROM message_logs WHERE status = 'queued'") == 10 - len(sent_numbers)
    assert scalar(conn, "SELECT count(*) FROM instances WHERE locked_by IS NOT NULL") == 0


def test_max_seconds_bounds_a_run(conn: Conn, evo_settings: Settings, stub: EvolutionStub) -> None:
    seed_campaign(conn, 3, instances=["a"], delay=(30, 30))
    summary = run_worker(evo_settings, once=True, max_seconds=1.0)
    assert summary.sent == 1
    assert summary.stopped == "deadline"


def test_a_job_inserted_later_wakes_an_idle_worker(conn: Conn, outbox_settings: Settings) -> None:
    running = start_worker(
        outbox_settings.model_copy(
            update={"worker": outbox_settings.worker.model_copy(update={"poll_interval_s": 30.0})}
        )
    )
    try:
        wait_for(
            lambda: (
                scalar(
                    conn, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%LISTEN dispara_jobs%%'"
                )
                == 1
            ),
            what="the worker to listen",
        )
        s = seed_campaign(conn, 1, instances=["a"])
        wait_for(lambda: campaign_state(conn, s.campaign_id)["sent_count"] == 1, timeout=5, what="the send")
    finally:
        running.stop.set()
        running.join()


def test_concurrent_stop_event_from_another_thread(outbox_settings: Settings) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    summary = run_worker(outbox_settings, stop_event=stop)
    assert summary.stopped == "signal"


def test_worker_survives_its_database_connections_being_killed(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    stub.configure(latency_s=0.05)
    s = seed_campaign(conn, 40, instances=["a", "b"])
    running = start_worker(evo_settings, once=True, max_seconds=60)
    wait_for(lambda: len(stub.sends()) >= 5, what="some sends")
    killed = scalar(
        conn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'dispara' AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert killed >= 2
    summary = running.join()
    assert sorted(numbers(stub)) == sorted(s.phones)  # nothing sent twice: the leases were never lost
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["messages"]) == ("completed", 40, {"sent": 40})
    assert summary.sent == 40


def test_a_dead_workers_job_on_its_last_attempt_runs_again_at_no_cost(
    conn: Conn, outbox_settings: Settings
) -> None:
    s = seed_campaign(conn, 2, instances=["a"], retries=0)
    conn.execute(
        "UPDATE jobs SET status = 'processing', locked_by = 'dead', "
        "locked_until = now() - interval '1 second' WHERE id = %s",
        (s.job_ids[0],),
    )
    conn.execute("UPDATE message_logs SET status = 'sending' WHERE id = %s", (s.message_ids[0],))
    conn.commit()
    summary = run_worker(outbox_settings.model_copy(update={"worker": WorkerConfig(lease_s=0.5)}), once=True)
    assert (summary.sent, summary.failed, summary.leases_reset) == (2, 0, 1)
    job = job_rows(conn, [s.job_ids[0]])[0]
    assert (job["status"], job["attempts"]) == ("completed", 1)
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 2, 0)


def test_a_job_whose_workers_keep_dying_fails_exactly_once(conn: Conn, outbox_settings: Settings) -> None:
    s = seed_campaign(conn, 2, instances=["a"])
    conn.execute(
        "UPDATE jobs SET status = 'processing', locked_by = 'dead', lease_expiries = 2, "
        "locked_until = now() - interval '1 second' WHERE id = %s",
        (s.job_ids[0],),
    )
    conn.execute("UPDATE message_logs SET status = 'sending' WHERE id = %s", (s.message_ids[0],))
    conn.commit()
    summary = run_worker(outbox_settings.model_copy(update={"worker": WorkerConfig(lease_s=0.5)}), once=True)
    assert (summary.sent, summary.failed, summary.leases_reset) == (1, 1, 1)
    job = job_rows(conn, [s.job_ids[0]])[0]
    assert (job["status"], job["error_kind"]) == ("failed", "transient")
    assert "stopped 3 times" in job["last_error"]
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 1, 1)


def test_a_due_scheduled_campaign_is_started_and_sent(conn: Conn, outbox_settings: Settings) -> None:
    s = seed_campaign(conn, 2, instances=["a"], status="scheduled")
    conn.execute("UPDATE campaigns SET scheduled_for = now() - interval '1 second'")
    later = seed_campaign(conn, 1, instances=["b"], status="scheduled")
    conn.execute(
        "UPDATE campaigns SET scheduled_for = now() + interval '1 hour' WHERE id = %s", (later.campaign_id,)
    )
    conn.commit()
    summary = run_worker(outbox_settings, once=True, max_seconds=30)
    assert summary.sent == 2
    assert campaign_state(conn, s.campaign_id)["status"] == "completed"
    assert campaign_state(conn, later.campaign_id)["status"] == "scheduled"
