"""The web app's existing tables (seed 003): mapped in config `tables:`, adopted by `db migrate` with
additions only, every old row kept as it was, and a campaign then sent through them end to end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dispara.config import ENV_KEYS
from dispara.db import tables
from tests import renamed_tables
from tests.helpers import run_cli, run_subprocess
from tests.integration.queue.conftest import API_KEY
from tests.stubs.evolution_stub import EvolutionStub

TENANTS = "tenants_dispara_lead_saas_02"
CAMPAIGNS = "campaigns_dispara_lead_saas_02"
MESSAGES = "message_logs_dispara_lead_saas_02"
# The web app's message_logs as it is before dispara: the seed's columns, a uuid key, one of its own.
OLD_COLUMNS = (
    "id, tenant_id, campaign_id, phone_number, message_content, message_type, media_url, instance_name,"
    " status, evolution_key, evolution_response, error_message, queued_at, sent_at, retry_count, contact,"
    " created_at, updated_at, user_id"
)
APP_SCHEMA = f"""
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid());
CREATE TABLE {TENANTS} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, created_at timestamptz DEFAULT now()
);
CREATE TABLE {MESSAGES} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid REFERENCES {TENANTS} (id),
    campaign_id uuid,
    phone_number text NOT NULL,
    message_content text,
    message_type text DEFAULT 'text',
    media_url text,
    instance_name text,
    status text DEFAULT 'pending'
           CHECK (status IN ('pending', 'queued', 'sending', 'sent', 'failed', 'read')),
    evolution_key text,
    evolution_response jsonb,
    error_message text,
    queued_at timestamptz,
    sent_at timestamptz,
    retry_count integer DEFAULT 0,
    contact jsonb,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    user_id uuid REFERENCES auth.users (id)
);
INSERT INTO auth.users DEFAULT VALUES;
INSERT INTO {TENANTS} (name) VALUES ('loja-a'), ('loja-b');
-- Rows of campaigns the app ran before dispara: no campaigns table holds them, some have NULLs and a
-- status dispara does not use.
INSERT INTO {MESSAGES} (tenant_id, campaign_id, phone_number, message_content, status, evolution_key,
                        evolution_response, sent_at, contact, user_id, message_type)
SELECT t.id, gen_random_uuid(), '55119' || lpad(g::text, 8, '0'), 'old ' || g,
       (ARRAY['pending', 'sent', 'failed', 'read'])[1 + g % 4], CASE WHEN g % 3 = 0 THEN 'K' || g END,
       CASE WHEN g % 2 = 0 THEN jsonb_build_object('n', g) END, now() - g * interval '1 hour',
       jsonb_build_object('nome', 'C' || g), (SELECT id FROM auth.users),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'text' END
FROM generate_series(1, 60) g
JOIN {TENANTS} t ON t.name = CASE WHEN g % 2 = 0 THEN 'loja-a' ELSE 'loja-b' END;
UPDATE {MESSAGES} SET tenant_id = NULL WHERE phone_number LIKE '%07';
"""
# These tests bring their own mapping: the renamed run (tests/renamed_tables.py) would add to it.
own_mapping = pytest.mark.skipif(renamed_tables.ACTIVE, reason="brings its own table mapping")

CAMPAIGN = """\
name: Adoção
contacts: contatos.csv
instances: [inst-a]
delay: {min: 0, max: 0}
templates:
  - type: text
    text: "Olá {nome}"
"""


@pytest.fixture
def app_db(empty_db_dsn: str) -> Iterator[str]:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.encode())
    yield empty_db_dsn
    tables.use({})  # the in-process commands installed the mapping


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as server:
        yield server


def old_rows(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {OLD_COLUMNS} FROM {MESSAGES} ORDER BY id").fetchall()


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query.encode()).fetchone()
    assert row is not None
    return row[0]


def config(tmp_path: Path, tenant: str) -> Path:
    path = tmp_path / "dispara.yaml"
    path.write_text(
        f"tenant: '{tenant}'\nevolution:\n  typing_delay_ms: 0\nworker:\n  poll_interval_s: 0.2\n"
        f"tables:\n  tenants: {TENANTS}\n  campaigns: {CAMPAIGNS}\n  message_logs: public.{MESSAGES}\n",
        encoding="utf-8",
    )
    return path


def cli_env(dsn: str, tmp_path: Path, stub: EvolutionStub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {*ENV_KEYS, "DISPARA_CONFIG"}}
    env.update(
        DATABASE_URL=dsn,
        DISPARA_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        EVOLUTION_API_URL=stub.url,
        EVOLUTION_API_KEY=API_KEY,
    )
    return env


@own_mapping
def test_migrate_shows_only_additions_and_what_it_leaves_alone(
    app_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", app_db)
    monkeypatch.chdir(tmp_path)
    config(tmp_path, "loja-a")
    before = old_rows(app_db)
    result = run_cli(capsys, "db", "migrate", "--print")
    assert result.code == 0, result.err
    script = result.out
    messages = f'"public"."{MESSAGES}"'
    assert f'-- adopting existing tables: "{TENANTS}", {messages}\n' in script
    assert f'ALTER TABLE {messages} ADD COLUMN IF NOT EXISTS "seq" integer DEFAULT 0 NOT NULL;' in script
    assert f"-- left as it is: {messages}.id is uuid (dispara's is bigint)" in script
    assert f"-- left as it is: {messages}.user_id, a column dispara does not use\n" in script
    assert f"-- left as it is: {messages}.tenant_id may be NULL (dispara's is NOT NULL)" in script
    assert f"{messages} constraint {MESSAGES}_status_check CHECK" in script  # the app's own
    fk = 'ADD CONSTRAINT "message_logs_campaign_id_fkey" FOREIGN KEY ("campaign_id") REFERENCES'
    assert f'{fk} "{CAMPAIGNS}" ("id") ON DELETE CASCADE NOT VALID;' in script
    assert f"CREATE TABLE IF NOT EXISTS {messages} (" in script
    assert f'CREATE TABLE "{CAMPAIGNS}" (' in script
    for line in script.splitlines():
        if MESSAGES in line or TENANTS in line:
            assert not any(word in line for word in ("DROP", "RENAME", "ALTER COLUMN id", " TYPE ")), line
    assert old_rows(app_db) == before  # --print changed nothing
    assert scalar(app_db, "SELECT to_regclass('dispara_migrations') IS NULL") is True


@own_mapping
def test_an_existing_queue_table_is_refused_not_adopted(
    app_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", app_db)
    monkeypatch.chdir(tmp_path)
    with psycopg.connect(app_db) as conn:
        conn.execute("CREATE TABLE app_jobs (id bigint PRIMARY KEY)")
    path = config(tmp_path, "loja-a")
    path.write_text(path.read_text(encoding="utf-8") + "  jobs: app_jobs\n", encoding="utf-8")
    result = run_cli(capsys, "db", "migrate", "--yes")
    assert result.code != 0
    assert result.err.strip().splitlines() == [
        'dispara: error: tables.jobs: "app_jobs" exists already, and dispara adopts an existing table '
        "only for tenants, campaigns, message_logs: name a table that does not exist yet"
    ]
    assert scalar(app_db, "SELECT to_regclass('dispara_migrations') IS NULL") is True


@own_mapping
def test_existing_tables_keep_every_row_and_a_campaign_runs_on_them(
    app_db: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    before = old_rows(app_db)
    tenant = str(scalar(app_db, f"SELECT id FROM {TENANTS} WHERE name = 'loja-a'"))
    cfg = str(config(tmp_path, tenant))  # the app's tenant, by its id
    env = cli_env(app_db, tmp_path, stub)
    migrated = run_subprocess(env, "--config", cfg, "db", "migrate", "--yes")
    assert migrated.code == 0, migrated.err
    assert old_rows(app_db) == before
    assert scalar(app_db, f"SELECT count(*) FROM {MESSAGES} WHERE seq = 0 AND qstash_round = 0") == len(
        before
    )
    message_id = "SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'jobs'::regclass"
    assert scalar(app_db, f"{message_id} AND attname = 'message_id'") == "uuid"
    triggers = "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = "
    triggers += f"'{CAMPAIGNS}'::regclass AND NOT tgisinternal"
    assert (
        scalar(app_db, triggers)
        == "campaigns_notify_progress,campaigns_notify_receipts,campaigns_notify_status"
    )
    again = run_subprocess(env, "--config", cfg, "db", "migrate", "--yes")
    assert again.code == 0 and "schema is up to date" in again.out, again.err

    (tmp_path / "contatos.csv").write_text(
        "telefone,nome\n5511988880001,Ana\n5511988880002,Bia\n5511988880003,Caio\n"
    )
    (tmp_path / "campanha.yaml").write_text(CAMPAIGN, encoding="utf-8")
    sent = run_subprocess(env, "--config", cfg, "campaign", "send", str(tmp_path / "campanha.yaml"))
    assert sent.code == 0, sent.err
    worked = run_subprocess(env, "--config", cfg, "worker", "--once")
    assert worked.code == 0, worked.err
    assert sorted(r.body["number"] for r in stub.sends()) == [
        "5511988880001",
        "5511988880002",
        "5511988880003",
    ]
    assert scalar(app_db, f"SELECT status || sent_count FROM {CAMPAIGNS}") == "completed3"
    verified = run_subprocess(env, "--config", cfg, "status", "Adoção", "--verify")
    assert verified.code == 0 and "summary verified" in verified.out, verified.err
    ours = f"tenant_id = '{tenant}' AND campaign_id = (SELECT id FROM {CAMPAIGNS})"
    assert scalar(app_db, f"SELECT count(*) FROM {MESSAGES} WHERE status = 'sent' AND {ours}") == 3
    assert scalar(app_db, f"SELECT count(*) FROM {TENANTS}") == 2  # the app's tenants; none of dispara's
    assert scalar(app_db, f"SELECT count(*) FROM {MESSAGES}") == len(before) + 3
    after = {row[0]: row for row in old_rows(app_db)}
    assert [after[row[0]] for row in before] == before  # sending touched no old row


@own_mapping
def test_a_tenant_the_app_does_not_have_is_refused_not_created(
    app_db: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    env = cli_env(app_db, tmp_path, stub)
    cfg = str(config(tmp_path, "nowhere"))
    assert run_subprocess(env, "--config", cfg, "db", "migrate", "--yes").code == 0
    (tmp_path / "contatos.csv").write_text("telefone,nome\n5511988880001,Ana\n")
    (tmp_path / "campanha.yaml").write_text(CAMPAIGN, encoding="utf-8")
    sent = run_subprocess(env, "--config", cfg, "campaign", "send", str(tmp_path / "campanha.yaml"))
    assert sent.code != 0
    assert "no tenant 'nowhere' (known tenants: loja-a, loja-b)" in sent.err
    assert scalar(app_db, f"SELECT count(*) FROM {TENANTS}") == 2


@pytest.mark.skipif(not renamed_tables.ACTIVE, reason="only with DISPARA_TEST_TABLES=renamed")
def test_in_the_renamed_run_dispara_cannot_reach_a_table_by_its_own_name(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, application_name="dispara") as conn:
        assert conn.execute("SELECT to_regclass('saas.message_logs_app') IS NOT NULL").fetchone() == (True,)
        with pytest.raises(psycopg.errors.RaiseException, match="by its own name"):
            conn.execute("SELECT count(*) FROM jobs")


@own_mapping
def test_a_qstash_delivery_names_a_uuid_message_and_sends_it_once(
    app_db: str, tmp_path: Path, stub: EvolutionStub
) -> None:
    from starlette.testclient import TestClient

    from dispara.db import migrate
    from dispara.providers.evolution import EvolutionSender
    from dispara.server.app import create_app
    from tests.integration.qstash.conftest import PUBLIC_URL, deliver, qstash_settings

    tables.use({"tenants": TENANTS, "campaigns": CAMPAIGNS, "message_logs": MESSAGES})
    with psycopg.connect(app_db) as conn:
        migrate.apply(conn)
        tenant = conn.execute(f"SELECT id FROM {TENANTS} WHERE name = 'loja-a'").fetchone()
        assert tenant is not None
        campaign = conn.execute(
            f"INSERT INTO {CAMPAIGNS} (tenant_id, name, status, total_messages, instances, transport, "
            "idempotency_key) VALUES (%s, 'q', 'processing', 1, '{inst-a}', 'qstash', 'k') RETURNING id",
            tenant,
        ).fetchone()
        assert campaign is not None
        message = conn.execute(
            f"INSERT INTO {MESSAGES} (tenant_id, campaign_id, phone_number, message_content, instance_name, "
            "status) VALUES (%s, %s, '5511988880009', 'Olá', 'inst-a', 'queued') RETURNING id",
            (tenant[0], campaign[0]),
        ).fetchone()
        assert message is not None
    settings = qstash_settings(app_db, tmp_path / "data", stub.url).model_copy(update={"tenant": "loja-a"})
    body = {
        "message_id": str(message[0]),
        "phone_number": "5511988880009",
        "message_content": "Olá",
        "instance_name": "inst-a",
        "campaign_id": str(campaign[0]),
        "tenant_id": str(tenant[0]),
    }
    sender = EvolutionSender(stub.url, API_KEY, typing_delay_ms=0)
    with TestClient(create_app(settings, sender=sender), base_url=PUBLIC_URL) as client:
        answers = [deliver(client, json.dumps(body).encode()).json() for _ in range(2)]  # at least once
    sender.close()
    assert answers == [{"status": "sent", "changed": True}, {"status": "sent", "changed": False}]
    assert [r.body["number"] for r in stub.sends()] == ["5511988880009"]
    assert scalar(app_db, f"SELECT sent_count FROM {CAMPAIGNS}") == 1
