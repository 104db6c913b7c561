"""Exit codes, one-line errors, settings masking and the embedded server shared by two processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli, run_subprocess


def test_settings_are_masked_unless_revealed(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = "gsk_0123456789abcdefWXYZ"
    assert run_cli(capsys, "settings", "set", "groq-apikey", key).code == 0
    assert run_cli(capsys, "settings", "set", "elevenlabs-voice-id", "voice123").code == 0
    listed = run_cli(capsys, "settings", "list")
    assert key not in listed.out
    assert "groq-apikey\t****WXYZ" in listed.out
    assert "elevenlabs-voice-id\tvoice123" in listed.out
    assert run_cli(capsys, "settings", "list", "--reveal").out.count(key) == 1
    assert run_cli(capsys, "settings", "get", "groq-apikey").out.strip() == "****WXYZ"
    assert run_cli(capsys, "settings", "unset", "groq-apikey").out.strip() == "groq-apikey removed"
    missing = run_cli(capsys, "settings", "get", "groq-apikey")
    assert (missing.code, missing.err.strip()) == (4, "dispara: error: setting groq-apikey is not set")


def test_settings_are_per_tenant(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "--tenant", "acme", "settings", "set", "JOB_WEBHOOK", "https://acme.example/hook")
    assert "no settings for tenant default" in run_cli(capsys, "settings", "list").out
    assert (
        run_cli(capsys, "--tenant", "acme", "settings", "get", "JOB_WEBHOOK").out.strip()
        == "https://acme.example/hook"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["settings", "set", "nope", "x"], 4, "dispara: error: unknown setting 'nope'"),
        (["settings", "bogus"], 2, "No such command 'bogus'"),
        (["--config", "/nonexistent.yaml", "config", "show"], 3, "configuration file not found"),
    ],
)
def test_exit_codes_and_one_line_errors(
    env_db: str, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


def test_unreachable_database_is_exit_5_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://dispara:s3cretpw@127.0.0.1:9/x?connect_timeout=2")
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "settings", "list")
    assert result.code == 5
    assert result.err.startswith(
        "dispara: error: cannot connect to the database postgresql://dispara:****@127.0.0.1:9/x"
    )
    assert result.err.count("\n") == 1
    assert "s3cretpw" not in result.err


def test_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://dispara@127.0.0.1:9/x?connect_timeout=2")
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "--debug", "settings", "list")
    assert result.code == 5
    assert "Traceback" in result.err


def test_config_show_never_prints_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "B6D711FCDE4D4FD5936544120E713976"
    (tmp_path / "dispara.yaml").write_text(f"groq:\n  api_key: {secret}gsk\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVOLUTION_API_KEY", secret)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:dbpassword@db.example.com/x")
    result = run_cli(capsys, "config", "show")
    assert result.code == 0
    assert secret not in result.out
    assert "dbpassword" not in result.out
    assert re.search(
        r"^evolution\.api_key +\*\*\*\*3976  \(env EVOLUTION_API_KEY\)$", result.out, re.MULTILINE
    )
    assert f"(file {Path('dispara.yaml')})" in result.out


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from dispara.cli import cli

    ctx = click.Context(cli)
    missing = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        subs = command.commands.values() if isinstance(command, click.Group) else []
        for cmd in [command, *subs]:
            if "Example:" not in (cmd.help or ""):
                missing.append(cmd.name)
    assert missing == []


def test_embedded_database_shared_by_two_processes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DISPARA_CONFIG"}}
    env["DISPARA_DATA_DIR"] = str(tmp_path / "data")
    try:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dispara",
                    "--tenant",
                    f"t{i}",
                    "settings",
                    "set",
                    "JOB_WEBHOOK",
                    f"https://h/{i}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for i in range(2)
        ]
        outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        assert outcomes == [(0, ""), (0, "")]
        for i in range(2):
            got = run_subprocess(env, "--tenant", f"t{i}", "settings", "get", "JOB_WEBHOOK")
            assert got.out.strip() == f"https://h/{i}"
        assert run_subprocess(env, "db", "url").out.startswith("postgresql://postgres:@/dispara?host=")
    finally:
        stopped = run_subprocess(env, "db", "stop")
    assert stopped.out.strip() == "embedded PostgreSQL stopped"
