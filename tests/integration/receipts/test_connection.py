"""connection.update, logout.instance and status.instance pause an instance until Evolution says `open`."""

from __future__ import annotations

from pathlib import Path

from dispara.queue.worker import run_worker
from tests.integration.queue.conftest import API_KEY, Conn, make_settings, seed_campaign
from tests.integration.receipts.conftest import drain, post
from tests.stubs import evolution_events as ev
from tests.stubs.evolution_stub import EvolutionStub


def _pause(conn: Conn, name: str = "inst-a") -> tuple[bool, str | None, str | None]:
    row = conn.execute(
        "SELECT paused_until > now() + interval '1 year', pause_reason, connection_state "
        "FROM instances WHERE name = %s",
        (name,),
    ).fetchone()
    conn.commit()
    assert row is not None
    return row[0] is True, row[1], row[2]


def test_close_pauses_until_open(conn: Conn) -> None:
    seeded = seed_campaign(conn, 1)
    post(conn, seeded.tenant_id, ev.connection("inst-a", "open"), ev.connection("inst-a", "close", 401))
    drain(conn, seeded.tenant_id)
    paused, reason, state = _pause(conn)
    assert paused and state == "close"
    assert reason == "Evolution: connection close (code 401)"
    post(conn, seeded.tenant_id, ev.connection("inst-a", "connecting"))
    drain(conn, seeded.tenant_id)
    assert _pause(conn)[0]  # still waiting for a QR scan
    post(conn, seeded.tenant_id, ev.connection("inst-a", "open", 200) | {"date_time": "later"})
    drain(conn, seeded.tenant_id)
    assert _pause(conn) == (False, None, "open")


def test_logout_and_status_instance_pause_refused_too(conn: Conn) -> None:
    seeded = seed_campaign(conn, 1, instances=("inst-a", "inst-b", "inst-c"))
    post(
        conn,
        seeded.tenant_id,
        ev.logout("inst-a"),
        ev.status_closed("inst-b", 403),
        ev.connection("inst-c", "refused", 428),
    )
    drain(conn, seeded.tenant_id)
    assert _pause(conn, "inst-a")[:2] == (True, "Evolution: logged out of WhatsApp (logout.instance)")
    assert _pause(conn, "inst-b")[:2] == (True, "Evolution: disconnected (status.instance, code 403)")
    assert _pause(conn, "inst-c")[0]


def test_connecting_after_open_pauses_softly_and_not_before(conn: Conn) -> None:
    seeded = seed_campaign(conn, 1, instances=("inst-a", "inst-b"))
    post(conn, seeded.tenant_id, ev.connection("inst-a", "open"), ev.connection("inst-b", "connecting"))
    drain(conn, seeded.tenant_id)
    post(conn, seeded.tenant_id, ev.connection("inst-a", "connecting") | {"date_time": "later"})
    drain(conn, seeded.tenant_id)
    row = conn.execute(
        "SELECT name, paused_until > now(), paused_until < now() + interval '1 year' "
        "FROM instances ORDER BY name"
    ).fetchall()
    assert [tuple(r) for r in row] == [("inst-a", True, True), ("inst-b", None, None)]


def test_a_paused_instance_sends_nothing_and_resumes_on_open(conn: Conn, db_dsn: str, tmp_path: Path) -> None:
    seeded = seed_campaign(conn, 2)
    post(conn, seeded.tenant_id, ev.logout("inst-a"))
    drain(conn, seeded.tenant_id)
    with EvolutionStub(api_key=API_KEY) as stub:
        settings = make_settings(db_dsn, tmp_path, evolution_url=stub.url)
        run_worker(settings, once=True)
        assert stub.sends() == []
        post(conn, seeded.tenant_id, ev.connection("inst-a", "open"))
        drain(conn, seeded.tenant_id)
        run_worker(settings, once=True)
        assert len(stub.sends()) == 2
