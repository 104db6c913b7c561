"""One worker for every tenant: the claim takes turns between tenants, and each tenant sends with its own
Evolution key (real PostgreSQL, Evolution faked by the stub).
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from dispara.config import Settings, WebhookConfig
from dispara.queue.claim import Claimer, Run, claim
from dispara.queue.worker import run_worker
from dispara.tenant_settings import set_value
from tests.helpers import run_subprocess
from tests.integration.queue.conftest import (
    API_KEY,
    Conn,
    Receiver,
    campaign_state,
    make_settings,
    seed_campaign,
    start_worker,
    wait_for,
)
from tests.stubs.evolution_stub import EvolutionStub

TYPES = ["send-message", "tts"]


def claimed(conn: Conn, tenants: list[UUID], slots: int) -> list[Run]:
    runs = claim(conn, Claimer(tenants, "w1", 30, TYPES), slots=slots, run_size=100)
    conn.commit()
    return runs


def test_a_tenant_with_a_big_queue_does_not_hold_back_a_small_one(conn: Conn) -> None:
    big = seed_campaign(conn, 2000, instances=[f"a-{i:02d}" for i in range(20)], tenant_name="big")
    small = seed_campaign(conn, 3, instances=["z"], tenant_name="small")
    tenants = [big.tenant_id, small.tenant_id]
    # The big tenant's instances have all waited longer than the small one's...
    conn.execute("UPDATE instances SET next_send_at = now() - interval '1 second' WHERE name = 'z'")
    conn.commit()
    # ...and there are fewer slots than it has ready instances: the small one still gets one in this round.
    first = claimed(conn, tenants, 4)
    assert len(first) == 4
    assert [r.instance for r in first if r.tenant_id == small.tenant_id] == ["z"]
    assert [len(r.jobs) for r in first if r.tenant_id == small.tenant_id] == [3]
    assert all(j.tenant_id == r.tenant_id for r in first for j in r.jobs)


def test_one_slot_at_a_time_the_tenants_take_turns(conn: Conn) -> None:
    big = seed_campaign(conn, 400, instances=[f"a-{i:02d}" for i in range(20)], tenant_name="big")
    small = seed_campaign(conn, 6, instances=["z-1", "z-2"], delay=(0, 0), tenant_name="small")
    tenants = [big.tenant_id, small.tenant_id]
    order = [run.tenant_id for _ in range(4) for run in claimed(conn, tenants, 1)]
    # Whoever goes first, the other is next: the tenant claimed least recently wins the slot.
    assert order[0] != order[1] and order[1] != order[2] and order[2] != order[3]


def test_unpaced_jobs_of_every_tenant_are_claimed_in_the_first_round(conn: Conn) -> None:
    big = seed_campaign(conn, 1, instances=["a"], tenant_name="big")
    small = seed_campaign(conn, 1, instances=["z"], tenant_name="small")
    conn.execute("UPDATE instances SET paused_until = now() + interval '1 hour'")
    conn.execute(
        "INSERT INTO jobs (tenant_id, payload, run_at) "
        'SELECT %s, \'{"task_type": "tts", "data": {}}\', now() - interval \'1 hour\' '
        "FROM generate_series(1, 200)",
        (big.tenant_id,),
    )
    conn.execute(
        'INSERT INTO jobs (tenant_id, payload) VALUES (%s, \'{"task_type": "tts", "data": {}}\')',
        (small.tenant_id,),
    )
    conn.commit()
    runs = claimed(conn, [big.tenant_id, small.tenant_id], 3)
    # The big tenant's jobs are older, and yet the small tenant's one is taken in this round.
    assert sorted(str(r.tenant_id) for r in runs).count(str(small.tenant_id)) == 1
    assert len(runs) == 3 and all(r.instance is None for r in runs)
    conn.execute("UPDATE jobs SET status = 'pending', locked_by = NULL WHERE status = 'processing'")
    conn.commit()
    # One slot: the tenant given first (the worker gives the one it served least recently) gets it.
    assert [r.tenant_id for r in claimed(conn, [small.tenant_id, big.tenant_id], 1)] == [small.tenant_id]


def test_a_single_tenant_claim_never_sees_another_tenant(conn: Conn) -> None:
    mine = seed_campaign(conn, 3, instances=["a"], tenant_name="mine")
    seed_campaign(conn, 3, instances=["a"], tenant_name="theirs")
    runs = claimed(conn, [mine.tenant_id], 10)
    assert [(r.tenant_id, r.instance, len(r.jobs)) for r in runs] == [(mine.tenant_id, "a", 3)]


def test_every_tenant_sends_with_its_own_key_through_one_worker(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    stub.configure(other_keys={"key-of-b-0123456789"})
    a = seed_campaign(conn, 30, instances=["inst-1", "inst-2"], tenant_name="a")
    b = seed_campaign(
        conn, 20, instances=["inst-1"], tenant_name="b"
    )  # the same instance name, another tenant
    set_value(conn, b.tenant_id, "evolution-apikey", "key-of-b-0123456789")
    conn.commit()
    settings: Settings = make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url)
    summary = run_worker(settings, once=True, max_seconds=60, all_tenants=True)
    assert summary.sent == 50
    key_of = {r.body["number"]: r.headers["apikey"] for r in stub.sends()}
    assert sorted(key_of) == sorted(a.phones + b.phones)  # each number exactly once
    assert {key_of[p] for p in a.phones} == {API_KEY}
    assert {key_of[p] for p in b.phones} == {"key-of-b-0123456789"}
    for seeded, n in ((a, 30), (b, 20)):
        state = campaign_state(conn, seeded.campaign_id)
        assert (state["status"], state["sent_count"], state["messages"]) == ("completed", n, {"sent": n})
    # Pacing state stays per tenant: each tenant's inst-1 counted its own sends.
    rows = conn.execute(
        "SELECT t.name, i.name, i.sent_today, i.locked_by "
        "FROM instances i JOIN tenants t ON t.id = i.tenant_id ORDER BY 1, 2"
    ).fetchall()
    assert rows == [("a", "inst-1", 15, None), ("a", "inst-2", 15, None), ("b", "inst-1", 20, None)]


def test_without_all_tenants_a_worker_leaves_other_tenants_alone(
    conn: Conn, evo_settings: Settings, stub: EvolutionStub
) -> None:
    mine = seed_campaign(conn, 5, instances=["inst-1"])
    other = seed_campaign(conn, 5, instances=["inst-1"], tenant_name="other")
    assert run_worker(evo_settings, once=True, max_seconds=30).sent == 5
    assert sorted(r.body["number"] for r in stub.sends()) == sorted(mine.phones)
    assert campaign_state(conn, other.campaign_id)["messages"] == {"queued": 5}


def test_a_tenant_key_is_never_printed(
    cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub, conn: Conn
) -> None:
    stub.configure(other_keys={"key-of-b-0123456789"})
    b = seed_campaign(conn, 2, instances=["inst-1"], tenant_name="b")
    set_value(conn, b.tenant_id, "evolution-apikey", "key-of-b-0123456789")
    # A key the stub refuses: the worker logs the refusal, and must not log the key with it.
    c = seed_campaign(conn, 1, instances=["inst-9"], tenant_name="c")
    set_value(conn, c.tenant_id, "evolution-apikey", "wrong-key-of-c-987654321")
    conn.commit()
    config = tmp_path / "dispara.yaml"
    config.write_text(json.dumps({"evolution": {"typing_delay_ms": 0}}), encoding="utf-8")
    env = {**cli_env, "EVOLUTION_API_URL": stub.url, "EVOLUTION_API_KEY": API_KEY}
    result = run_subprocess(
        env, "--config", str(config), "-vv", "worker", "--all-tenants", "--once", "--max-seconds", "30"
    )
    assert result.code == 0, result.err
    assert "worker: 2 sent" in result.out
    assert "sending stopped" in result.err  # tenant c's refusal was logged...
    output = result.out + result.err
    assert "key-of-b" not in output and "wrong-key-of-c" not in output  # ...without its key
    assert campaign_state(conn, c.campaign_id)["status"] == "paused"


def test_a_tenant_with_unusable_evolution_settings_pauses_alone(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    good = seed_campaign(conn, 4, instances=["inst-1"], tenant_name="good")
    bad = seed_campaign(conn, 3, instances=["inst-1"], tenant_name="bad")
    set_value(conn, bad.tenant_id, "evolution-url", "not-a-url")
    conn.commit()
    settings = make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url)
    summary = run_worker(settings, once=True, max_seconds=60, all_tenants=True)
    assert summary.sent == 4
    assert sorted(r.body["number"] for r in stub.sends()) == sorted(good.phones)
    state = campaign_state(conn, bad.campaign_id)
    assert state["status"] == "paused" and "Evolution URL must be" in state["reason"]
    assert state["messages"] == {"queued": 3}  # put back unspent, for when the settings are fixed
    assert campaign_state(conn, good.campaign_id)["status"] == "completed"


def test_a_fixed_key_is_used_on_resume_without_a_restart(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    stub.configure(other_keys={"key-of-b-0123456789"})
    b = seed_campaign(conn, 3, instances=["inst-1"], tenant_name="b")
    set_value(conn, b.tenant_id, "evolution-apikey", "a-wrong-key-0123456789")
    conn.commit()
    settings = make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url)
    running = start_worker(settings, all_tenants=True, max_seconds=60)
    wait_for(lambda: campaign_state(conn, b.campaign_id)["status"] == "paused", what="the refusal")
    # The operator fixes the key and resumes the campaign at once; the running worker picks both up.
    set_value(conn, b.tenant_id, "evolution-apikey", "key-of-b-0123456789")
    conn.execute(
        "UPDATE campaigns SET status = 'processing', status_reason = NULL WHERE id = %s", (b.campaign_id,)
    )
    conn.commit()
    wait_for(lambda: campaign_state(conn, b.campaign_id)["status"] == "completed", what="the campaign")
    running.stop.set()
    assert running.join().sent == 3
    assert sorted(r.body["number"] for r in stub.sends()) == sorted(b.phones)
    assert {r.headers["apikey"] for r in stub.sends()} == {"key-of-b-0123456789"}


def test_each_tenant_events_go_to_its_own_webhook_else_the_global_one(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver
) -> None:
    own = Receiver()
    own.thread.start()
    try:
        a = seed_campaign(conn, 2, instances=["inst-1"], tenant_name="a")
        b = seed_campaign(conn, 3, instances=["inst-1"], tenant_name="b")
        set_value(conn, b.tenant_id, "JOB_WEBHOOK", own.url)
        conn.commit()
        settings = make_settings(db_dsn, tmp_path / "data", webhook=WebhookConfig(url=receiver.url))
        assert run_worker(settings, once=True, max_seconds=60, all_tenants=True).sent == 5
        wait_for(lambda: len(receiver.received()) == 4 and len(own.received()) == 6, what="the events")
        campaigns = {str(e["data"]["campaign_id"]) for e in receiver.received()}
        assert campaigns == {str(a.campaign_id)}
        assert {str(e["data"]["campaign_id"]) for e in own.received()} == {str(b.campaign_id)}
    finally:
        own.server.shutdown()
        own.server.server_close()
