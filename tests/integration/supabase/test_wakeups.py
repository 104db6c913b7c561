"""`db migrate --supabase`: the insert trigger and the minute re-drive through one net.http_post wrapper,
the bearer key out of every client's reach, --print, --remove; a recording net.http_post stands in for pg_net.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.helpers import Result, run_cli
from tests.integration.supabase.conftest import (
    DISPATCH_KEY,
    FAKE_NET_SQL,
    FAKE_VAULT_SQL,
    ROLES_SQL,
    Conn,
    calls,
    supabase_like,
)

URL = "http://127.0.0.1:9/dispatch"
Migrate = Callable[..., Result]
LAYER_FUNCTIONS = [
    "dispara_dispatch_key",
    "dispara_wake_dispatcher",
    "dispara_notify_job_dispatcher",
    "dispara_dispatch_if_due",
    "dispara_jwt_tenant",
    "dispara_jwt_role",
    "dispara_check_campaign_tenant",
]


@pytest.fixture
def cli(env_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Migrate:
    monkeypatch.setenv("DISPARA_API_KEY", DISPATCH_KEY)

    def run(*args: str) -> Result:
        return run_cli(capsys, "db", "migrate", "--supabase", *args)

    return run


def install(cli: Migrate) -> Result:
    result = cli("--dispatch-url", URL, "--yes")
    assert result.code == 0, result.err
    return result


def tenant(conn: Conn, name: str = "t") -> object:
    row = conn.execute("INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)).fetchone()
    assert row is not None
    return row[0]


def insert_jobs(conn: Conn, tenant_id: object, n: int, *, later: bool = False) -> None:
    run_at = "now() + interval '1 hour'" if later else "now()"
    conn.execute(
        f"INSERT INTO jobs (tenant_id, payload, run_at) "
        f'SELECT %s, \'{{"task_type": "x"}}\', {run_at} FROM generate_series(1, %s)',
        (tenant_id, n),
    )
    conn.commit()


def test_one_post_per_insert_statement_with_the_url_and_the_bearer_key(supa: Conn, cli: Migrate) -> None:
    install(cli)
    t = tenant(supa)
    insert_jobs(supa, t, 500)
    made = calls(supa)
    assert len(made) == 1
    assert made[0]["url"] == URL
    assert made[0]["headers"] == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {DISPATCH_KEY}",
    }
    assert made[0]["body"] == {"reason": "insert"}
    insert_jobs(supa, t, 1)
    insert_jobs(supa, t, 3)
    assert len(calls(supa)) == 3


def test_jobs_not_due_and_rolled_back_inserts_post_nothing(supa: Conn, cli: Migrate) -> None:
    install(cli)
    t = tenant(supa)
    insert_jobs(supa, t, 10, later=True)
    supa.execute('INSERT INTO jobs (tenant_id, payload) VALUES (%s, \'{"task_type": "x"}\')', (t,))
    supa.rollback()
    assert calls(supa) == []


def test_the_minute_re_drive_posts_only_when_a_job_is_due_or_a_lease_expired(
    supa: Conn, cli: Migrate
) -> None:
    install(cli)
    t = tenant(supa)
    due = "SELECT dispara_dispatch_if_due()"
    assert supa.execute(due).fetchone() == (None,)
    insert_jobs(supa, t, 2, later=True)
    assert supa.execute(due).fetchone() == (None,)
    assert calls(supa) == []
    supa.execute("UPDATE jobs SET run_at = now() - interval '1 second'")
    supa.execute(due)
    supa.execute("UPDATE jobs SET status = 'processing', locked_until = now() - interval '1 second'")
    supa.execute(due)
    supa.commit()
    made = calls(supa)
    assert [c["body"] for c in made] == [{"reason": "cron"}] * 2
    assert made[1]["headers"]["Authorization"] == f"Bearer {DISPATCH_KEY}"


def test_the_key_is_in_no_function_text_and_no_client_role_can_read_it(supa: Conn, cli: Migrate) -> None:
    install(cli)
    texts = supa.execute("SELECT string_agg(prosrc, ' ') FROM pg_proc").fetchone()
    triggers = supa.execute("SELECT string_agg(pg_get_triggerdef(oid), ' ') FROM pg_trigger").fetchone()
    assert texts and triggers and DISPATCH_KEY not in texts[0] + triggers[0]
    supa.commit()
    for role in ("anon", "authenticated"):
        for attempt in (
            "SELECT value FROM dispara_private.secrets",
            "SELECT dispara_dispatch_key()",
            "SELECT dispara_wake_dispatcher('x')",
        ):
            supa.execute(f"SET ROLE {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                supa.execute(attempt)
            supa.rollback()


def test_vault_holds_the_key_when_the_database_has_it(supa: Conn, cli: Migrate) -> None:
    supa.execute(FAKE_VAULT_SQL)
    supa.commit()
    install(cli)
    install(cli)  # again: the secret is updated, not duplicated
    rows = supa.execute("SELECT name, secret FROM vault.secrets").fetchall()
    assert rows == [("dispara_dispatch_key", DISPATCH_KEY)]
    assert supa.execute("SELECT to_regnamespace('dispara_private')").fetchone() == (None,)
    insert_jobs(supa, tenant(supa), 1)
    assert calls(supa)[0]["headers"]["Authorization"] == f"Bearer {DISPATCH_KEY}"


def test_print_shows_the_sql_without_the_key_and_changes_nothing(supa: Conn, cli: Migrate) -> None:
    result = cli("--dispatch-url", URL, "--print")
    assert result.code == 0, result.err
    assert "CREATE TRIGGER notify_job_dispatcher" in result.out
    assert "FOR EACH STATEMENT" in result.out and "'<DISPARA_API_KEY>'" in result.out
    assert DISPATCH_KEY not in result.out + result.err
    assert supa.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_job_dispatcher'"
    ).fetchone() == (0,)


def test_without_pg_net_the_wake_ups_are_left_out_and_it_says_so(db_dsn: str, cli: Migrate) -> None:
    with psycopg.connect(db_dsn) as conn:
        supabase_like(conn)
        result = install(cli)
        assert "left out: the insert trigger and the minute re-drive: pg_net is not available" in result.err
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_job_dispatcher'"
        ).fetchone() == (0,)
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'jobs'").fetchone() == (
            True,
        )


def test_on_a_database_without_pg_cron_the_re_drive_is_left_out(supa: Conn, cli: Migrate) -> None:
    if supa.execute("SELECT to_regnamespace('cron')").fetchone() != (None,):
        pytest.skip("this server has pg_cron")
    result = install(cli)
    assert "left out: the minute re-drive: pg_cron" in result.err


def test_db_status_names_the_parts_installed(
    supa: Conn, cli: Migrate, capsys: pytest.CaptureFixture[str]
) -> None:
    install(cli)
    shown = run_cli(capsys, "db", "status").out
    assert shown.endswith(
        "Supabase layer: insert trigger notify_job_dispatcher, bearer key in dispara_private.secrets, "
        "row-level security\n"
    )
    cli("--remove", "--yes")
    assert run_cli(capsys, "db", "status").out.endswith("up to date\n")


def test_remove_takes_the_layer_out(supa: Conn, cli: Migrate) -> None:
    install(cli)
    result = cli("--remove", "--yes")
    assert result.code == 0, result.err
    assert "Supabase layer removed" in result.out
    left = supa.execute(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_job_dispatcher'),"
        " (SELECT count(*) FROM pg_proc WHERE proname = ANY (%s)),"
        " (SELECT count(*) FROM pg_policy), (SELECT count(*) FROM pg_class WHERE relrowsecurity),"
        " to_regnamespace('dispara_private') IS NULL,"
        " (SELECT prosecdef FROM pg_proc WHERE proname = 'increment_campaign_sent_count')",
        (LAYER_FUNCTIONS,),
    ).fetchone()
    assert left == (0, 0, 0, 0, True, False)
    insert_jobs(supa, tenant(supa), 1)
    assert calls(supa) == []


def test_remove_goes_with_supabase(supa: Conn, cli: Migrate, capsys: pytest.CaptureFixture[str]) -> None:
    install(cli)
    result = run_cli(capsys, "db", "migrate", "--remove", "--yes")
    assert result.code == 2 and "--dispatch-url and --remove go with --supabase" in result.err
    assert supa.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_job_dispatcher'"
    ).fetchone() == (1,)


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        ((), {}, 2, "--supabase takes --dispatch-url URL, or --remove"),
        (
            ("--dispatch-url", "ftp://x/dispatch"),
            {},
            4,
            "--dispatch-url 'ftp://x/dispatch': not an http(s) URL",
        ),
        (("--dispatch-url", URL), {"DISPARA_API_KEY": ""}, 3, "needs DISPARA_API_KEY"),
    ],
)
def test_bad_input_is_one_line_and_applies_nothing(
    supa: Conn, cli: Migrate, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], env: dict[str, str],
    code: int, message: str,
) -> None:  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli(*args, "--yes")
    assert message in result.err and "Traceback" not in result.err
    assert result.code == code
    assert supa.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)


def test_config_names_the_tenant_claim(tmp_path: Path) -> None:
    from dispara.config import Settings

    assert Settings().supabase.tenant_claim == "app_metadata.tenant_id"
    with pytest.raises(ValueError, match="tenant_claim"):
        Settings.model_validate({"supabase": {"tenant_claim": "a..b"}})


def test_print_needs_no_key(supa: Conn, cli: Migrate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPARA_API_KEY")
    result = cli("--dispatch-url", URL, "--print")
    assert result.code == 0, result.err
    assert "VALUES ('dispara_dispatch_key', '<DISPARA_API_KEY>')" in result.out


def test_on_an_empty_database_the_schema_and_the_layer_go_in_together(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from dispara.db import migrate

    monkeypatch.setenv("DATABASE_URL", empty_db_dsn)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISPARA_API_KEY", DISPATCH_KEY)
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(ROLES_SQL)
        conn.execute(FAKE_NET_SQL)
        conn.commit()
        result = run_cli(capsys, "db", "migrate", "--supabase", "--dispatch-url", URL, "--yes")
        assert result.code == 0, result.err
        assert "-- migration 0001_schema" in result.err
        assert migrate.current_version(conn) == migrate.latest_version()
        insert_jobs(conn, tenant(conn), 2)
        assert len(calls(conn)) == 1


def test_unconfirmed_nothing_is_applied(supa: Conn, cli: Migrate) -> None:
    result = cli("--dispatch-url", URL)  # no terminal answers the question
    assert result.code != 0
    assert "CREATE TRIGGER notify_job_dispatcher" in result.err
    assert supa.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'notify_job_dispatcher'"
    ).fetchone() == (0,)


def test_remove_deletes_the_key_from_vault(supa: Conn, cli: Migrate) -> None:
    supa.execute(FAKE_VAULT_SQL)
    supa.commit()
    install(cli)
    assert cli("--remove", "--yes").code == 0
    assert supa.execute("SELECT count(*) FROM vault.secrets").fetchone() == (0,)


def test_the_layer_follows_renamed_tables(empty_db_dsn: str) -> None:
    from dispara.config import Settings
    from dispara.db import migrate, tables
    from dispara.supabase import install

    settings = Settings.model_validate({"server": {"api_key": DISPATCH_KEY}})
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(ROLES_SQL)
        conn.execute(FAKE_NET_SQL)
        conn.execute("CREATE SCHEMA app")
        migrate.apply(conn)
        for name in tables.LOGICAL:  # the deployment's own names, as a mapping would find them
            conn.execute(f"ALTER TABLE {name} RENAME TO x_{name}")
            conn.execute(f"ALTER TABLE x_{name} SET SCHEMA app")
        conn.commit()
    tables.use({name: f"app.x_{name}" for name in tables.LOGICAL})
    try:
        with psycopg.connect(empty_db_dsn) as conn:
            plan = install.prepare(conn, settings, URL, remove=False, applying=True)
            install.apply(conn, plan, DISPATCH_KEY)
            conn.commit()
            t = conn.execute("INSERT INTO app.x_tenants (name) VALUES ('t') RETURNING id").fetchone()
            assert t is not None
            conn.execute('INSERT INTO app.x_jobs (tenant_id, payload) VALUES (%s, \'{"task_type": "x"}\')', t)
            conn.commit()
            assert len(calls(conn)) == 1
            secured = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'app' AND c.relkind = 'r' AND c.relrowsecurity"
            ).fetchone()
            assert secured == (len(tables.LOGICAL),)
            install.apply(conn, install.prepare(conn, settings, None, remove=True, applying=True), None)
            conn.commit()
            assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
    finally:
        tables.use({})
