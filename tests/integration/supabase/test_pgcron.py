"""The minute re-drive on a real pg_cron (PostgreSQL 15, pg_cron preloaded; `.ci/run` starts one): the job
is scheduled with the documented command, runs, and posts only when a job is due.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from dispara.config import ENV_KEYS
from dispara.supabase.layer import CRON_JOB
from tests.helpers import run_cli
from tests.integration.supabase.conftest import DISPATCH_KEY, Conn, calls

pytestmark = pytest.mark.slow
COMMAND = 'SELECT "public".dispara_dispatch_if_due()'
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def installed(
    cron_db: Conn,
    pgcron_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Conn:
    for name in (*ENV_KEYS, "DISPARA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DATABASE_URL", pgcron_url)
    monkeypatch.setenv("DISPARA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISPARA_API_KEY", DISPATCH_KEY)
    result = run_cli(capsys, "db", "migrate", "--supabase", "--dispatch-url", "http://127.0.0.1:9/d", "--yes")
    assert result.code == 0, result.err
    assert "left out" not in result.err
    return cron_db


def runs(conn: Conn) -> list[tuple[str, str]]:
    conn.commit()
    rows = conn.execute(
        "SELECT d.status, d.command FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
        " WHERE j.jobname = %s ORDER BY d.runid",
        (CRON_JOB,),
    ).fetchall()
    conn.commit()
    return [(str(s), str(c)) for s, c in rows]


def wait_for_run(conn: Conn, after: int) -> list[tuple[str, str]]:
    """Until pg_cron has run the job more than `after` times; it fires at the start of each minute."""
    deadline = time.monotonic() + 75
    while len(done := [r for r in runs(conn) if r[0] in ("succeeded", "failed")]) <= after:
        assert time.monotonic() < deadline, "pg_cron did not run the job within a minute"
        time.sleep(0.5)
    return done


def test_the_job_is_scheduled_every_minute_with_the_documented_command(
    installed: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "pg_cron job dispara-dispatch (not run yet)" in run_cli(capsys, "db", "status").out
    job = installed.execute(
        "SELECT schedule, command, active, database FROM cron.job WHERE jobname = %s", (CRON_JOB,)
    ).fetchone()
    database = installed.execute("SELECT current_database()").fetchone()
    assert database is not None
    assert job == ("* * * * *", COMMAND, True, database[0])
    documented = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`{COMMAND}`" in documented  # the README states the command as it is
    assert DISPATCH_KEY not in str(job)


def test_the_job_runs_and_posts_only_when_a_job_is_due(
    installed: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = installed.execute("INSERT INTO tenants (name) VALUES ('t') RETURNING id").fetchone()
    assert tenant is not None
    installed.execute(
        "INSERT INTO jobs (tenant_id, payload, run_at)"
        " VALUES (%s, '{\"task_type\": \"x\"}', now() + interval '1 day')",
        (tenant[0],),
    )
    installed.commit()
    first = wait_for_run(installed, 0)
    assert first[-1] == ("succeeded", COMMAND)
    assert re.search(
        r"dispara-dispatch \(last run [\d-]+ [\d:]+ UTC: succeeded\)", run_cli(capsys, "db", "status").out
    )
    assert calls(installed) == []  # nothing due: no POST
    installed.execute("UPDATE jobs SET run_at = now()")  # due now; an UPDATE fires no insert trigger
    installed.commit()
    assert calls(installed) == []
    wait_for_run(installed, len(first))
    made = calls(installed)
    assert [(c["body"], c["headers"]["Authorization"]) for c in made] == [
        ({"reason": "cron"}, f"Bearer {DISPATCH_KEY}")
    ]
