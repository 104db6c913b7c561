"""The campaign summary against a count of message_logs: concurrent workers, folding, rates, --verify."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dispara import summary
from dispara.db import migrate
from dispara.db.queries import q
from dispara.errors import ExitCode
from dispara.status import snapshot
from tests.helpers import run_cli
from tests.integration.queue.conftest import (
    Conn,
    campaign_state,
    make_settings,
    scalar,
    seed_campaign,
    start_worker,
)
from tests.stubs.evolution_stub import EvolutionStub


def test_two_workers_on_one_campaign_never_disagree_with_the_messages(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 400, instances=("a", "b", "c", "d"))
    workers = [
        start_worker(
            make_settings(db_dsn, tmp_path / f"w{i}", evolution_url=stub.url, batch_size=10), once=True
        )
        for i in range(2)
    ]
    checks = 0
    while any(w.thread.is_alive() for w in workers):  # mid-flight: one snapshot for both readings
        assert summary.verify(conn, s.campaign_id) == []
        conn.commit()
        checks += 1
    for w in workers:
        w.join()
    numbers = [r.body["number"] for r in stub.sends()]
    assert sorted(numbers) == sorted(s.phones)  # each sent once
    state = campaign_state(conn, s.campaign_id)  # asserts the summary agrees
    assert (state["status"], state["messages"]) == ("completed", {"sent": 400})
    assert checks > 0
    assert sum(i.counts["sent"] for i in summary.by_instance(conn, s.campaign_id)) == 400


def test_folding_the_deltas_changes_nothing_a_reader_sees(
    conn: Conn, db_dsn: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 30, instances=("a", "b"))
    start_worker(make_settings(db_dsn, tmp_path / "w", evolution_url=stub.url), once=True).join()
    conn.execute("UPDATE message_logs SET delivered_at = now() WHERE id = ANY(%s)", (s.message_ids[:7],))
    conn.commit()
    before = summary.by_instance(conn, s.campaign_id)
    snap_before = snapshot(conn, s.tenant_id, s.campaign_id)
    while summary.compact(conn):
        pass
    assert scalar(conn, "SELECT count(*) FROM campaign_summary_deltas") == 0
    after = summary.by_instance(conn, s.campaign_id)
    assert [(i.instance, i.counts) for i in after] == [(i.instance, i.counts) for i in before]
    assert sum(i.counts["delivered"] for i in after) == 7
    snap_after = snapshot(conn, s.tenant_id, s.campaign_id)
    assert snap_after.sent_last_minute == snap_before.sent_last_minute == 30  # from the 10 s buckets
    assert (snap_after.counts, snap_after.receipts) == (snap_before.counts, snap_before.receipts)
    assert snap_after.last_sent_at is not None and snap_after.last_claim_at is not None
    assert summary.verify(conn, s.campaign_id) == []


def test_deltas_of_a_deleted_campaign_are_dropped(conn: Conn) -> None:
    s = seed_campaign(conn, 3)
    conn.execute("UPDATE message_logs SET status = 'cancelled' WHERE campaign_id = %s", (s.campaign_id,))
    conn.execute("DELETE FROM campaigns WHERE id = %s", (s.campaign_id,))
    conn.commit()
    assert summary.compact(conn) == 1
    assert scalar(conn, "SELECT count(*) FROM campaign_summary_deltas") == 0
    assert scalar(conn, "SELECT count(*) FROM campaign_summary") == 0


def test_status_verify_agrees_or_names_every_difference_and_exits_8(
    env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(env_db) as conn:
        s = seed_campaign(conn, 4, instances=("a", "b"), name="conferida")
    ok = run_cli(capsys, "status", "conferida", "--verify")
    assert ok.code == 0 and "summary verified" in ok.out
    with psycopg.connect(env_db) as conn:
        conn.execute("UPDATE campaign_summary SET queued = queued + 5, sent = 1 WHERE instance = 'b'")
    bad = run_cli(capsys, "status", "conferida", "--verify")
    assert bad.code == ExitCode.COUNTS_DISAGREE
    assert [line for line in bad.err.splitlines() if not line.startswith("warning: campaign counters")] == [
        "summary disagrees with message_logs: b: queued 7 in the summary, 2 in message_logs",
        "summary disagrees with message_logs: b: sent 1 in the summary, 0 in message_logs",
    ]
    shown = json.loads(run_cli(capsys, "status", "conferida", "--verify", "--json").out)
    assert shown["verify"]["agrees"] is False and len(shown["verify"]["differences"]) == 2
    assert shown["queued"] == 9 and str(s.campaign_id) == shown["id"]


def test_migrating_counts_the_campaigns_already_there(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn) as db:
        db.execute(q("migrations_table"))
        for m in migrate.available():
            if m.name != "summary":
                db.execute(m.sql.encode())
                db.execute(
                    "INSERT INTO dispara_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        s = seed_campaign(db, 6, instances=("a", "b"), summarised=False)
        db.execute(
            "UPDATE message_logs SET status = 'sent', delivered_at = now() WHERE id = %s", (s.message_ids[0],)
        )
        db.commit()
        assert [m.name for m in migrate.apply(db)] == ["summary"]
        assert summary.verify(db, s.campaign_id) == []
        counts = {
            i.instance: (i.counts["queued"], i.counts["sent"]) for i in summary.by_instance(db, s.campaign_id)
        }
        assert counts == {"a": (2, 1), "b": (3, 0)}
