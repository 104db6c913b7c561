"""Job start/finish webhooks: exact bodies, campaign-level events, a dead receiver, `webhook.required`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispara import tenant_settings
from dispara.config import Settings, WebhookConfig
from dispara.queue.worker import run_worker
from tests.integration.queue.conftest import (
    Conn,
    Receiver,
    campaign_state,
    job_rows,
    make_settings,
    scalar,
    seed_campaign,
    start_worker,
    wait_for,
)
from tests.stubs.evolution_stub import EvolutionStub


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hooked(db_dsn: str, tmp_path: Path, url: str | None, **webhook: Any) -> Settings:
    return make_settings(db_dsn, tmp_path / "data", webhook=WebhookConfig(url=url, **webhook))


def test_start_and_finish_events_per_job(conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver) -> None:
    s = seed_campaign(conn, 2, instances=["a"])
    run_worker(hooked(db_dsn, tmp_path, receiver.url), once=True, max_seconds=30)
    wait_for(lambda: len(receiver.received()) == 4, what="4 events")
    expected = []
    for row, message_id in zip(job_rows(conn, s.job_ids), s.message_ids, strict=True):
        data = {"message_id": message_id, "campaign_id": str(s.campaign_id)}
        started = iso(row["started_at"])
        expected.append(
            {
                "job_name": "send-message",
                "startedAt": started,
                "finishedAt": None,
                "status": "processing",
                "data": data,
            }
        )
        expected.append(
            {
                "job_name": "send-message",
                "startedAt": started,
                "finishedAt": iso(row["finished_at"]),
                "status": "completed",
                "data": data,
            }
        )
    got = receiver.received()
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    # A job's start is always delivered before its finish.
    first_seen = {(e["data"]["message_id"], e["status"]): i for i, e in enumerate(got)}
    for message_id in s.message_ids:
        assert first_seen[(message_id, "processing")] < first_seen[(message_id, "completed")]


def test_failed_job_event(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    stub.configure(not_on_whatsapp=set(s.phones))
    settings = make_settings(
        db_dsn, tmp_path / "data", evolution_url=stub.url, webhook=WebhookConfig(url=receiver.url)
    )
    run_worker(settings, once=True, max_seconds=30)
    wait_for(lambda: len(receiver.received()) == 2, what="2 events")
    finish = [e for e in receiver.received() if e["status"] != "processing"]
    row = job_rows(conn, s.job_ids)[0]
    assert finish == [
        {
            "job_name": "send-message",
            "startedAt": iso(row["started_at"]),
            "finishedAt": iso(row["finished_at"]),
            "status": "failed",
            "data": {"message_id": s.message_ids[0], "campaign_id": str(s.campaign_id)},
        }
    ]


def test_campaign_level_events(conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver) -> None:
    s = seed_campaign(conn, 5, instances=["a", "b"], name="black-friday")
    settings = hooked(db_dsn, tmp_path, receiver.url, campaign_events="campaign")
    run_worker(settings, once=True, max_seconds=30)
    wait_for(lambda: len(receiver.received()) == 2, what="2 events")
    row = conn.execute("SELECT first_claimed_at, completed_at FROM campaigns").fetchone()
    assert row is not None
    base = {"campaign_id": str(s.campaign_id), "name": "black-friday", "total_messages": 5}
    assert receiver.received() == [
        {
            "job_name": "send-message",
            "startedAt": iso(row[0]),
            "finishedAt": None,
            "status": "processing",
            "data": base,
        },
        {
            "job_name": "send-message",
            "startedAt": iso(row[0]),
            "finishedAt": iso(row[1]),
            "status": "completed",
            "data": {**base, "sent_count": 5, "failed_count": 0},
        },
    ]


def test_tenant_setting_is_used_when_no_url_is_configured(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = seed_campaign(conn, 1, instances=["a"])
    tenant_settings.set_value(conn, s.tenant_id, "JOB_WEBHOOK", receiver.url)
    conn.commit()
    run_worker(hooked(db_dsn, tmp_path, None), once=True, max_seconds=30)
    wait_for(lambda: len(receiver.received()) == 2, what="2 events")


def test_a_hanging_webhook_never_holds_up_sends(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.hold.clear()  # every delivery hangs until released
    s = seed_campaign(conn, 30, instances=["a", "b", "c"])
    running = start_worker(hooked(db_dsn, tmp_path, receiver.url), once=True, max_seconds=60)
    try:
        wait_for(
            lambda: campaign_state(conn, s.campaign_id)["sent_count"] == 30, timeout=10, what="all sends"
        )
        assert receiver.received() == []  # not one webhook delivered yet
    finally:
        receiver.hold.set()
    assert running.join().sent == 30


def test_webhook_refusing_connections_does_not_fail_jobs(conn: Conn, db_dsn: str, tmp_path: Path) -> None:
    s = seed_campaign(conn, 3, instances=["a"])
    run_worker(hooked(db_dsn, tmp_path, "http://127.0.0.1:9/hook"), once=True, max_seconds=30)
    assert campaign_state(conn, s.campaign_id)["messages"] == {"sent": 3}


def test_required_webhook_missing_fails_the_job(conn: Conn, db_dsn: str, tmp_path: Path) -> None:
    s = seed_campaign(conn, 2, instances=["a"])
    notices: list[str] = []
    run_worker(
        hooked(db_dsn, tmp_path, None, required=True), once=True, max_seconds=30, notice=notices.append
    )
    assert any("webhook.required" in n for n in notices)
    rows = job_rows(conn, s.job_ids)
    assert [(r["status"], r["error_kind"]) for r in rows] == [("failed", "permanent")] * 2
    assert "no webhook is configured" in rows[0]["last_error"]
    state = campaign_state(conn, s.campaign_id)
    assert (state["status"], state["failed_count"]) == ("completed", 2)
    assert (
        not (tmp_path / "data" / "outbox.jsonl").exists()
        or not (tmp_path / "data" / "outbox.jsonl").read_text()
    )


def test_events_left_at_exit_are_delivered_later_by_any_worker_at_least_once(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.hold.clear()  # the receiver hangs: nothing can be delivered before this worker exits
    s = seed_campaign(conn, 40, instances=["a", "b"])
    settings = hooked(db_dsn, tmp_path, receiver.url)
    assert run_worker(settings, once=True, max_seconds=60).sent == 40
    pending = conn.execute("SELECT count(*) FROM webhook_events WHERE status = 'pending'").fetchone()
    conn.commit()
    assert pending is not None and pending[0] >= 79  # 80 events; one may be on the wire to the receiver
    receiver.hold.set()
    conn.execute("UPDATE webhook_events SET locked_until = NULL")  # the dead delivery's lease lapses
    conn.commit()
    run_worker(settings, once=True, max_seconds=60)  # another worker, nothing left to send
    wait_for(
        lambda: scalar(conn, "SELECT count(*) FROM webhook_events WHERE status = 'delivered'") == 80,
        what="every event delivered",
    )
    got = {(e["data"]["message_id"], e["status"]) for e in receiver.received()}
    assert got == {(m, st) for m in s.message_ids for st in ("processing", "completed")}


def test_jobs_show_tells_how_its_webhooks_went(
    conn: Conn, db_dsn: str, tmp_path: Path, receiver: Receiver, capsys: Any, env_db: str
) -> None:
    from tests.helpers import run_cli

    s = seed_campaign(conn, 1, instances=["a"])
    run_worker(hooked(db_dsn, tmp_path, receiver.url), once=True, max_seconds=30)
    wait_for(lambda: len(receiver.received()) == 2, what="2 events")
    out = run_cli(capsys, "jobs", "show", str(s.job_ids[0])).out
    assert "webhooks:" in out
    assert out.count("delivered") == 2 and "processing" in out and "completed" in out
