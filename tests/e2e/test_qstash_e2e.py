"""The QStash path end to end, as an operator runs it: `campaign send` and `dispara serve` in subprocesses,
the local QStash delivering to serve, serve sending through the local Evolution stub.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, Conn, campaign_state, scalar, wait_for
from tests.stubs.evolution_stub import EvolutionStub
from tests.stubs.qstash_stub import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, QStashStub

pytestmark = pytest.mark.slow

SERVE_KEY = "serve-key-0123456789"
INSTANCES = ["vendas-1", "vendas-2", "vendas-3", "vendas-4"]
LATENCY_S = 0.004  # each Evolution call takes this long: two calls of one instance would overlap

CAMPAIGN = """\
name: QStash e2e
contacts: contatos.csv
instances: [{instances}]
delay: {{min: 0, max: 0}}
transport: qstash
retries: 4
templates:
  - type: text
    text: "Olá {{nome}}!"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_campaign(folder: Path, phones: list[str]) -> Path:
    rows = "".join(f"Contato {i},{p}\n" for i, p in enumerate(phones))
    (folder / "contatos.csv").write_text("nome,telefone\n" + rows, encoding="utf-8")
    path = folder / "campanha.yaml"
    path.write_text(CAMPAIGN.format(instances=", ".join(INSTANCES)), encoding="utf-8")
    return path


@pytest.fixture
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY, latency_s=LATENCY_S) as stub:
        yield stub


@pytest.fixture
def serve_port() -> int:
    return free_port()


@pytest.fixture
def env(cli_env: dict[str, str], evolution: EvolutionStub, serve_port: int, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "dispara.yaml"
    config.write_text("evolution:\n  typing_delay_ms: 0\nqstash:\n  clock_tolerance_s: 0\n", encoding="utf-8")
    return {
        **cli_env,
        "DISPARA_CONFIG": str(config),
        "EVOLUTION_API_URL": evolution.url,
        "EVOLUTION_API_KEY": API_KEY,
        "QSTASH_TOKEN": DEV_TOKEN,
        "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_KEY,
        "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_KEY,
        "DISPARA_PUBLIC_URL": f"http://127.0.0.1:{serve_port}",
        "DISPARA_API_KEY": SERVE_KEY,
    }


@contextlib.contextmanager
def running_serve(env: dict[str, str], port: int, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`dispara serve` in its own process until the block ends, then stopped with SIGTERM."""
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispara", "serve", "--port", str(port), "--log-format", "json"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, log_path.read_text()
            return False

    try:
        wait_for(up, timeout=60, what="dispara serve to answer /healthz")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    # uvicorn finishes in-flight requests and the shutdown, then re-raises SIGTERM to exit by it
    text = log_path.read_text()
    assert code in (0, -signal.SIGTERM) and "dispara serve: stopped" in text, text[-2000:]
    assert "Traceback" not in text


@pytest.fixture
def serve(env: dict[str, str], serve_port: int, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    with running_serve(env, serve_port, tmp_path) as proc:
        yield proc


def test_a_thousand_messages_over_qstash_are_each_sent_or_failed_exactly_once(
    conn: Conn,
    env: dict[str, str],
    evolution: EvolutionStub,
    serve: subprocess.Popen[str],
    tmp_path: Path,
) -> None:
    phones = [f"5511{9_0000_0000 + i}" for i in range(1000)]
    flaky = phones[::20]  # 5%: one 500 each, then fine
    absent = phones[7:400:80]  # five numbers not on WhatsApp
    evolution.configure(fail_first=dict.fromkeys(flaky, 1), not_on_whatsapp=set(absent))
    with QStashStub(duplicate_rate=0.02, retry_delay_s=0.02, seed=7) as qs:
        sent = run_subprocess(
            {**env, "QSTASH_URL": qs.url}, "campaign", "send", str(write_campaign(tmp_path, phones)), "--yes"
        )
        assert sent.code == 0, sent.err
        assert "1,000 messages handed to QStash in 10 batch(es)" in sent.out
        campaign_id = scalar(conn, "SELECT id FROM campaigns")
        wait_for(
            lambda: campaign_state(conn, campaign_id)["status"] == "completed", timeout=240, what="completion"
        )
        qs.wait_idle(60)
        keys = qs.flow_keys()
        assert len(keys) == len(INSTANCES) and all(qs.max_in_flight(k) == 1 for k in keys)
        assert any(a.duplicate for a in qs.attempts)  # at-least-once was exercised
    state = campaign_state(conn, campaign_id)
    assert state["messages"] == {"sent": 995, "failed": 5}
    assert (state["sent_count"], state["failed_count"]) == (995, 5)
    accepted = Counter(r.body["number"] for r in evolution.sends() if r.status == 201)
    assert max(accepted.values()) == 1 and len(accepted) == 995
    assert set(phones) - set(accepted) == set(absent)
    failed_kinds = scalar(
        conn, "SELECT array_agg(DISTINCT error_kind) FROM message_logs WHERE status = 'failed'"
    )
    assert failed_kinds == ["not_on_whatsapp"]
    # One Evolution call in flight per instance: each call takes LATENCY_S, so calls of one instance
    # never arrive closer together than that.
    arrivals: dict[str, list[float]] = defaultdict(list)
    for r in evolution.sends():
        arrivals[r.instance or ""].append(r.mono)
    for times in arrivals.values():
        times.sort()
        assert min(b - a for a, b in itertools.pairwise(times)) >= LATENCY_S * 0.9
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_messages_qstash_gives_up_on_are_failed_by_the_failure_callback(
    conn: Conn, env: dict[str, str], evolution: EvolutionStub, serve_port: int, tmp_path: Path
) -> None:
    phones = [f"5511{9_0000_0000 + i}" for i in range(3)]
    path = write_campaign(tmp_path, phones)
    path.write_text(path.read_text(encoding="utf-8").replace("retries: 4", "retries: 1"), encoding="utf-8")
    with QStashStub(retry_delay_s=0.02, callback_retries=120, callback_retry_s=0.25) as qs:
        # serve is not running yet: every delivery fails, QStash gives up and calls back until serve is up
        sent = run_subprocess({**env, "QSTASH_URL": qs.url}, "campaign", "send", str(path))
        assert sent.code == 0, sent.err
        wait_for(lambda: qs.states() == {"failed": 3}, timeout=60, what="QStash to give up")
        with running_serve(env, serve_port, tmp_path):
            campaign_id = scalar(conn, "SELECT id FROM campaigns")
            wait_for(
                lambda: campaign_state(conn, campaign_id)["status"] == "completed",
                timeout=60,
                what="completion",
            )
    state = campaign_state(conn, campaign_id)
    assert (state["failed_count"], state["messages"]) == (3, {"failed": 3})
    reasons = scalar(conn, "SELECT array_agg(DISTINCT error_message) FROM message_logs")
    assert reasons == ["QStash gave up after 2 deliveries (last answer HTTP 0)"]
    assert [a.status for a in qs.attempts] == [0] * 6  # 3 messages x (1 + 1 retry), none reached serve
    assert evolution.sends() == []
