"""`status` shows a QStash campaign like any other, held messages as pending."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli
from tests.integration.qstash.conftest import seed_qstash_campaign
from tests.integration.queue.conftest import Conn


def test_status_of_a_qstash_campaign(env_db: str, conn: Conn, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed_qstash_campaign(conn, 3)
    conn.execute(
        "UPDATE message_logs SET status = 'sent', sent_at = now() WHERE id = %s", (seeded.message_ids[0],)
    )
    conn.execute("UPDATE campaigns SET sent_count = 1 WHERE id = %s", (seeded.campaign_id,))
    conn.execute("UPDATE message_logs SET status = 'pending' WHERE id = %s", (seeded.message_ids[1],))
    conn.commit()
    result = run_cli(capsys, "status", str(seeded.campaign_id), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["transport"] == "qstash"
    assert (doc["sent"], doc["pending"], doc["queued"]) == (1, 1, 1) and doc["counters_agree"]
    assert run_cli(capsys, "status", str(seeded.campaign_id)).code == 0
