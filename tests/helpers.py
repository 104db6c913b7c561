"""Helpers for tests that drive the CLI in-process or in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispara.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `dispara ARGS` in this process, returning exit code and captured output."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_subprocess(env: dict[str, str], *args: str, timeout: float = 120) -> Result:
    """Run `python -m dispara ARGS` as an operator would, in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "dispara", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=Path.cwd(),
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
