"""A slice of the suite again with every dispara table renamed: the queries follow config `tables:`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLICE = (
    "tests/integration/queue/test_claim.py",
    "tests/integration/queue/test_complete.py",
    "tests/integration/queue/test_worker.py",
    "tests/integration/test_campaign_send.py",
    "tests/integration/qstash/test_serve_messages.py",
    "tests/integration/receipts/test_receipts.py",
)


@pytest.mark.slow
def test_the_queue_campaign_qstash_and_receipt_tests_pass_with_every_table_renamed(tmp_path: Path) -> None:
    env = {**os.environ, "DISPARA_TEST_TABLES": "renamed"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={tmp_path}",
        *SLICE,
    ]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
