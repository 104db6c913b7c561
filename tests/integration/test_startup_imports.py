"""Read commands load only what they use: what each one imports, checked in a fresh process (no timers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_subprocess

ROOT = Path(__file__).resolve().parents[2]
# Libraries only sending, serving or reading YAML needs; a read command that loads one pays for it every call.
SENDING = {"httpx", "phonenumbers", "tenacity", "prometheus_client", "psycopg_pool", "starlette", "qstash"}
_PROBE = """
import json, sys
from dispara.cli import main
try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}, out)
"""


def imported(env: dict[str, str], tmp_path: Path, *args: str) -> set[str]:
    """The top-level packages loaded by the time `dispara ARGS` returns, in a fresh process."""
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        env=env,
        capture_output=True,
        check=True,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    found = json.loads(report.read_text())
    assert found["code"] == 0, args
    return set(found["modules"])


def test_help_loads_click_and_dispara_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert "watch" in run_subprocess(cli_env, "--help").out  # every command listed with its short help
    loaded = imported(cli_env, tmp_path, "--help")
    assert loaded & {*SENDING, "pydantic", "psycopg", "yaml", "rich"} == set()


def test_read_commands_load_no_sending_library(cli_env: dict[str, str], tmp_path: Path) -> None:
    sent = run_subprocess(cli_env, "campaign", "send", str(ROOT / "campaigns" / "example.yaml"), "--yes")
    assert sent.code == 0, sent.err
    for args in (["db", "url"], ["campaign", "list"], ["status", "Boas-vindas exemplo"]):
        loaded = imported(cli_env, tmp_path, *args)
        # No configuration file here: PyYAML stays unloaded; rich only where a table is drawn.
        assert loaded & {*SENDING, "yaml"} == set(), args
        assert ("rich" in loaded) == (args[0] == "status"), args
