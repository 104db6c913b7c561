"""The real EvolutionSender against the real local stub over loopback (and the stub's own behaviours)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.base import (
    InstanceUnavailableError,
    OutgoingMessage,
    ServerNotActivatedError,
    UnknownInstanceError,
)
from dispara.providers.evolution import EvolutionSender
from dispara.providers.evolution_errors import ApiKeyRejectedError
from tests.stubs.evolution_stub import EvolutionStub

KEY = "stub-test-key"
ROOT = Path(__file__).resolve().parents[3]


def text(number: str = "5511999990000", instance: str = "sales", body: str = "Olá") -> OutgoingMessage:
    return OutgoingMessage(instance, number, "text", body, None, None, None)


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=KEY) as server:
        yield server


@pytest.fixture
def sender(stub: EvolutionStub) -> Iterator[EvolutionSender]:
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s:
        yield s


def test_sends_every_message_type_end_to_end(stub: EvolutionStub, sender: EvolutionSender) -> None:
    assert sender.instance_state("sales") == "open"
    results = [
        sender.send(text()),
        sender.send(
            OutgoingMessage("sales", "5511999990001", "image", None, "https://x.io/a.jpg", "Oi", None)
        ),
        sender.send(
            OutgoingMessage("sales", "5511999990002", "document", None, "https://x.io/f.pdf", None, None)
        ),
        sender.send(
            OutgoingMessage("Loja SP", "5511999990003", "audio", None, "https://x.io/v.mp3", None, None)
        ),
    ]
    assert len({r.key_id for r in results}) == 4
    assert all(r.key_id.startswith("3EB0") and r.response["status"] == "PENDING" for r in results)
    assert results[1].response["messageType"] == "imageMessage"
    sends = stub.sends()
    assert [r.route for r in sends] == ["sendText", "sendMedia", "sendMedia", "sendWhatsAppAudio"]
    assert sends[0].body == {"number": "5511999990000", "text": "Olá", "delay": 0}
    assert sends[2].body["fileName"] == "f.pdf"
    assert sends[3].instance == "Loja SP" and sends[3].path == "/message/sendWhatsAppAudio/Loja%20SP"
    assert all(r.headers["apikey"] == KEY for r in stub.requests())


def test_stub_behaviours_map_to_the_right_errors(stub: EvolutionStub, sender: EvolutionSender) -> None:
    stub.configure(
        not_on_whatsapp={"5511000000000"},
        closed_instances={"closed"},
        closed_at_send={"flaky-socket"},
        unloaded_instances={"unloaded"},
        fail_first={"5511777777777": 2},
    )
    with pytest.raises(PermanentServiceError, match="5511000000000 is not on WhatsApp"):
        sender.send(text("5511000000000"))
    with pytest.raises(InstanceUnavailableError):
        sender.send(text(instance="closed"))
    assert sender.instance_state("closed") == "close"
    with pytest.raises(InstanceUnavailableError):
        sender.send(text(instance="flaky-socket"))
    with pytest.raises(InstanceUnavailableError, match="not loaded"):
        sender.send(text(instance="unloaded"))
    assert sender.instance_state("unloaded") == "unknown"
    for _ in range(2):
        with pytest.raises(TransientServiceError) as info:
            sender.send(text("5511777777777"))
        assert type(info.value) is TransientServiceError and info.value.status == 500
    assert sender.send(text("5511777777777")).key_id

    stub.configure(instances={"sales"})
    with pytest.raises(UnknownInstanceError):
        sender.send(text(instance="ghost"))
    with EvolutionSender(stub.url, "wrong-key") as bad, pytest.raises(ApiKeyRejectedError):
        bad.send(text())
    stub.configure(license_gate=True)
    with pytest.raises(ServerNotActivatedError):
        sender.instance_state("sales")


def test_threads_share_keep_alive_connections(stub: EvolutionStub) -> None:
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s, ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: s.send(text(f"55119{i:08d}")).key_id, range(400)))
    assert len(set(ids)) == 400
    assert len(stub.sends()) == 400
    assert stub.connections <= 4  # one socket per thread at most, reused for every request
    times = [r.mono for r in stub.requests()]
    assert times == sorted(times)


def test_honour_delay_holds_the_request_like_the_real_server(stub: EvolutionStub) -> None:
    stub.configure(honour_delay=True)
    with EvolutionSender(stub.url, KEY, typing_delay_ms=300) as s:
        started = time.monotonic()
        s.send(text())
    assert time.monotonic() - started >= 0.3


def test_schema_errors_come_back_as_the_real_server_sends_them(stub: EvolutionStub) -> None:
    response = httpx.post(
        f"{stub.url}/message/sendText/sales", json={"number": 5511}, headers={"apikey": KEY}
    )
    assert response.status_code == 400
    assert response.json()["response"]["message"] == [['instance requires property "text"']]
    response = httpx.post(f"{stub.url}/message/nope/sales", json={}, headers={"apikey": KEY})
    assert response.status_code == 404
    assert response.json()["response"]["message"] == ["Cannot POST /message/nope/sales"]


def test_a_stopped_stub_is_a_transient_network_error() -> None:
    with EvolutionStub(api_key=KEY) as server:
        url = server.url
    with EvolutionSender(url, KEY) as s, pytest.raises(TransientServiceError, match="cannot reach Evolution"):
        s.send(text())


def test_stub_runs_as_a_module_in_its_own_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs.evolution_stub", "--port", "0", "--api-key", KEY,
         "--not-on-whatsapp", "5511000000000", "--max-seconds", "60"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("EVOLUTION_STUB_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        with EvolutionSender(url, KEY, typing_delay_ms=0) as s:
            assert s.send(text()).key_id
            with pytest.raises(PermanentServiceError):
                s.send(text("5511000000000"))
        recorded = httpx.get(f"{url}/_stub/requests").json()
        assert [(r["route"], r["status"]) for r in recorded] == [("sendText", 201), ("sendText", 400)]
        assert json.dumps(recorded)
        assert httpx.post(f"{url}/_stub/config", json={"closed_instances": ["sales"]}).status_code == 200
        with EvolutionSender(url, KEY) as s:
            assert s.instance_state("sales") == "close"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
