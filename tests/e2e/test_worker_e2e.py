"""`dispara worker` and `dispara redrive` as an operator runs them: subprocesses, signals, a crash.

Evolution is the local stub (in this process); the worker gets a short lease from a --config file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, Conn, campaign_state, scalar, seed_campaign, wait_for
from tests.stubs.evolution_stub import EvolutionStub

pytestmark = pytest.mark.slow


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as server:
        yield server


def config(tmp_path: Path, lease_s: float = 1.5, grace_s: float = 5.0) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(
        f"worker:\n  lease_s: {lease_s}\n  poll_interval_s: 0.2\n  grace_s: {grace_s}\n  concurrency: 4\n"
        "  batch_size: 10\nevolution:\n  typing_delay_ms: 0\n",
        encoding="utf-8",
    )
    return path


def evolution_env(cli_env: dict[str, str], stub: EvolutionStub) -> dict[str, str]:
    return {**cli_env, "EVOLUTION_API_URL": stub.url, "EVOLUTION_API_KEY": API_KEY}


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dispara", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_once_drains_a_small_campaign_into_the_outbox(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path
) -> None:
    s = seed_campaign(conn, 5, instances=["a", "b"], delay=(0.2, 0.3))
    result = run_subprocess(cli_env, "--config", str(config(tmp_path)), "worker", "--once")
    assert result.code == 0, result.err
    outbox = Path(cli_env["DISPARA_DATA_DIR"]) / "outbox.jsonl"
    assert f"messages go to the outbox file {outbox}, not to WhatsApp" in result.err
    assert result.out.startswith("worker: 5 sent, 0 failed, 1 campaign completed in ")
    assert len(outbox.read_text().splitlines()) == 5
    assert campaign_state(conn, s.campaign_id)["status"] == "completed"


def test_killed_worker_is_taken_over_after_its_lease_expires(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    stub.configure(latency_s=0.15)  # sends block for a while, so the kill lands with sends in flight
    s = seed_campaign(conn, 40, instances=["a", "b", "c", "d"])
    env = evolution_env(cli_env, stub)
    cfg = str(config(tmp_path))
    victim = spawn(env, "--config", cfg, "worker")
    try:
        wait_for(lambda: len(stub.sends()) >= 6, timeout=60, what="some sends")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    in_flight = scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'processing'")
    assert in_flight > 0  # the kill left leased work behind
    stub.configure(latency_s=0.0)

    rescue = run_subprocess(env, "--config", cfg, "redrive", "--max-seconds", "60")
    assert rescue.code == 0, rescue.err
    assert rescue.out.startswith("redrive: ")

    sends = Counter(r.body["number"] for r in stub.sends())
    assert set(sends) == set(s.phones)  # every message reached Evolution at least once
    # A send whose HTTP call finished just before the kill is sent again: inherent to at-least-once.
    assert sum(sends.values()) - len(s.phones) <= in_flight
    state = campaign_state(conn, s.campaign_id)
    assert state["messages"] == {"sent": 40}
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 40, 0)
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE status <> 'completed'") == 0


def test_sigkill_with_no_retries_fails_nothing_that_was_not_tried(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    # retries: 0 and a claimed run of 10 per instance: before, one kill failed every claimed message.
    stub.configure(latency_s=0.05)
    s = seed_campaign(conn, 200, instances=["a", "b", "c", "d"], retries=0)
    env = evolution_env(cli_env, stub)
    cfg = str(config(tmp_path))
    for _kill in range(3):
        victim = spawn(env, "--config", cfg, "worker")
        try:
            before = len(stub.sends())
            wait_for(lambda b=before: len(stub.sends()) >= b + 8, timeout=60, what="some sends")  # type: ignore[misc]
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
    stub.configure(latency_s=0.0)
    rescue = run_subprocess(env, "--config", cfg, "redrive", "--max-seconds", "60")
    assert rescue.code == 0, rescue.err
    accepted = stub.accepted_numbers()
    assert set(accepted) == set(s.phones)
    # What may go out twice per instance and kill: the send on the wire, and one whose reply came in the
    # last few milliseconds before the kill, before its outcome was committed (the completer's batch).
    assert sum(accepted.values()) - len(s.phones) <= 3 * 4 * 2
    state = campaign_state(conn, s.campaign_id)
    assert state["messages"] == {"sent": 200}
    assert (state["status"], state["sent_count"], state["failed_count"]) == ("completed", 200, 0)


def test_sigterm_finishes_in_flight_sends_and_puts_the_rest_back(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    stub.configure(latency_s=0.2)
    s = seed_campaign(conn, 30, instances=["a", "b", "c"])
    worker = spawn(evolution_env(cli_env, stub), "--config", str(config(tmp_path, lease_s=30)), "worker")
    try:
        wait_for(lambda: len(stub.sends()) >= 3, timeout=60, what="some sends")
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "SIGTERM: finishing in-flight sends, then stopping" in err
    assert out.startswith("worker: ")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'processing'") == 0
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE status = 'pending' AND attempts > 0") == 0
    assert scalar(conn, "SELECT count(*) FROM instances WHERE locked_by IS NOT NULL") == 0
    state = campaign_state(conn, s.campaign_id)
    assert state["sent_count"] == len(stub.sends()) == state["messages"]["sent"]
    assert state["messages"].get("queued", 0) == 30 - state["sent_count"]


def test_worker_help_has_an_example() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dispara", "worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    ).stdout
    assert "Example:" in out
    assert "--once" in out
