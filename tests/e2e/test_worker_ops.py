"""`dispara worker --log-format json` and `--metrics-port`: what an operator's log shipper and Prometheus see.

Evolution is the local stub; the database URL and the Evolution URL carry passwords that must never show.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, Conn, seed_campaign, wait_for
from tests.stubs.evolution_stub import EvolutionStub

pytestmark = pytest.mark.slow

DB_PASSWORD = "db-pw-4f0c2e9b"
URL_PASSWORD = "evo-pw-9d8e7f6a"


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as server:
        yield server


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or 'dispara'}:{password}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def env_for(cli_env: dict[str, str], stub: EvolutionStub, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "worker.yaml"
    config.write_text(
        "worker:\n  poll_interval_s: 0.2\n  retry_base_s: 0.05\n  retry_cap_s: 0.1\n  concurrency: 2\n"
        "evolution:\n  typing_delay_ms: 0\n",
        encoding="utf-8",
    )
    dsn = cli_env["DATABASE_URL"]
    if not urlsplit(dsn).password:  # the test server trusts local connections: any password is accepted
        dsn = with_password(dsn, DB_PASSWORD)
    return {
        **cli_env,
        "DATABASE_URL": dsn,
        "EVOLUTION_API_URL": with_password(stub.url, URL_PASSWORD),
        "EVOLUTION_API_KEY": API_KEY,
        "DISPARA_CONFIG": str(config),
    }


def secrets_of(env: dict[str, str]) -> list[str]:
    found = [API_KEY, URL_PASSWORD]
    password = urlsplit(env["DATABASE_URL"]).password
    return [*found, password] if password else found


def test_json_logs_report_each_outcome_with_ids_and_no_secret(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 6, instances=["a", "b"])
    stub.configure(not_on_whatsapp={s.phones[0]}, fail_first={s.phones[1]: 1})
    env = env_for(cli_env, stub, tmp_path)

    result = run_subprocess(env, "worker", "--once", "--log-format", "json")

    assert result.code == 0, result.err
    assert result.out.startswith("worker: 5 sent, 1 failed, 1 to retry, 1 campaign completed")
    lines = result.err.splitlines()
    entries = [json.loads(line) for line in lines]  # every stderr line is one JSON object
    assert all({"time", "level", "logger", "message", "worker"} <= e.keys() for e in entries)
    assert all(e["time"].endswith("+00:00") for e in entries)
    assert len({e["worker"] for e in entries}) == 1
    outcomes = [e for e in entries if "job_id" in e]
    by_message = {e["message_id"]: e for e in outcomes if e["outcome"] != "retry"}
    assert sorted(by_message) == sorted(s.message_ids)
    assert {e["campaign_id"] for e in outcomes} == {str(s.campaign_id)}
    assert sorted(e["outcome"] for e in outcomes) == ["failed", "retry"] + ["sent"] * 5
    failed = by_message[s.message_ids[0]]
    assert (failed["outcome"], failed["error_kind"], failed["level"]) == ("failed", "not_on_whatsapp", "info")
    assert any(e.get("outcome") == "completed" for e in entries)
    for secret in secrets_of(env):
        assert secret not in result.err + result.out


def test_text_logs_carry_the_level_and_no_secret(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 3, instances=["a"])
    stub.configure(fail_first={s.phones[0]: 1})
    env = env_for(cli_env, stub, tmp_path)

    result = run_subprocess(env, "-v", "worker", "--once")

    assert result.code == 0, result.err
    logged = [line for line in result.err.splitlines() if " dispara." in line]
    assert logged
    assert all(
        re.match(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) dispara\.", line) for line in logged
    )
    assert any(" INFO dispara.worker job " in line and " retry in " in line for line in logged)
    for secret in secrets_of(env):
        assert secret not in result.err + result.out


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_endpoint_counts_sends_failures_retries_and_reads_the_queue(
    conn: Conn, cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    s = seed_campaign(conn, 6, instances=["a", "b"])
    stub.configure(not_on_whatsapp={s.phones[0]}, fail_first={s.phones[1]: 1})
    waiting = seed_campaign(conn, 4, instances=["c"], run_at_offset_s=3600)  # due in an hour: stays queued
    conn.execute(
        "UPDATE instances SET paused_until = now() + interval '1 hour' WHERE tenant_id = %s AND name = 'c'",
        (waiting.tenant_id,),
    )
    conn.commit()
    env = env_for(cli_env, stub, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispara", "worker", "--metrics-port", "0", "--log-format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        port = 0
        for line in proc.stderr:
            found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", json.loads(line)["message"])
            if found:
                port = int(found.group(1))
                break
        assert port

        def settled() -> bool:
            m = scrape(port)
            return sum(m.get("dispara_sends_total", {}).values()) == 5 and bool(
                m.get("dispara_failures_total")
            )

        wait_for(settled, timeout=60, what="5 sends and a failure in the metrics")
        m = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    sends = m["dispara_sends_total"]
    assert sends[(("instance", "a"),)] + sends[(("instance", "b"),)] == 5
    assert m["dispara_failures_total"] == {(("kind", "not_on_whatsapp"),): 1.0}
    assert m["dispara_retries_total"] == {(): 1.0}
    assert m["dispara_claim_seconds_count"][()] >= 1
    assert m["dispara_queue_depth"][(("instance", "c"),)] == 4
    assert m["dispara_instances_paused"][()] == 1
    assert m["dispara_instance_paused"] == {(("instance", "c"),): 1.0}
    assert len(stub.sends()) == 5  # the metrics count what the stub saw, once each


def test_metrics_port_in_use_is_a_one_line_configuration_error(cli_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_subprocess(cli_env, "worker", "--once", "--metrics-port", str(port))
    assert result.code == 3
    assert result.err.strip().splitlines()[-1].startswith(f"dispara: error: --metrics-port {port}: ")
    assert "Traceback" not in result.err
