"""Row-level security as Supabase applies it (`SET ROLE authenticated` with request.jwt.claims): a tenant
sees, changes and deletes only its own rows in every table; anon reads nothing; the counters check the tenant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from dispara.db import tables
from dispara.supabase.layer import CLIENT_PRIVILEGES
from tests.helpers import run_cli
from tests.integration.supabase.conftest import DISPATCH_KEY, Conn, calls

# One row of each tenant table, for a tenant %(t)s and its campaign %(c)s.
ROWS = {
    "campaigns": None,  # made first, by seed()
    "message_logs": "INSERT INTO message_logs (tenant_id, campaign_id, phone_number)"
    " VALUES (%(t)s, %(c)s, '5511')",
    "jobs": 'INSERT INTO jobs (tenant_id, payload) VALUES (%(t)s, \'{"task_type": "x"}\')',
    "instances": "INSERT INTO instances (tenant_id, name) VALUES (%(t)s, 'vendas')",
    "settings": "INSERT INTO settings (tenant_id, key, value) VALUES (%(t)s, 'JOB_WEBHOOK', 'http://x')",
    "optouts": "INSERT INTO optouts (tenant_id, phone) VALUES (%(t)s, '5511')",
    "webhook_events": "INSERT INTO webhook_events (tenant_id, event) VALUES (%(t)s, '{}')",
    "evolution_inbox": "INSERT INTO evolution_inbox (tenant_id, digest, event, instance, body)"
    " VALUES (%(t)s, 'x', 'messages.update', 'vendas', '{}')",
    "evolution_replies": "INSERT INTO evolution_replies (tenant_id, instance, key_id)"
    " VALUES (%(t)s, 'vendas', 'k')",
    "campaign_summary": "INSERT INTO campaign_summary (campaign_id, instance, tenant_id)"
    " VALUES (%(c)s, 'vendas', %(t)s)",
    "campaign_summary_deltas": "INSERT INTO campaign_summary_deltas (campaign_id, instance, tenant_id,"
    " pending, queued, sending, sent, failed, cancelled, delivered, read, replied)"
    " VALUES (%(c)s, 'vendas', %(t)s, 0, 1, 0, 0, 0, 0, 0, 0, 0)",
    "campaign_sends": "INSERT INTO campaign_sends (campaign_id, instance, bucket, tenant_id, sent, first_at,"
    " last_at) VALUES (%(c)s, 'vendas', now(), %(t)s, 1, now(), now())",
}
TENANT_TABLES = [name for name in tables.LOGICAL if name not in ("tenants", "dispara_migrations")]


def seed(conn: Conn, name: str) -> tuple[UUID, UUID]:
    t = conn.execute("INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)).fetchone()
    assert t is not None
    c = conn.execute(
        "INSERT INTO campaigns (tenant_id, name, idempotency_key) VALUES (%s, 'c', 'k') RETURNING id", (t[0],)
    ).fetchone()
    assert c is not None
    for statement in ROWS.values():
        if statement:
            conn.execute(statement, {"t": t[0], "c": c[0]})
    conn.commit()
    return t[0], c[0]


@pytest.fixture
def two(
    supa: Conn, env_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[dict[str, tuple[UUID, UUID]]]:
    monkeypatch.setenv("DISPARA_API_KEY", DISPATCH_KEY)
    result = run_cli(capsys, "db", "migrate", "--supabase", "--dispatch-url", "http://127.0.0.1:9/d", "--yes")
    assert result.code == 0, result.err
    yield {"a": seed(supa, "a"), "b": seed(supa, "b")}
    supa.rollback()


def as_user(conn: Conn, tenant_id: UUID | None, role: str = "authenticated", **claims: Any) -> None:
    conn.rollback()
    conn.execute(f"SET ROLE {role}")
    body = {"role": role, **claims}
    if tenant_id is not None:
        body["app_metadata"] = {"tenant_id": str(tenant_id)}
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(body),))


def test_every_tenant_table_is_covered() -> None:
    assert sorted(ROWS) == sorted(TENANT_TABLES)


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_tenant_reads_changes_and_deletes_only_its_own_rows(
    supa: Conn, two: dict[str, tuple[UUID, UUID]], table: str
) -> None:
    a, b = two["a"][0], two["b"][0]
    as_user(supa, a)
    assert supa.execute(f"SELECT DISTINCT tenant_id FROM {table}").fetchall() == [(a,)]
    if "UPDATE" in CLIENT_PRIVILEGES.get(table, ""):
        changed = supa.execute(f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = %s", (b,))
        assert changed.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # row-level security: a's rows stay a's
            supa.execute(f"UPDATE {table} SET tenant_id = %s WHERE tenant_id = %s", (b, a))
        as_user(supa, a)
        assert supa.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (b,)).rowcount == 0
    else:  # the queue's state: read-only to the app's users
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            supa.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (b,))
    supa.rollback()
    supa.execute("RESET ROLE")
    counts = supa.execute(f"SELECT count(*) FILTER (WHERE tenant_id = %s) FROM {table}", (b,)).fetchone()
    assert counts == (1,)


def test_a_tenant_cannot_insert_rows_for_another(supa: Conn, two: dict[str, tuple[UUID, UUID]]) -> None:
    a, b = two["a"][0], two["b"][0]
    as_user(supa, a)
    supa.execute("INSERT INTO optouts (tenant_id, phone) VALUES (%s, '5599')", (a,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        supa.execute("INSERT INTO optouts (tenant_id, phone) VALUES (%s, '5599')", (b,))


def test_a_tenant_sees_its_own_tenant_row_only(supa: Conn, two: dict[str, tuple[UUID, UUID]]) -> None:
    as_user(supa, two["a"][0])
    assert supa.execute("SELECT id FROM tenants").fetchall() == [(two["a"][0],)]


def test_no_tenant_claim_means_no_rows(supa: Conn, two: dict[str, tuple[UUID, UUID]]) -> None:
    as_user(supa, None)
    assert supa.execute("SELECT count(*) FROM campaigns").fetchone() == (0,)


@pytest.mark.parametrize("table", [*tables.LOGICAL])
def test_anon_reads_nothing(supa: Conn, two: dict[str, tuple[UUID, UUID]], table: str) -> None:
    as_user(supa, two["a"][0], role="anon")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        supa.execute(f"SELECT * FROM {table}")


def test_the_counters_refuse_another_tenants_campaign(supa: Conn, two: dict[str, tuple[UUID, UUID]]) -> None:
    (a, campaign_a), (_b, campaign_b) = two["a"], two["b"]
    as_user(supa, a)
    supa.execute("SELECT increment_campaign_sent_count(%s)", (campaign_a,))
    supa.execute("SELECT increment_campaign_failed_count(%s)", (campaign_a,))
    supa.commit()
    for function in ("increment_campaign_sent_count", "increment_campaign_failed_count"):
        as_user(supa, a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not one of your tenant's"):
            supa.execute(f"SELECT {function}(%s)", (campaign_b,))
    as_user(supa, a, role="anon")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        supa.execute("SELECT increment_campaign_sent_count(%s)", (campaign_a,))
    as_user(supa, None, role="service_role")
    supa.execute("SELECT increment_campaign_sent_count(%s)", (campaign_b,))
    supa.commit()
    supa.execute("RESET ROLE")
    counts = supa.execute(
        "SELECT id, sent_count, failed_count FROM campaigns ORDER BY name, tenant_id"
    ).fetchall()
    assert sorted(counts) == sorted([(campaign_a, 1, 1), (campaign_b, 1, 0)])


def test_the_counters_pin_their_search_path(supa: Conn, two: dict[str, tuple[UUID, UUID]]) -> None:
    rows = supa.execute(
        "SELECT proname, prosecdef, proconfig FROM pg_proc"
        " WHERE proname LIKE 'increment_campaign_%' ORDER BY 1"
    ).fetchall()
    assert [(name, definer) for name, definer, _ in rows] == [
        ("increment_campaign_failed_count", True),
        ("increment_campaign_sent_count", True),
    ]
    assert all(config == ["search_path=public, pg_catalog, pg_temp"] for _, _, config in rows)


def test_the_tenant_claim_path_is_configurable(
    supa: Conn,
    env_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = tmp_path / "dispara.yaml"
    config.write_text("supabase:\n  tenant_claim: org.tenant\n", encoding="utf-8")
    monkeypatch.setenv("DISPARA_CONFIG", str(config))
    monkeypatch.setenv("DISPARA_API_KEY", DISPATCH_KEY)
    result = run_cli(capsys, "db", "migrate", "--supabase", "--dispatch-url", "http://127.0.0.1:9/d", "--yes")
    assert result.code == 0, result.err
    a, _ = seed(supa, "a")
    seed(supa, "b")
    supa.execute("SET ROLE authenticated")
    claims = {"role": "authenticated", "org": {"tenant": str(a)}}
    supa.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
    assert supa.execute("SELECT DISTINCT tenant_id FROM campaigns").fetchall() == [(a,)]
    as_user(supa, a)  # app_metadata.tenant_id is no longer where the tenant is read
    assert supa.execute("SELECT count(*) FROM campaigns").fetchone() == (0,)


def test_a_job_the_web_app_inserts_through_the_api_wakes_the_dispatcher(
    supa: Conn, two: dict[str, tuple[UUID, UUID]]
) -> None:
    supa.execute("DELETE FROM jobs")
    supa.execute("TRUNCATE net.calls")
    supa.commit()
    as_user(supa, two["a"][0])
    supa.execute('INSERT INTO jobs (tenant_id, payload) VALUES (%s, \'{"task_type": "x"}\')', (two["a"][0],))
    supa.commit()
    supa.execute("RESET ROLE")
    assert [c["body"] for c in calls(supa)] == [{"reason": "insert"}]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_client_roles_cannot_start_a_drain_or_read_the_key(
    supa: Conn, two: dict[str, tuple[UUID, UUID]], role: str
) -> None:
    as_user(supa, two["a"][0], role=role)
    for function in ("dispara_wake_dispatcher('x')", "dispara_dispatch_if_due()", "dispara_dispatch_key()"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            supa.execute(f"SELECT {function}")
        as_user(supa, two["a"][0], role=role)


@pytest.mark.parametrize("table", ["jobs", "message_logs", "instances", "campaign_summary", "webhook_events"])
def test_a_user_cannot_rewrite_the_queue_state_of_its_own_tenant(
    supa: Conn, two: dict[str, tuple[UUID, UUID]], table: str
) -> None:
    as_user(supa, two["a"][0])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        supa.execute(f"UPDATE {table} SET tenant_id = tenant_id")
