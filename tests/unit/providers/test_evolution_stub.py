"""The real EvolutionSender against the real local stub over loopback, and the stub's own behaviours
(the fault injection the queue's tests rely on included)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers import health
from dispara.providers.base import (
    InstanceUnavailableError,
    NoAnswerError,
    OutgoingMessage,
    ServerNotActivatedError,
    UnknownInstanceError,
)
from dispara.providers.evolution import EvolutionSender
from dispara.providers.evolution_errors import ApiKeyRejectedError
from tests.stubs.evolution_stub import EvolutionStub
from tests.unit.providers.conftest import STUB_KEY as KEY

ROOT = Path(__file__).resolve().parents[3]


def text(number: str = "5511999990000", instance: str = "sales", body: str = "Olá") -> OutgoingMessage:
    return OutgoingMessage(instance, number, "text", body, None, None, None)


def test_sends_every_message_type_end_to_end(stub: EvolutionStub, stub_sender: EvolutionSender) -> None:
    assert stub_sender.instance_state("sales") == "open"
    results = [
        stub_sender.send(text()),
        stub_sender.send(
            OutgoingMessage("sales", "5511999990001", "image", None, "https://x.io/a.jpg", "Oi", None)
        ),
        stub_sender.send(
            OutgoingMessage("sales", "5511999990002", "document", None, "https://x.io/f.pdf", None, None)
        ),
        stub_sender.send(
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


def test_stub_behaviours_map_to_the_right_errors(stub: EvolutionStub, stub_sender: EvolutionSender) -> None:
    stub.configure(
        not_on_whatsapp={"5511000000000"},
        closed_instances={"closed"},
        closed_at_send={"flaky-socket"},
        unloaded_instances={"unloaded"},
        fail_first={"5511777777777": 2},
    )
    with pytest.raises(PermanentServiceError, match="5511000000000 is not on WhatsApp"):
        stub_sender.send(text("5511000000000"))
    with pytest.raises(InstanceUnavailableError):
        stub_sender.send(text(instance="closed"))
    assert stub_sender.instance_state("closed") == "close"
    with pytest.raises(InstanceUnavailableError):
        stub_sender.send(text(instance="flaky-socket"))
    with pytest.raises(InstanceUnavailableError, match="not loaded"):
        stub_sender.send(text(instance="unloaded"))
    assert stub_sender.instance_state("unloaded") == "unknown"
    for _ in range(2):
        with pytest.raises(TransientServiceError) as info:
            stub_sender.send(text("5511777777777"))
        assert type(info.value) is TransientServiceError and info.value.status == 500
    assert stub_sender.send(text("5511777777777")).key_id

    stub.configure(instances={"sales"})
    with pytest.raises(UnknownInstanceError):
        stub_sender.send(text(instance="ghost"))
    with EvolutionSender(stub.url, "wrong-key") as bad, pytest.raises(ApiKeyRejectedError):
        bad.send(text())
    stub.configure(license_gate=True)
    with pytest.raises(ServerNotActivatedError):
        stub_sender.instance_state("sales")


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


# ---- fault injection -----------------------------------------------------------------------------------
def outcomes(sender: EvolutionSender, count: int) -> list[str]:
    seen = []
    for i in range(count):
        try:
            sender.send(text(f"55119{i:08d}"))
            seen.append("sent")
        except InstanceUnavailableError:
            seen.append("closed")
        except TransientServiceError as exc:
            seen.append(f"transient {exc.status}")
    return seen


def test_closed_and_transient_rates_are_drawn_from_a_seeded_rng(
    stub: EvolutionStub, stub_sender: EvolutionSender
) -> None:
    stub.configure(closed_rate=0.3, transient_rate=0.2, seed=7)
    first = outcomes(stub_sender, 300)
    stub.configure(seed=7)
    again = outcomes(stub_sender, 300)
    stub.configure(seed=8)
    other = outcomes(stub_sender, 300)
    assert again == first and other != first  # the same seed, the same sequence
    counts = Counter(first)
    assert set(counts) == {"sent", "closed", "transient 500"}
    assert 45 <= counts["closed"] <= 135 and 25 <= counts["transient 500"] <= 95  # ~90 and ~60 of 300
    answered = {"sent": 201, "closed": 400, "transient 500": 500}
    expected = Counter(answered[o] for o in first + again + other)
    assert Counter(r.status for r in stub.sends(ok_only=False)) == expected


def test_accepted_numbers_counts_only_201_sends(stub: EvolutionStub, stub_sender: EvolutionSender) -> None:
    stub.configure(not_on_whatsapp={"5511000000000"}, fail_first={"5511777777777": 1})
    for number in ("5511999990001", "5511999990001", "5511999990002", "5511000000000", "5511777777777"):
        with contextlib.suppress(PermanentServiceError, TransientServiceError):
            stub_sender.send(text(number))
    assert stub.accepted_numbers() == Counter({"5511999990001": 2, "5511999990002": 1})


def test_max_in_flight_per_instance_and_overall(stub: EvolutionStub) -> None:
    stub.configure(hang_s=30)  # held until the stub goes down
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s, ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(s.send, text(f"55119000000{i}", instance)) for i, instance in enumerate("aab")]
        deadline = time.monotonic() + 10
        while stub.max_in_flight() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        stub.down()
        assert all(isinstance(f.exception(), NoAnswerError) for f in futures)
    assert (stub.max_in_flight("a"), stub.max_in_flight("b"), stub.max_in_flight()) == (2, 1, 3)
    assert stub.max_in_flight("nobody") == 0
    stub.reset()
    assert stub.max_in_flight() == 0


def test_hang_s_records_the_send_as_accepted_before_answering(stub: EvolutionStub) -> None:
    stub.configure(hang_s=0.3)
    with EvolutionSender(stub.url, KEY, typing_delay_ms=0) as s:
        started = time.monotonic()
        assert s.send(text()).key_id
    assert time.monotonic() - started >= 0.3
    (send,) = stub.sends()
    assert send.status == 201


def test_down_refuses_connections_and_up_listens_on_the_same_port(stub: EvolutionStub) -> None:
    url = stub.url
    assert httpx.get(f"{url}/_stub/requests").status_code == 200
    stub.down()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_stub/requests")
    stub.up()
    assert stub.url == url and httpx.get(f"{url}/_stub/requests").status_code == 200


@pytest.mark.parametrize("status", [502, 503, 504])
def test_proxy_error_answers_nginx_html_on_every_route(stub: EvolutionStub, status: int) -> None:
    stub.configure(proxy_error=status)
    for method, path in [
        ("POST", "/message/sendText/sales"),
        ("GET", "/instance/connectionState/sales"),
        ("GET", "/instance/fetchInstances"),
    ]:
        response = httpx.request(method, f"{stub.url}{path}", json={"number": "1", "text": "x"})
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/html")
        assert f"<title>{status} " in response.text and "nginx" in response.text
    assert httpx.get(f"{stub.url}/_stub/requests").status_code == 200  # control routes still answer
    assert not stub.accepted_numbers()


def test_fetch_instances_lists_the_instances(stub: EvolutionStub, stub_sender: EvolutionSender) -> None:
    headers = {"apikey": KEY}
    stub.configure(instances={"sales", "support"}, closed_instances={"support"})
    stub_sender.send(text())
    rows = httpx.get(f"{stub.url}/instance/fetchInstances", headers=headers).json()
    assert [(r["name"], r["connectionStatus"]) for r in rows] == [("sales", "open"), ("support", "close")]
    assert rows[0]["_count"]["Message"] == 1 and KEY not in json.dumps(rows)
    one = httpx.get(f"{stub.url}/instance/fetchInstances?instanceName=sales", headers=headers).json()
    assert [r["name"] for r in one] == ["sales"]
    missing = httpx.get(f"{stub.url}/instance/fetchInstances?instanceName=ghost", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["response"]["message"] == ['Instance "ghost" not found']
    assert httpx.get(f"{stub.url}/instance/fetchInstances", headers={"apikey": "bad"}).status_code == 401


def test_doctor_checks_pass_against_the_stub(stub: EvolutionStub, stub_sender: EvolutionSender) -> None:
    stub.configure(instances={"sales", "support"}, closed_instances={"support"})
    summary = health.check_evolution_server(stub.url, KEY)
    assert summary == f"{stub.url} reachable, API key accepted (2 instance(s) on the server)"
    assert health.check_evolution_instance(stub_sender, "sales")
    with pytest.raises(health.CheckFailed) as info:
        health.check_evolution_server(stub.url, "wrong-key")
    assert info.value.status == 401
    with pytest.raises(health.CheckFailed):
        health.check_evolution_instance(stub_sender, "support")
