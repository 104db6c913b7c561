"""Campaign pause, resume, cancel and retry, and opt-outs at send time, with a real worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispara.campaigns import control
from dispara.errors import InputError
from dispara.queue.worker import run_worker
from tests.integration.queue.conftest import Conn, campaign_state, make_settings, seed_campaign, tenant
from tests.stubs.evolution_stub import EvolutionStub


def drain(db_dsn: str, tmp_path: Path, **kwargs: Any) -> None:
    run_worker(make_settings(db_dsn, tmp_path / "data", **kwargs), once=True, max_seconds=60)


def test_paused_campaign_sends_nothing_until_resumed(conn: Conn, db_dsn: str, tmp_path: Path) -> None:
    seeded = seed_campaign(conn, 6, instances=("a", "b"))
    assert control.pause(conn, seeded.campaign_id) == "paused"
    drain(db_dsn, tmp_path)
    assert campaign_state(conn, seeded.campaign_id)["messages"] == {"queued": 6}
    assert control.resume(conn, seeded.campaign_id) == "processing"
    drain(db_dsn, tmp_path)
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["sent_count"], state["messages"]) == ("completed", 6, {"sent": 6})
    with pytest.raises(InputError, match="not paused"):
        control.resume(conn, seeded.campaign_id)


def test_cancel_marks_unsent_messages_and_removes_their_jobs(conn: Conn, db_dsn: str, tmp_path: Path) -> None:
    seeded = seed_campaign(conn, 5)
    done = control.cancel(conn, seeded.campaign_id)
    assert (done.messages, done.jobs) == (5, 5)
    drain(db_dsn, tmp_path)
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["sent_count"], state["messages"]) == ("cancelled", 0, {"cancelled": 5})
    pending = conn.execute("SELECT count(*) FROM jobs WHERE status = 'pending'").fetchone()
    assert pending == (0,)
    with pytest.raises(InputError, match="already cancelled"):
        control.cancel(conn, seeded.campaign_id)


def test_retry_requeues_failed_messages_but_not_numbers_off_whatsapp(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    seeded = seed_campaign(conn, 4, retries=0)
    off_whatsapp, flaky = seeded.phones[0], seeded.phones[1]
    stub.configure(not_on_whatsapp={off_whatsapp}, fail_first={flaky: 1})
    drain(db_dsn, tmp_path, evolution_url=stub.url)
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 2, 2)

    assert control.retry(conn, seeded.campaign_id) == 1  # the 500, not the exists:false
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["failed_count"]) == ("processing", 1)
    drain(db_dsn, tmp_path, evolution_url=stub.url)
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 3, 1)
    assert [r.body["number"] for r in stub.sends(ok_only=False)].count(flaky) == 2

    assert control.retry(conn, seeded.campaign_id, scope="transient") == 0
    assert control.retry(conn, seeded.campaign_id, scope="all") == 1
    assert campaign_state(conn, seeded.campaign_id)["failed_count"] == 0


def test_number_opted_out_after_queueing_is_cancelled_not_sent(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    seeded = seed_campaign(conn, 3)
    conn.execute(
        "INSERT INTO optouts (tenant_id, phone, reason) VALUES (%s, %s, 'SAIR')",
        (tenant(conn), seeded.phones[1]),
    )
    conn.commit()
    drain(db_dsn, tmp_path, evolution_url=stub.url)
    assert seeded.phones[1] not in {r.body["number"] for r in stub.sends()}
    state = campaign_state(conn, seeded.campaign_id)
    assert (state["status"], state["messages"]) == ("completed", {"sent": 2, "cancelled": 1})
    reason = conn.execute(
        "SELECT error_message FROM message_logs WHERE phone_number = %s", (seeded.phones[1],)
    ).fetchone()
    assert reason == ("opted out after the campaign was queued",)
