"""Receipts and replies end to end: `campaign send` and `dispara worker` send through the Evolution stub,
Evolution's webhooks (receipts with duplicates and reordering, SAIR replies) reach `dispara serve` over HTTP.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_qstash_e2e import free_port, running_serve
from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, Conn, campaign_state, scalar, wait_for
from tests.stubs import evolution_events as ev
from tests.stubs.evolution_stub import EvolutionStub
from tests.stubs.webhook_emitter import Emitter, receipt_plan

pytestmark = pytest.mark.slow

SECRET = "e2e-webhook-secret-0123456789abcdef"
INSTANCES = ["loja-1", "loja-2", "loja-3", "loja-4"]
CAMPAIGN = """\
name: {name}
contacts: {contacts}
instances: [{instances}]
delay: {{min: 0, max: 0}}
templates:
  - type: text
    text: "Olá {{nome}}! Responda SAIR para não receber mais mensagens."
"""


def write_campaign(folder: Path, name: str, phones: list[str]) -> Path:
    contacts = folder / f"{name}.csv"
    contacts.write_text("nome,telefone\n" + "".join(f"C{i},{p}\n" for i, p in enumerate(phones)), "utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(
        CAMPAIGN.format(name=name, contacts=contacts.name, instances=", ".join(INSTANCES)), "utf-8"
    )
    return path


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path, stub: EvolutionStub) -> dict[str, str]:
    config = tmp_path / "dispara.yaml"
    config.write_text(
        "evolution:\n  typing_delay_ms: 0\nworker:\n  concurrency: 8\n  poll_interval_s: 0.2\n", "utf-8"
    )
    return {
        **cli_env,
        "DISPARA_CONFIG": str(config),
        "EVOLUTION_API_URL": stub.url,
        "EVOLUTION_API_KEY": API_KEY,
        "EVOLUTION_WEBHOOK_SECRET": SECRET,
        "DISPARA_API_KEY": "serve-key-0123456789",
    }


def _send_and_drain(env: dict[str, str], path: Path) -> None:
    sent = run_subprocess(env, "campaign", "send", str(path), "--yes")
    assert sent.code == 0, sent.err
    drained = run_subprocess(env, "worker", "--once", timeout=300)
    assert drained.code == 0, drained.err


def test_receipts_are_counted_exactly_and_sair_replies_cancel_queued_messages(
    conn: Conn, env: dict[str, str], tmp_path: Path, stub: EvolutionStub
) -> None:
    phones = [f"5511{98_000_0000 + i}" for i in range(1000)]  # mobiles: 9, then 8
    _send_and_drain(env, write_campaign(tmp_path, "receipts-e2e", phones))
    first = scalar(conn, "SELECT id FROM campaigns")
    assert campaign_state(conn, first)["messages"] == {"sent": 1000}
    sent = conn.execute(
        "SELECT instance_name, evolution_key, phone_number FROM message_logs "
        "WHERE campaign_id = %s ORDER BY seq",
        (first,),
    ).fetchall()
    conn.commit()
    # A second campaign, queued and not sent yet, to 30 of the same numbers: 20 of them will say SAIR.
    quitters, stayers = phones[:20], phones[20:30]
    second_path = write_campaign(tmp_path, "second", quitters + stayers)
    assert run_subprocess(env, "campaign", "send", str(second_path), "--yes").code == 0
    second = scalar(conn, "SELECT id FROM campaigns WHERE name = 'second'")

    plan = receipt_plan([(i, k) for i, k, _ in sent], duplicate_rate=0.1, reorder_rate=0.1)
    replies = []
    for n, (instance, key, phone) in enumerate(sent[:20]):
        if n % 3 == 0:  # 2.3.6: the chat by LID, the phone in remoteJidAlt
            body = ev.upsert(
                instance, f"R{n}", "SAIR", remote_jid=f"{n}99@lid", remote_jid_alt=f"{phone}@s.whatsapp.net"
            )
        elif n % 3 == 1:  # LID only, quoting our message
            body = ev.upsert(instance, f"R{n}", "sair.", remote_jid=f"{n}98@lid", quoted=key)
        else:  # the phone without the ninth digit
            body = ev.upsert(instance, f"R{n}", "Sair", remote_jid=f"{phone[:4]}{phone[5:]}@s.whatsapp.net")
        replies += [body, body]  # each reply retried once
    port = free_port()
    serve_env = {**env, "DISPARA_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    with running_serve(serve_env, port, tmp_path):
        emitter = Emitter(f"http://127.0.0.1:{port}", SECRET)
        assert set(emitter.post_all(plan.bodies + replies)) == {200}

        seen: list[object] = []

        def settled() -> bool:
            row = conn.execute(
                "SELECT delivered_count, read_count, (SELECT count(*) FROM optouts) "
                "FROM campaigns WHERE id = %s",
                (first,),
            ).fetchone()
            conn.commit()
            seen[:] = [row]
            return row == (len(plan.delivered), len(plan.read), 20)

        expected = (len(plan.delivered), len(plan.read), 20)
        try:
            wait_for(settled, timeout=60, what="receipts and opt-outs processed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen} != {expected}") from None
    assert len(plan.bodies) > 2000 and len(plan.delivered) > 800 and len(plan.read) > 400
    counted = conn.execute(
        "SELECT count(delivered_at), count(read_at), count(replied_at) "
        "FROM message_logs WHERE campaign_id = %s",
        (first,),
    ).fetchone()
    assert counted == (len(plan.delivered), len(plan.read), 20)
    optouts = {r[0] for r in conn.execute("SELECT phone FROM optouts WHERE campaign_id = %s", (first,))}
    conn.commit()
    assert optouts == set(quitters)

    drained = run_subprocess(env, "worker", "--once", timeout=120)
    assert drained.code == 0, drained.err
    statuses = dict(
        conn.execute(
            "SELECT phone_number, status FROM message_logs WHERE campaign_id = %s", (second,)
        ).fetchall()
    )
    conn.commit()
    assert statuses == {**dict.fromkeys(quitters, "cancelled"), **dict.fromkeys(stayers, "sent")}
    sends = Counter(r.body["number"] for r in stub.sends())
    assert {p: sends[p] for p in quitters + stayers} == {
        **dict.fromkeys(quitters, 1),
        **dict.fromkeys(stayers, 2),
    }
