"""Exactly once under faults: database restarts, a revoked key, Evolution down, a skewed clock, operator
stops and slow sends. Every test counts the sends the stub accepted: no duplicate, no message failed unsent.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from pathlib import Path

import psycopg
import pytest
import time_machine
from pydantic import SecretStr

from dispara.campaigns import control
from dispara.config import Settings, WorkerConfig
from dispara.db import embedded
from dispara.db.connect import connect
from dispara.queue.worker import run_worker
from tests.conftest import PgServer
from tests.integration.queue.conftest import (
    Conn,
    Seeded,
    campaign_state,
    job_rows,
    make_settings,
    scalar,
    seed_campaign,
    start_worker,
    wait_for,
)
from tests.stubs.evolution_stub import EvolutionStub


def assert_exactly_once(
    conn: Conn, stub: EvolutionStub, s: Seeded, *, failed: int = 0, reply_lost: int = 0
) -> None:
    """Every message out once (no duplicate, none lost), none failed unsent, counters = message_logs.

    `reply_lost`: how many sends may have had their reply cut off after the stub accepted them (the
    server went away mid-request): the one duplicate the contract cannot rule out.
    """
    wait_for(lambda: campaign_state(conn, s.campaign_id)["status"] == "completed", 120, "the campaign to end")
    accepted = stub.accepted_numbers()
    twice = [p for p in s.phones if accepted[p] > 1]
    assert len(twice) <= reply_lost and all(accepted[p] == 2 for p in twice), "messages sent twice"
    state = campaign_state(conn, s.campaign_id)
    assert state["messages"] == {"sent": len(s.phones) - failed, **({"failed": failed} if failed else {})}
    assert (state["sent_count"], state["failed_count"]) == (len(s.phones) - failed, failed)
    rows = conn.execute(
        "SELECT phone_number FROM message_logs WHERE campaign_id = %s AND status = 'sent'", (s.campaign_id,)
    )
    sent_numbers = {r[0] for r in rows}
    assert sent_numbers == {p for p in s.phones if accepted[p] >= 1}
    conn.commit()


def fault_settings(db_dsn: str, tmp_path: Path, stub: EvolutionStub, **worker: object) -> Settings:
    settings = make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url, lease_s=5.0, poll_s=0.2)
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=worker)})


def test_a_revoked_key_pauses_every_campaign_and_spends_nothing(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 100, instances=["a", "b"], retries=0)
    other = seed_campaign(conn, 10, instances=["c"], retries=0)
    stub.configure(latency_s=0.005)
    settings = fault_settings(db_dsn, tmp_path, stub)
    running = start_worker(settings)
    wait_for(lambda: len(stub.sends()) >= 10, what="some sends")
    stub.configure(api_key="rotated-key")  # the operator rotated the key on the server
    wait_for(lambda: campaign_state(conn, s.campaign_id)["status"] == "paused", what="the campaign to pause")
    wait_for(
        lambda: campaign_state(conn, other.campaign_id)["status"] in ("paused", "completed"), what="other"
    )
    running.stop.set()
    running.join()
    state = campaign_state(conn, s.campaign_id)
    assert "Evolution API key rejected (401)" in state["reason"] and "campaign resume" in state["reason"]
    assert state["failed_count"] == 0 and "failed" not in state["messages"]
    pending = [r for r in job_rows(conn, s.job_ids) if r["status"] == "pending"]
    assert pending and all(r["attempts"] == 0 for r in pending)  # retries: 0, and still sendable
    # The operator fixes the key and resumes: everything goes out exactly once.
    fixed = settings.model_copy(
        update={"evolution": settings.evolution.model_copy(update={"api_key": SecretStr("rotated-key")})}
    )
    stub.configure(api_key="rotated-key")
    for cid in (s.campaign_id, other.campaign_id):
        if campaign_state(conn, cid)["status"] == "paused":
            control.resume(conn, cid)
    run_worker(fixed, once=True, max_seconds=60)
    assert_exactly_once(conn, stub, s)
    assert_exactly_once(conn, stub, other)


def test_evolution_down_for_30s_pauses_its_instances_and_fails_nothing(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 120, instances=["a", "b", "c"], retries=2)
    stub.configure(latency_s=0.005)
    settings = fault_settings(db_dsn, tmp_path, stub, unreachable_cap_s=4.0)
    running = start_worker(settings)
    try:
        wait_for(lambda: len(stub.sends()) >= 15, what="some sends")
        stub.down()
        down_at = time.monotonic()
        wait_for(
            lambda: scalar(conn, "SELECT count(*) FROM instances WHERE paused_until > now()") == 3,
            what="every instance to rest",
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage itself
        stub.up()
        # A send on the wire when the server went away may have been accepted without our hearing back.
        assert_exactly_once(conn, stub, s, reply_lost=3)
    finally:
        running.stop.set()
        running.join()
    # Refused connections spend no attempt; only a send cut off mid-request (one per instance at most,
    # in flight when the server went away) is retried as maybe delivered.
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE attempts > 1") <= 3
    assert scalar(conn, "SELECT max(attempts) FROM jobs") <= 2


@pytest.mark.parametrize(("mode", "down_s"), [("fast", 3), ("immediate", 3), ("fast", 20), ("immediate", 20)])
def test_the_worker_rides_out_a_database_restart(
    conn: Conn,
    db_dsn: str,
    tmp_path: Path,
    stub: EvolutionStub,
    pg_server: PgServer,
    mode: str,
    down_s: float,
) -> None:
    if pg_server.pgdata is None:
        pytest.skip("stops the test server: needs the embedded one, not DATABASE_URL")
    s = seed_campaign(conn, 240, instances=["a", "b", "c"], retries=0)
    conn.close()
    stub.configure(latency_s=0.01)
    running = start_worker(fault_settings(db_dsn, tmp_path, stub))
    try:
        wait_for(lambda: len(stub.sends()) >= 30, what="some sends")
        embedded.stop_server(pg_server.pgdata, mode)
        time.sleep(down_s)  # the outage itself: the worker must ride it out
        embedded.start_server(pg_server.pgdata)
        with psycopg.connect(db_dsn) as again:
            assert_exactly_once(again, stub, s)
    finally:
        running.stop.set()
        running.join()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_worker_restarts_the_embedded_server_it_uses(
    tmp_path: Path, stub: EvolutionStub, mode: str
) -> None:
    data_dir = tmp_path / "embedded"
    dsn = embedded.ensure_running(data_dir)
    try:
        settings = Settings(
            data_dir=data_dir,
            evolution=make_settings(dsn, data_dir, evolution_url=stub.url).evolution,
            worker=WorkerConfig(lease_s=5.0, poll_interval_s=0.2),
        )
        with connect(settings) as c:  # migrates the embedded database, as any command would
            s = seed_campaign(c, 150, instances=["a", "b", "c"], retries=0)
        stub.configure(latency_s=0.01)
        running = start_worker(settings)
        try:
            wait_for(lambda: len(stub.sends()) >= 20, what="some sends")
            embedded.stop(data_dir, mode)
            with connect(
                settings
            ) as c:  # started again by whoever needs it next: here the test or the worker
                assert_exactly_once(c, stub, s)
        finally:
            running.stop.set()
            running.join()
    finally:
        embedded.stop(data_dir)


def test_outcomes_that_cannot_be_stored_at_exit_are_spooled_and_stored_later(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub, pg_server: PgServer
) -> None:
    if pg_server.pgdata is None:
        pytest.skip("stops the test server: needs the embedded one, not DATABASE_URL")
    s = seed_campaign(conn, 60, instances=["a", "b"], retries=0)
    conn.close()
    stub.configure(latency_s=0.01)
    settings = fault_settings(db_dsn, tmp_path, stub)
    running = start_worker(settings)
    wait_for(lambda: len(stub.sends()) >= 10, what="some sends")
    embedded.stop_server(pg_server.pgdata, "immediate")
    running.stop.set()
    running.join(60)  # exits with the database still down: what it sent is kept on disk
    spooled = list((settings.data_dir / "spool").glob("*.jsonl"))
    assert spooled, "nothing was spooled"
    embedded.start_server(pg_server.pgdata)
    run_worker(settings, once=True, max_seconds=60)
    assert not list((settings.data_dir / "spool").iterdir())
    with psycopg.connect(db_dsn) as again:
        assert_exactly_once(again, stub, s)


def test_windows_are_decided_on_the_database_clock(
    conn: Conn, outbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window open now in São Paulo and closed three hours from now: a worker whose host clock runs
    # three hours ahead must still send.
    row = conn.execute("SELECT (now() AT TIME ZONE 'America/Sao_Paulo')::time").fetchone()
    assert row is not None
    local = dt.datetime.combine(dt.date.today(), row[0])
    start, end = (local - dt.timedelta(minutes=30)).time(), (local + dt.timedelta(hours=1)).time()
    if end < start:
        pytest.skip("the window would cross midnight in São Paulo right now")
    s = seed_campaign(conn, 3, instances=["a"])
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "America/Sao_Paulo"}
    conn.execute(
        "UPDATE campaigns SET document = "
        "jsonb_build_object('schedule', jsonb_build_object('window', %s::jsonb))",
        (json.dumps(window),),
    )
    conn.commit()
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3), tick=True):
        summary = run_worker(outbox_settings, once=True, max_seconds=30)
    assert summary.sent == 3
    assert campaign_state(conn, s.campaign_id)["status"] == "completed"


@pytest.mark.parametrize("action", ["cancel", "pause"])
def test_cancel_and_pause_stop_a_claimed_run_before_its_next_send(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub, action: str
) -> None:
    s = seed_campaign(conn, 300, instances=["a"])  # delay 0: one claim takes a run of 100
    stub.configure(latency_s=0.005)
    running = start_worker(fault_settings(db_dsn, tmp_path, stub, batch_size=100))
    try:
        wait_for(lambda: len(stub.sends()) >= 10, what="some sends")
        with psycopg.connect(db_dsn) as operator:
            if action == "cancel":
                control.cancel(operator, s.campaign_id)
            else:
                control.pause(operator, s.campaign_id)
        after = len(stub.sends())
        time.sleep(0.5)  # anything the worker would still send would arrive now
        assert len(stub.sends()) == after, f"messages went out after `campaign {action}` returned"
        state = campaign_state(conn, s.campaign_id)
        assert state["sent_count"] == after and state["failed_count"] == 0
        expected = "cancelled" if action == "cancel" else "queued"
        assert state["messages"] == {"sent": after, expected: 300 - after}
        assert scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'processing'") == 0
    finally:
        running.stop.set()
        running.join()
    if action == "pause":
        control.resume(conn, s.campaign_id)
        run_worker(fault_settings(db_dsn, tmp_path, stub), once=True, max_seconds=60)
        assert_exactly_once(conn, stub, s)


def test_a_send_longer_than_the_grace_period_strands_nothing(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 20, instances=["a", "b"])
    stub.configure(latency_s=2.0)
    settings = fault_settings(db_dsn, tmp_path, stub, grace_s=0.2, batch_size=10)
    running = start_worker(settings)
    wait_for(lambda: len(stub.requests()) >= 1, what="a send in flight")
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'processing'") >= 2, what="claim")
    running.stop.set()
    summary = running.join()
    # The runs' other jobs went back at once (not after the lease); the sends in flight finished.
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'processing'") == 0
    assert summary.sent == len(stub.sends()) >= 1
    stub.configure(latency_s=0.0)
    run_worker(settings, once=True, max_seconds=60)
    assert_exactly_once(conn, stub, s)


def test_once_waits_for_a_resting_instance_and_says_what_is_left(
    conn: Conn, outbox_settings: Settings
) -> None:
    s = seed_campaign(conn, 4, instances=["a"])
    held = seed_campaign(conn, 2, instances=["b"])
    conn.execute(
        "UPDATE instances SET paused_until = now() + interval '1 second', pause_reason = 'rest' "
        "WHERE name = 'a'"
    )
    conn.execute("UPDATE campaigns SET status = 'paused' WHERE id = %s", (held.campaign_id,))
    conn.commit()
    summary = run_worker(outbox_settings, once=True, max_seconds=30)
    assert summary.sent == 4
    assert campaign_state(conn, s.campaign_id)["status"] == "completed"
    assert [(g.reason, g.jobs) for g in summary.left] == [("campaign paused", 2)]


def test_a_dropped_connection_rests_seconds_and_resumes_once_open(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 40, instances=["a", "b"])
    stub.configure(closed_at_send={"a"}, latency_s=0.005)  # sends on "a" answer "Connection Closed"
    running = start_worker(fault_settings(db_dsn, tmp_path, stub))
    try:
        wait_for(
            lambda: scalar(conn, "SELECT probe FROM instances WHERE name = 'a'") is True,
            what="instance a to rest with a probe due",
        )
        rest = scalar(conn, "SELECT extract(epoch FROM paused_until - now()) FROM instances WHERE name = 'a'")
        assert rest <= 2.5  # seconds, not the 30 s it used to be
        stub.configure(closed_at_send=set())  # WhatsApp reconnected
        assert_exactly_once(conn, stub, s)
    finally:
        running.stop.set()
        running.join()
    row = conn.execute("SELECT consecutive_failures, probe FROM instances WHERE name = 'a'").fetchone()
    assert row == (0, False)
    assert scalar(conn, "SELECT max(attempts) FROM jobs") == 1  # the drops spent no attempt


def test_failures_escalate_per_send_with_no_success_between(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    seed_campaign(conn, 3, instances=["a"])
    # connectionState says open, yet every send fails: each probe passes, each send fails again.
    stub.configure(closed_at_send={"a"})
    running = start_worker(fault_settings(db_dsn, tmp_path, stub, pause_base_s=0.2))
    try:
        wait_for(
            lambda: scalar(conn, "SELECT consecutive_failures FROM instances WHERE name = 'a'") >= 3,
            what="three failures in a row",
        )
    finally:
        running.stop.set()
        running.join()
    sends = [r for r in stub.requests() if r.route == "sendText"]
    streak = scalar(conn, "SELECT consecutive_failures FROM instances WHERE name = 'a'")
    assert len(sends) == streak  # one failure per send, however outcomes were batched
    gaps = [b.mono - a.mono for a, b in itertools.pairwise(sends)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))  # each rest is longer
