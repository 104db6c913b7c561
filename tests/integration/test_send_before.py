"""Before sending: a dry run that writes nothing and shows the plan, previews, test sends, past schedules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import psycopg
import pytest

from dispara.campaigns.send import send_campaign
from dispara.providers.outbox import outbox_path
from tests.helpers import run_cli
from tests.integration.test_campaign_send import counts, send, write_campaign

CSV = b"telefone,nome,empresa\n11988880001,Ana,X\n11988880002,Bia,Y\n11988880003,Cy,Z\n123,Dani,W\n"


def tenants(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM tenants").fetchone()
    assert row is not None
    return int(row[0])


def test_dry_run_leaves_no_file_behind_and_keeps_an_old_rejected_file(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV)
    stale = tmp_path / "contatos.rejected.csv"
    stale.write_text("from an earlier real run\n", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = send(capsys, path, "--dry-run")
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert stale.read_text(encoding="utf-8") == "from an earlier real run\n"
    assert counts(env_db) == (0, 0, 0)
    assert tenants(env_db) == 0  # not even the tenant is created


def test_dry_run_shows_schedule_window_cap_and_an_estimate_from_the_pacing(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    extra = "schedule:\n  window: {start: '00:00', end: '23:59'}\n  daily_cap: 1000"
    path = write_campaign(tmp_path, CSV, extra=extra)
    out = json.loads(send(capsys, path, "--dry-run", "--json").out)
    messages, instances, gap = out["report"]["messages"], 2, (1 + 2) / 2  # delay 1-2 s in the file
    # Instances send side by side, one message per gap: the busiest one sends ceil(messages/2).
    expected = (math.ceil(messages / instances) - 1) * gap
    assert abs(out["estimate"]["seconds"] - expected) <= 1
    text = send(capsys, path, "--dry-run").out
    assert "window     00:00-23:59 every day America/Sao_Paulo" in text
    assert "daily cap  1,000 per instance" in text
    assert "estimate   about" in text and "last message around" in text and "-03" in text


def test_dry_run_says_when_a_real_send_would_be_a_no_op(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV)
    created = json.loads(send(capsys, path, "--json").out)["campaign"]["id"]
    dry = send(capsys, path, "--dry-run")
    assert f"already sent as campaign {created[:8]}" in dry.out
    assert "a real send would only show it" in dry.out
    assert json.loads(send(capsys, path, "--dry-run", "--json").out)["already_sent_as"] == created
    assert counts(env_db)[0] == 1


def test_confirmation_gets_the_estimate(env_db: str, tmp_path: Path) -> None:
    rows = "".join(f"1198888{i:04d},N{i},E\n" for i in range(501))
    path = write_campaign(tmp_path, ("telefone,nome,empresa\n" + rows).encode())
    asked = []

    def confirm(outcome: object) -> bool:
        asked.append(outcome)
        return False

    from dispara.campaigns.send import Declined
    from dispara.tenants import tenant_id

    with psycopg.connect(env_db) as conn, pytest.raises(Declined):
        send_campaign(conn, tenant_id(conn, "default"), path, confirm=confirm)
    (outcome,) = asked
    assert outcome.estimate is not None  # type: ignore[attr-defined]
    assert outcome.estimate.duration.total_seconds() > 0  # type: ignore[attr-defined]
    assert counts(env_db) == (0, 0, 0)


def test_preview_shows_n_messages(env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_campaign(tmp_path, CSV)
    for n in (0, 2, 6):
        out = json.loads(send(capsys, path, "--dry-run", "--preview", str(n), "--json").out)
        assert len(out["preview"]) == n


def test_a_schedule_in_the_past_needs_now(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV, extra="schedule:\n  at: 2020-01-02 09:00")
    refused = send(capsys, path)
    assert refused.code == 4
    assert "schedule.at 2020-01-02 09:00 -03 is in the past" in refused.err
    assert "--now" in refused.err
    assert counts(env_db) == (0, 0, 0)
    started = json.loads(send(capsys, path, "--now", "--json").out)
    assert started["campaign"]["status"] == "processing"
    assert started["scheduled_for"] is None
    explicit = write_campaign(tmp_path, CSV, extra="id: agora\nschedule:\n  at: now")
    assert json.loads(send(capsys, explicit, "--json").out)["campaign"]["status"] == "processing"


def test_test_send_goes_to_the_operators_numbers_only(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, CSV)
    result = send(capsys, path, "--test-to", "+55 21 99999-0001,5531988880002", "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["test_to"] == ["5521999990001", "5531988880002"]
    with psycopg.connect(env_db) as conn:
        phones = [r[0] for r in conn.execute("SELECT phone_number FROM message_logs ORDER BY seq")]
        (name, test) = conn.execute("SELECT name, test FROM campaigns").fetchone()  # type: ignore[misc]
    assert phones == ["5521999990001", "5521999990001", "5531988880002", "5531988880002"]
    assert (name, test) == ("Teste [teste]", True)
    assert not (tmp_path / "contatos.rejected.csv").exists()  # a test send says nothing about the file

    worker = run_cli(capsys, "worker", "--once")
    assert worker.code == 0, worker.err
    sent = [json.loads(line) for line in outbox_path(tmp_path / "data").read_text().splitlines()]
    assert sorted(m["number"] for m in sent) == sorted(phones)  # each once, none to a contact

    # A test send never stands in for the real campaign: the real send still creates it.
    real = json.loads(send(capsys, path, "--json").out)
    assert real["created"] is True and real["test_to"] == []
    assert len(json.loads(send(capsys, path, "--test-to", "5521999990001", "--json").out)["preview"]) == 2
    assert counts(env_db)[0] == 3


def test_test_send_refuses_a_bad_number(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = send(capsys, write_campaign(tmp_path, CSV), "--test-to", "12345")
    assert result.code == 4
    assert "--test-to '12345': not a usable number" in result.err
    assert counts(env_db) == (0, 0, 0)


def test_all_rows_rejected_shows_top_reasons_and_the_rejected_file(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n123,Ana,X\n456,Bia,Y\n,Cy,Z\n")
    result = send(capsys, path)
    assert result.code == 4
    rejected = tmp_path / "contatos.rejected.csv"
    assert "2 x telefone inválido: curto demais; 1 x telefone inválido: vazio" in result.err
    assert f"every refused row is in {rejected}" in result.err
    assert len(rejected.read_text(encoding="utf-8-sig").splitlines()) == 4
    dry = send(capsys, path, "--dry-run")
    assert dry.code == 4 and f"a real send writes them to {rejected}" in dry.err
    assert counts(env_db) == (0, 0, 0)
