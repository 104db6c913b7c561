"""Acceptance on PostgreSQL 15 + pg_cron: after `db migrate --supabase`, `campaign send` causes one POST to
/dispatch per insert statement and `dispara serve` alone sends the campaign (no `dispara worker` runs).
The recording net.http_post and its relay play pg_net, which is packaged nowhere.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispara.config import ENV_KEYS
from tests.e2e.test_qstash_e2e import free_port, running_serve
from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, campaign_state, scalar, wait_for
from tests.integration.supabase.conftest import (
    DISPATCH_KEY,
    Conn,
    PgNetRelay,
    calls,
    cron_database,
    require_pgcron,
)
from tests.stubs.evolution_stub import EvolutionStub

pytestmark = pytest.mark.slow

CAMPAIGN = """\
name: Supabase e2e
contacts: contatos.csv
instances: [vendas-1, vendas-2]
delay: {min: 0, max: 0}
templates:
  - type: text
    text: "Olá {nome}!"
"""


@pytest.fixture
def pgcron_url() -> str:
    return require_pgcron()


@pytest.fixture
def cron_db(pgcron_url: str) -> Iterator[Conn]:
    with cron_database(pgcron_url) as conn:
        yield conn


@pytest.fixture
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as stub:
        yield stub


def test_campaign_send_wakes_serve_through_the_insert_trigger_and_serve_alone_completes_it(
    cron_db: Conn, pgcron_url: str, evolution: EvolutionStub, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "dispara.yaml"
    config.write_text("evolution:\n  typing_delay_ms: 0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {*ENV_KEYS, "DISPARA_CONFIG"}}
    env.update(
        DATABASE_URL=pgcron_url,
        DISPARA_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        DISPARA_CONFIG=str(config),
        EVOLUTION_API_URL=evolution.url,
        EVOLUTION_API_KEY=API_KEY,
        DISPARA_API_KEY=DISPATCH_KEY,
        PYTHONUNBUFFERED="1",
    )
    url = f"http://127.0.0.1:{port}/dispatch"
    migrated = run_subprocess(env, "db", "migrate", "--supabase", "--dispatch-url", url, "--yes")
    assert migrated.code == 0, migrated.err
    assert "left out" not in migrated.err
    phones = [f"5511{9_0000_0000 + i}" for i in range(40)]
    rows = "".join(f"Contato {i},{p}\n" for i, p in enumerate(phones))
    (tmp_path / "contatos.csv").write_text("nome,telefone\n" + rows, encoding="utf-8")
    (tmp_path / "campanha.yaml").write_text(CAMPAIGN, encoding="utf-8")
    with running_serve(env, port, tmp_path), PgNetRelay(pgcron_url):
        sent = run_subprocess(env, "campaign", "send", str(tmp_path / "campanha.yaml"), "--yes")
        assert sent.code == 0, sent.err
        campaign_id = scalar(cron_db, "SELECT id FROM campaigns")
        wait_for(lambda: campaign_state(cron_db, campaign_id)["status"] == "completed", 90, "completion")
        wait_for(lambda: all(c["relayed_status"] for c in calls(cron_db)), 30, "the relay to finish")
    made = calls(cron_db)
    inserts = [c for c in made if c["body"] == {"reason": "insert"}]
    assert len(inserts) == 1 and inserts[0]["relayed_status"] == 200  # one INSERT statement of 40 jobs
    assert {(c["url"], c["headers"]["Authorization"]) for c in made} == {(url, f"Bearer {DISPATCH_KEY}")}
    assert {c["relayed_status"] for c in made} <= {200, 202}  # 202: a minute run during the drain
    state = campaign_state(cron_db, campaign_id)
    assert state["messages"] == {"sent": 40} and state["sent_count"] == 40
    accepted = Counter(r.body["number"] for r in evolution.sends() if r.status == 201)
    assert sorted(accepted) == sorted(phones) and set(accepted.values()) == {1}
