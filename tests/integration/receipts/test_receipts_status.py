"""status --json and export show delivered, read and replied, per campaign and per instance."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from dispara.campaigns.export import export
from tests.integration.queue.conftest import Conn
from tests.integration.receipts.conftest import drain, post, sent_campaign
from tests.stubs import evolution_events as ev


def test_status_json_and_export_carry_receipts(conn: Conn, cli_env: dict[str, str]) -> None:
    phones = ["5511987650001", "5511987650002", "5511987650003", "5511987650004"]
    sent = sent_campaign(conn, 4, instances=("inst-a", "inst-b"), phones=phones)
    a0, b0, a1, _ = sent.keys  # round-robin: a, b, a, b
    post(
        conn,
        sent.tenant_id,
        ev.receipt("inst-a", a0, "READ"),
        ev.receipt("inst-b", b0, "DELIVERY_ACK"),
        ev.receipt("inst-a", a1, "SERVER_ACK"),
        ev.upsert("inst-a", "R1", "Obrigada!", remote_jid=f"{phones[0]}@s.whatsapp.net"),
    )
    drain(conn, sent.tenant_id)
    proc = subprocess.run(
        [sys.executable, "-m", "dispara", "status", str(sent.campaign_id), "--json"],
        env=cli_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert (doc["delivered"], doc["read"], doc["replied"]) == (2, 1, 1)
    assert doc["delivered_rate"] == 0.5 and doc["reply_rate"] == 0.25
    by_name = {i["name"]: i for i in doc["instances"]}
    assert (by_name["inst-a"]["delivered"], by_name["inst-a"]["read"], by_name["inst-a"]["replied"]) == (
        1,
        1,
        1,
    )
    assert (by_name["inst-b"]["delivered"], by_name["inst-b"]["read"]) == (1, 0)
    out = io.StringIO()
    export(conn, sent.campaign_id, out, fmt="csv", status=None)
    rows = {r["phone"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows[phones[0]]["delivery_status"] == "READ" and rows[phones[0]]["reply_text"] == "Obrigada!"
    assert rows[phones[2]]["delivery_status"] == "SERVER_ACK" and rows[phones[2]]["delivered_at"] == ""
    human = subprocess.run(
        [sys.executable, "-m", "dispara", "status", str(sent.campaign_id)],
        env=cli_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "delivered 2 (50.0%)  read 1 (25.0%)  replied 1 (25.0%)" in human
