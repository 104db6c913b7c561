"""`dispara watch` in a subprocess, driven by a real worker: line output, exit codes, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispara.campaigns import control
from tests.integration.queue.conftest import Conn, make_settings, seed_campaign, start_worker
from tests.stubs.evolution_stub import EvolutionStub


@pytest.fixture
def watcher(cli_env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def watch(procs: list[subprocess.Popen[str]], env: dict[str, str], ref: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispara", "watch", ref, "--interval", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline()


def test_watch_prints_a_line_per_change_and_exits_0_on_completion(
    conn: Conn, db_dsn: str, tmp_path: Path, cli_env: dict[str, str], watcher: list[subprocess.Popen[str]]
) -> None:
    seeded = seed_campaign(conn, 20, instances=("a", "b"))
    control.pause(conn, seeded.campaign_id)  # nothing moves until the watcher is listening
    proc = watch(watcher, cli_env, str(seeded.campaign_id)[:8])
    assert " paused 0/20 " in first_line(proc)
    control.resume(conn, seeded.campaign_id)
    start_worker(make_settings(db_dsn, tmp_path / "data"), once=True).join()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert " completed 20/20 (100.0%) sent 20 failed 0 " in last


def test_watch_exits_7_when_messages_failed(
    conn: Conn,
    db_dsn: str,
    tmp_path: Path,
    cli_env: dict[str, str],
    watcher: list[subprocess.Popen[str]],
    stub: EvolutionStub,
) -> None:
    seeded = seed_campaign(conn, 4, retries=0)
    stub.configure(not_on_whatsapp={seeded.phones[2]})
    proc = watch(watcher, cli_env, str(seeded.campaign_id))
    first_line(proc)
    start_worker(make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url), once=True).join()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7  # ExitCode.FAILED_MESSAGES
    assert "sent 3 failed 1" in out.strip().splitlines()[-1]


def test_watch_ctrl_c_exits_130_without_traceback(
    conn: Conn, cli_env: dict[str, str], watcher: list[subprocess.Popen[str]]
) -> None:
    seeded = seed_campaign(conn, 2)
    proc = watch(watcher, cli_env, str(seeded.campaign_id))
    first_line(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
