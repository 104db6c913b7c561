"""While and after sending: nothing-sending status, export, delete, tenants, database URLs, no-op controls."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import psycopg
import pytest

from dispara.errors import ExitCode
from tests.helpers import run_cli, run_subprocess
from tests.integration.queue.conftest import seed_campaign
from tests.integration.test_campaign_send import counts, send, write_campaign

CSV = "telefone,nome,empresa,status\n11988880001,Ana,Padaria São João,vip\n11988880002,Bia,Açaí,novo\n"


def _tenants(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM tenants ORDER BY name")]


def test_status_says_plainly_when_nothing_is_sending(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(env_db) as conn:
        idle = seed_campaign(conn, 3, run_at_offset_s=-600, name="parada")
        fresh = seed_campaign(conn, 3, name="nova")
        conn.commit()
    out = json.loads(run_cli(capsys, "status", str(idle.campaign_id), "--json").out)
    assert (out["stalled"], out["due"], out["eta_seconds"]) == (True, 3, None)
    text = run_cli(capsys, "status", str(idle.campaign_id)).out
    assert "nothing is sending: 3 messages due and no worker has taken one since" in text
    assert "nothing sent yet" in text and "dispara worker" in text
    assert "ETA -" in text
    # Just queued: due, but no worker has had the time to take any yet.
    assert json.loads(run_cli(capsys, "status", str(fresh.campaign_id), "--json").out)["stalled"] is False


def test_watch_lines_say_nothing_is_sending_instead_of_an_eta(env_db: str) -> None:
    from dispara import status as core
    from dispara.cli.status_cmd import line

    with psycopg.connect(env_db) as conn:
        idle = seed_campaign(conn, 2, run_at_offset_s=-600)
        conn.commit()
        snap = core.snapshot(conn, idle.tenant_id, idle.campaign_id)
    text = line(snap)
    assert text.endswith("eta none (nothing is sending)")
    from dataclasses import replace

    from dispara.watching import _signature

    # A watcher prints again when sending stops or resumes, even if no count moved.
    assert _signature(snap) != _signature(replace(snap, stalled_since=None))
    assert text.split(" ", 1)[0].endswith("-03:00")  # the time carries the campaign's zone


def test_completed_campaign_shows_no_next_send_and_times_carry_their_zone(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV.encode())
    assert send(capsys, path).code == 0
    assert run_cli(capsys, "worker", "--once").code == 0
    text = run_cli(capsys, "status", "Teste").out
    assert "completed" in text
    assert "-03" in text  # America/Sao_Paulo, the default send-window zone
    rows = [line.split() for line in text.splitlines() if line.startswith("inst-")]
    assert rows and all(row[4] == "-" for row in rows)  # the "next send" column
    assert "nothing is sending" not in text


def test_export_has_the_contact_columns_a_bom_and_chosen_columns(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV.encode())
    assert send(capsys, path).code == 0
    out = tmp_path / "todas.csv"
    assert run_cli(capsys, "campaign", "export", "Teste", "-o", str(out)).code == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads the accents right only with a BOM
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    rows = list(reader)
    assert len(rows) == 4
    # The contact's columns in the file's order, then the message's.
    assert list(reader.fieldnames or [])[:5] == ["telefone", "nome", "empresa", "contact_status", "phone"]
    first = rows[0]
    assert (first["nome"], first["empresa"], first["phone"]) == ("Ana", "Padaria São João", "5511988880001")
    assert first["status"] == "queued" and first["contact_status"] == "vip"  # a clash keeps both
    chosen = run_cli(capsys, "campaign", "export", "Teste", "--columns", "nome,phone,status")
    assert chosen.out.splitlines()[:2] == ["nome,phone,status", "Ana,5511988880001,queued"]
    wrong = run_cli(capsys, "campaign", "export", "Teste", "--columns", "nome,telefon")
    assert wrong.code == 4 and "no column 'telefon'; the columns are:" in wrong.err


def test_delete_refuses_a_sending_campaign_and_removes_messages_and_jobs(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV.encode())
    assert send(capsys, path).code == 0
    unconfirmed = run_cli(capsys, "campaign", "delete", "Teste")
    assert unconfirmed.code == 4 and "pass --yes" in unconfirmed.err
    running = run_cli(capsys, "campaign", "delete", "Teste", "--yes")
    assert running.code == 4 and "campaign is sending" in running.err
    assert counts(env_db) == (1, 4, 4)
    assert run_cli(capsys, "campaign", "cancel", "Teste", "--yes").code == 0
    _, messages, jobs = counts(env_db)
    done = run_cli(capsys, "campaign", "delete", "Teste", "--yes")
    assert done.code == 0, done.err
    assert f"deleted with {messages} messages and {jobs} jobs" in done.out
    assert counts(env_db) == (0, 0, 0)


def test_pause_and_resume_twice_are_no_ops_that_say_so(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert send(capsys, write_campaign(tmp_path, CSV.encode())).code == 0
    running = run_cli(capsys, "campaign", "resume", "Teste")
    assert (running.code, "is not paused (processing): nothing to resume" in running.out) == (0, True)
    assert run_cli(capsys, "campaign", "pause", "Teste").out.endswith("paused\n")
    again = run_cli(capsys, "campaign", "pause", "Teste")
    assert (again.code, "is already paused" in again.out) == (0, True)


def test_read_only_commands_never_create_a_tenant(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_cli(capsys, "campaign", "list").code == 0
    assert run_cli(capsys, "status", "black-friday").code == 4
    assert run_cli(capsys, "jobs", "list").code == 0
    assert run_cli(capsys, "settings", "list").code == 0
    assert _tenants(env_db) == []
    assert run_cli(capsys, "--tenant", "acme", "optout", "add", "5511999990001").code == 0
    typo = run_cli(capsys, "--tenant", "amce", "campaign", "list")
    assert typo.code == 4
    assert "no tenant 'amce' (known tenants: acme)" in typo.err
    assert _tenants(env_db) == ["acme"]


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("postgresql://ana:s3cr3t@127.0.0.1:notaport/db", ExitCode.CONFIG, "is not a port number"),
        ("mysql://ana:s3cr3t@127.0.0.1/db", ExitCode.CONFIG, "not a PostgreSQL URL"),
        ("postgresql://ana:s3cr3t@[::1/db", ExitCode.CONFIG, "malformed"),
        ("not a url at all", ExitCode.CONFIG, "malformed"),
        ("postgresql://ana:s3cr3t@127.0.0.1:1/db", ExitCode.DATABASE, "Connection refused"),
    ],
)
def test_bad_database_urls_are_one_line_without_the_password(
    cli_env: dict[str, str], url: str, code: int, says: str
) -> None:
    result = run_subprocess({**cli_env, "DATABASE_URL": url}, "campaign", "list", timeout=60)
    assert result.code == code
    assert says in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "s3cr3t" not in result.err + result.out


def test_a_role_the_server_does_not_know_is_a_database_error(cli_env: dict[str, str], db_dsn: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(db_dsn)
    wrong = urlunsplit(parts._replace(netloc=f"nobody:s3cr3t@{parts.hostname or ''}"))
    result = run_subprocess({**cli_env, "DATABASE_URL": wrong}, "campaign", "list", timeout=60)
    assert result.code == ExitCode.DATABASE
    assert result.err.startswith("dispara: error: cannot connect to the database")
    assert "s3cr3t" not in result.err and result.err.count("\n") == 1


def test_failed_messages_have_their_own_documented_exit_code() -> None:
    assert int(ExitCode.FAILED_MESSAGES) == 7
    assert int(ExitCode.UNEXPECTED) == 1
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "7 the\n  campaign finished with failed messages" in readme or (
        "7 the campaign finished with failed messages" in " ".join(readme.split())
    )
