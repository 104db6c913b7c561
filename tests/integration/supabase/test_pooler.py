"""Through Supabase's transaction pooler (port 6543): no prepared statements, and polling instead of LISTEN
with one warning. A plain TCP relay on port 6543 in front of the test server stands in for the pooler.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dispara.db.connect import Database, open_connection
from dispara.queue.worker import run_worker
from dispara.supabase import pooler
from tests.integration.queue.conftest import Conn, make_settings, seed_campaign


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pooler, "_warned", set())  # each test sees its own first warning


@pytest.mark.parametrize(
    ("dsn", "pooled"),
    [
        ("postgresql://postgres.ref:pw@aws-0-sa-east-1.pooler.supabase.com:6543/postgres", True),
        ("postgresql://postgres.ref:pw@aws-0-sa-east-1.pooler.supabase.com:5432/postgres", False),
        ("host=db.example.com port=6543 dbname=postgres", True),
        ("postgresql://localhost/postgres", False),
        ("not a dsn = = =", False),
    ],
)
def test_the_transaction_pooler_is_told_by_its_port(dsn: str, pooled: bool) -> None:
    assert pooler.is_transaction_pooler(dsn) is pooled
    assert pooler.connect_options(dsn) == ({"prepare_threshold": None} if pooled else {})


class _Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


def _upstream(dsn: str) -> socket.socket:
    """A connection to the server the DSN names, by TCP or by its Unix socket."""
    options = conninfo_to_dict(dsn)
    host, port = str(options.get("host") or "127.0.0.1"), int(options.get("port") or 5432)
    if host.startswith("/"):
        unix = socket.socket(socket.AF_UNIX)
        unix.connect(f"{host}/.s.PGSQL.{port}")
        return unix
    return socket.create_connection((host, port))


@pytest.fixture
def pooled_dsn(db_dsn: str) -> Iterator[str]:
    """db_dsn reached through a TCP relay on 127.0.0.1:6543."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            server = _upstream(db_dsn)
            back = threading.Thread(target=_pipe, args=(server, self.request), daemon=True)
            back.start()
            _pipe(self.request, server)
            back.join()

    try:
        relay = _Relay(("127.0.0.1", int(pooler.TRANSACTION_POOLER_PORT)), Handler)
    except OSError as exc:
        pytest.skip(f"port 6543 is taken here ({exc.strerror})")
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        yield make_conninfo(db_dsn, host="127.0.0.1", port=pooler.TRANSACTION_POOLER_PORT)
    finally:
        relay.shutdown()
        relay.server_close()


def test_connections_through_the_pooler_prepare_nothing(pooled_dsn: str) -> None:
    with open_connection(Database(pooled_dsn, embedded=False)) as conn:
        assert conn.prepare_threshold is None
        for _ in range(10):
            conn.execute("SELECT %s::int", (1,))
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_a_worker_behind_the_pooler_polls_and_says_so_once(
    pooled_dsn: str, conn: Conn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    campaign_id = seed_campaign(conn, 5).campaign_id
    settings = make_settings(pooled_dsn, tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="dispara.db"):
        summary = run_worker(settings, once=True)
        run_worker(settings, once=True)
    assert summary.sent == 5
    warnings = [r.getMessage() for r in caplog.records if r.name == "dispara.db"]
    assert warnings == ["the transaction pooler (port 6543) cannot LISTEN: polling every 0.2s instead; "
                        "the session pooler (port 5432) can"]  # fmt: skip
    state = conn.execute("SELECT sent_count FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()
    assert state == (5,)


def test_a_failing_listen_falls_back_to_polling(db_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn, caplog.at_level(logging.WARNING, "dispara.db"):
        assert pooler.listen(conn, "LISTEN", then="every 3s") is False
        assert pooler.listen(conn, "LISTEN", then="every 3s") is False
        assert pooler.listen(conn, "LISTEN dispara_jobs", then="every 3s") is True
    assert [r.getMessage() for r in caplog.records] == [
        "LISTEN failed (SyntaxError): polling every 3s instead; the session pooler (port 5432) can"
    ]
