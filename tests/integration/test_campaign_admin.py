"""`dispara campaign list` and `campaign export` against a real database."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def campaign_id(env_db: str, capsys: pytest.CaptureFixture[str]) -> str:
    result = run_cli(capsys, "campaign", "send", str(ROOT / "campaigns" / "example.yaml"), "--json")
    cid: str = json.loads(result.out)["campaign"]["id"]
    with psycopg.connect(env_db) as conn:
        conn.execute(
            "UPDATE message_logs SET status = 'failed',"
            " error_message = 'number 5511999990001 is not on WhatsApp' WHERE phone_number = '5511999990001'"
        )
        conn.execute("UPDATE campaigns SET failed_count = 2")
    return cid


def test_list_shows_recent_campaigns_with_counters(
    campaign_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads(run_cli(capsys, "campaign", "list", "--json").out)
    assert [(r["id"], r["total"], r["failed"], r["status"]) for r in rows] == [
        (campaign_id, 36, 2, "processing")
    ]
    assert json.loads(run_cli(capsys, "campaign", "list", "--status", "completed", "--json").out) == []
    text = run_cli(capsys, "campaign", "list").out
    assert campaign_id[:8] in text and "Boas-vindas exemplo" in text


def test_export_csv_to_stdout_has_every_message(campaign_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "campaign", "export", campaign_id[:8])
    rows = list(csv.DictReader(result.out.splitlines()))
    assert len(rows) == 36
    assert rows[0]["phone"] == "5511999990001"
    assert rows[0]["error"] == "number 5511999990001 is not on WhatsApp"
    assert {r["instance"] for r in rows} == {"vendas-1", "vendas-2"}


def test_export_filtered_to_json_file(
    campaign_id: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "failed.json"
    result = run_cli(capsys, "campaign", "export", campaign_id, "--status", "failed", "-o", str(out))
    assert result.code == 0
    assert "2 messages written" in result.err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [(d["phone"], d["status"]) for d in data] == [("5511999990001", "failed")] * 2
    jsonl = tmp_path / "all.jsonl"
    run_cli(capsys, "campaign", "export", campaign_id, "-o", str(jsonl))
    assert len(jsonl.read_text(encoding="utf-8").splitlines()) == 36


def test_export_rejects_unknown_format(
    campaign_id: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_cli(capsys, "campaign", "export", campaign_id, "-o", str(tmp_path / "x.xlsx"))
    assert (result.code, "the export format follows the extension" in result.err) == (4, True)
    assert not list(tmp_path.glob("*x.xlsx*"))
