"""Publishing a `transport: qstash` campaign to the local QStash: batches, headers, pacing, failures."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qstash import QStash

from dispara.campaigns.send import send_campaign
from dispara.config import Settings
from dispara.transports import qstash
from tests.helpers import run_cli
from tests.integration.qstash.conftest import FAILED_URL, MESSAGES_URL, qstash_settings
from tests.integration.queue.conftest import Conn, campaign_state, scalar, tenant
from tests.stubs.qstash_stub import DEV_TOKEN, QStashStub

CAMPAIGN = """\
name: Teste QStash
contacts: contatos.csv
instances: [inst-a, inst-b]
delay: {{min: {dmin}, max: {dmax}}}
transport: qstash
retries: 4
templates:
  - type: text
    text: "Olá {{nome}}!"
"""


def write_campaign(folder: Path, n: int, dmin: float = 5, dmax: float = 9) -> Path:
    rows = "".join(f"Contato {i},55119{i:08d}\n" for i in range(1, n + 1))
    (folder / "contatos.csv").write_text("nome,telefone\n" + rows, encoding="utf-8")
    path = folder / "campanha.yaml"
    path.write_text(CAMPAIGN.format(dmin=dmin, dmax=dmax), encoding="utf-8")
    return path


@pytest.fixture
def qs() -> Iterator[QStashStub]:
    with QStashStub(hold=True) as stub:  # accepts, delivers nothing: publishing is what these tests look at
        yield stub


@pytest.fixture
def pub_settings(db_dsn: str, tmp_path: Path, qs: QStashStub) -> Settings:
    return qstash_settings(db_dsn, tmp_path / "data", None, qstash_url=qs.url)


def send(conn: Conn, settings: Settings, path: Path) -> qstash.PublishReport:
    outcome = send_campaign(conn, tenant(conn), path, publish=qstash.CampaignPublisher(settings))
    assert isinstance(outcome.published, qstash.PublishReport)
    return outcome.published


def headers_of(item: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in item["headers"].items()}


def test_a_campaign_is_published_in_batches_of_100_with_the_contract_headers(
    conn: Conn, pub_settings: Settings, qs: QStashStub, tmp_path: Path
) -> None:
    report = send(conn, pub_settings, write_campaign(tmp_path, 250))
    assert (report.accepted, report.pending, report.batches) == (250, 0, 3)
    batches = [c for c in qs.calls if c["path"] == "/v2/batch"]
    assert [len(json.loads(c["body"])) for c in batches] == [100, 100, 50]
    assert all(c["headers"]["authorization"] == f"Bearer {DEV_TOKEN}" for c in batches)
    items = qs.batch_items()
    tenant_id = str(tenant(conn))
    bodies = [json.loads(item["body"]) for item in items]
    assert {b["tenant_id"] for b in bodies} == {tenant_id}
    assert set(bodies[0]) == {
        "message_id", "phone_number", "message_content", "instance_name", "campaign_id", "tenant_id"
    }  # fmt: skip
    heads = [headers_of(item) for item in items]
    assert {item["destination"] for item in items} == {MESSAGES_URL}
    assert {h["upstash-retries"] for h in heads} == {"4"}
    assert {h["upstash-failure-callback"] for h in heads} == {FAILED_URL}
    assert {h["upstash-flow-control-value"] for h in heads} == {"parallelism=1"}
    assert {h["content-type"] for h in heads} == {"application/json"}
    keys = {b["instance_name"]: h["upstash-flow-control-key"] for b, h in zip(bodies, heads, strict=True)}
    assert keys == {name: qstash.flow_key(tenant(conn), name) for name in ("inst-a", "inst-b")}
    assert len({h["upstash-deduplication-id"] for h in heads}) == 250
    # Not-before times accumulate the campaign's gaps, per instance (whole seconds on the wire).
    per_instance: dict[str, list[int]] = defaultdict(list)
    for b, h in zip(bodies, heads, strict=True):
        per_instance[b["instance_name"]].append(int(h["upstash-not-before"]))
    for times in per_instance.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(4 <= g <= 10 for g in gaps), gaps
    state = campaign_state(conn, report.campaigns[0])
    assert state["status"] == "processing" and state["messages"] == {"queued": 250}
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0
    assert (
        scalar(conn, "SELECT count(*) FROM message_logs WHERE queued_at IS NULL OR qstash_message_id IS NULL")
        == 0
    )
    assert report.finish_at is not None


def test_what_we_publish_is_what_the_sdk_publishes(
    conn: Conn, pub_settings: Settings, qs: QStashStub, tmp_path: Path
) -> None:
    send(conn, pub_settings, write_campaign(tmp_path, 1))
    ours = qs.batch_items()[0]
    request = {
        "url": ours["destination"],
        "body": json.loads(ours["body"]),
        "retries": 4,
        "deduplication_id": "sdk-copy",
        "not_before": int(headers_of(ours)["upstash-not-before"]),
        "flow_control": {"key": headers_of(ours)["upstash-flow-control-key"], "parallelism": 1},
        "failure_callback": FAILED_URL,
    }
    sdk = QStash(DEV_TOKEN, base_url=qs.url)
    sdk.message.batch_json([request])  # type: ignore[list-item]
    sdk.message.publish_json(**request)
    theirs = qs.batch_items()[-1]
    published = next(c for c in qs.calls if c["path"].startswith("/v2/publish/"))
    strip = {"upstash-deduplication-id"}
    assert {k: v for k, v in headers_of(theirs).items() if k not in strip} == {
        k: v for k, v in headers_of(ours).items() if k not in strip
    }
    assert theirs["body"] == ours["body"] and theirs["destination"] == ours["destination"]
    single = {k: v for k, v in published["headers"].items() if k.startswith("upstash-") and k not in strip}
    assert single == {
        k: v for k, v in headers_of(ours).items() if k.startswith("upstash-") and k not in strip
    }
    assert published["body"].decode() == ours["body"]


def test_a_partial_batch_failure_leaves_pending_and_redrive_republishes_without_duplicates(
    conn: Conn, pub_settings: Settings, qs: QStashStub, tmp_path: Path
) -> None:
    qs.configure(reject_every=3)
    report = send(conn, pub_settings, write_campaign(tmp_path, 20))
    campaign_id = report.campaigns[0]
    assert (report.accepted, report.pending) == (14, 6)
    state = campaign_state(conn, campaign_id)
    assert state["status"] == "pending" and state["messages"] == {"queued": 14, "pending": 6}
    assert (
        scalar(conn, "SELECT count(*) FROM message_logs WHERE status = 'pending' AND queued_at IS NOT NULL")
        == 0
    )
    qs.configure(reject_every=0)
    again = qstash.republish(conn, pub_settings, tenant(conn))
    assert (again.accepted, again.pending, again.deduplicated) == (6, 0, 0)
    state = campaign_state(conn, campaign_id)
    assert state["status"] == "processing" and state["messages"] == {"queued": 20}
    # Publishing everything again (a lost answer, a retried call) is deduplicated by QStash.
    conn.execute("UPDATE message_logs SET status = 'pending' WHERE campaign_id = %s", (campaign_id,))
    conn.commit()
    replay = qstash.publish_pending(conn, pub_settings, campaign_id)
    assert (replay.accepted, replay.deduplicated) == (20, 20)
    assert len(qs.messages) == 20
    assert Counter(json.loads(i["body"])["message_id"] for i in qs.batch_items()).most_common(1)[0][1] == 3


def test_a_batch_answered_500_stays_pending_with_the_reason(
    conn: Conn, pub_settings: Settings, qs: QStashStub, tmp_path: Path
) -> None:
    qs.configure(fail_batches=1)
    report = send(conn, pub_settings, write_campaign(tmp_path, 5))
    assert report.accepted == 0 and report.pending == 5
    assert report.error == "QStash refused the batch (HTTP 500)"
    assert campaign_state(conn, report.campaigns[0])["messages"] == {"pending": 5}


def test_429_waits_for_the_reset_and_goes_on(
    conn: Conn, pub_settings: Settings, qs: QStashStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    qs.configure(rate_limit_batches=2)
    path = write_campaign(tmp_path, 5)
    original = qstash.publish_pending
    monkeypatch.setattr(
        qstash, "publish_pending", lambda c, s, cid, **kw: original(c, s, cid, sleep=waits.append, **kw)
    )
    report = send(conn, pub_settings, path)
    assert report.accepted == 5 and len(waits) == 2
    assert all(0.1 <= w <= qstash.MAX_BURST_WAIT_S for w in waits)


def test_pacing_keeps_the_window_and_the_daily_cap() -> None:
    from datetime import UTC, datetime, time
    from zoneinfo import ZoneInfo

    from dispara.campaigns.schedule import SendWindow

    zone = ZoneInfo("America/Sao_Paulo")
    window = SendWindow(time(9), time(18), frozenset(range(7)), zone)
    pace = qstash.Pace(60, 60, window, daily_cap=3)
    start = datetime(2026, 12, 1, 20, 0, tzinfo=zone).astimezone(UTC)  # after hours
    times = [t.astimezone(zone) for t in pace.times(start, 5, random.Random(1))]
    assert [t.strftime("%d %H:%M") for t in times] == [
        "02 09:00",
        "02 09:01",
        "02 09:02",
        "03 09:00",
        "03 09:01",
    ]


def test_the_cli_refuses_qstash_without_public_url_before_writing(
    capsys: pytest.CaptureFixture[str],
    env_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    conn: Conn,
) -> None:
    monkeypatch.setenv("QSTASH_TOKEN", DEV_TOKEN)
    result = run_cli(capsys, "campaign", "send", str(write_campaign(tmp_path, 3)))
    assert result.code == 3
    assert "transport: qstash needs DISPARA_PUBLIC_URL (server.public_url)" in result.err
    assert scalar(conn, "SELECT count(*) FROM campaigns") == 0


def test_a_refused_token_is_a_configuration_error_naming_qstash_token(
    capsys: pytest.CaptureFixture[str],
    env_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qs: QStashStub,
) -> None:
    qs.configure(unauthorized=True)
    monkeypatch.setenv("QSTASH_TOKEN", "wrong-token")
    monkeypatch.setenv("QSTASH_URL", qs.url)
    monkeypatch.setenv("DISPARA_PUBLIC_URL", "https://dispara.example.com")
    result = run_cli(capsys, "campaign", "send", str(write_campaign(tmp_path, 3)))
    assert result.code == 3, result.err
    assert "QSTASH_TOKEN" in result.err and "wrong-token" not in result.err


def test_dispara_redrive_publishes_what_qstash_did_not_accept(
    capsys: pytest.CaptureFixture[str],
    env_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qs: QStashStub,
) -> None:
    for name, value in {
        "QSTASH_TOKEN": DEV_TOKEN,
        "QSTASH_URL": qs.url,
        "DISPARA_PUBLIC_URL": "https://dispara.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    qs.configure(reject_every=2)
    sent = run_cli(capsys, "campaign", "send", str(write_campaign(tmp_path, 10)))
    assert sent.code == 0
    assert "5 messages handed to QStash in 1 batch(es), the last one released " in sent.out  # the finish time
    assert (
        "5 messages not accepted by QStash" in sent.err
        and "`dispara redrive` publishes them again" in sent.err
    )
    qs.configure(reject_every=0)
    result = run_cli(capsys, "redrive", "--max-seconds", "5")
    assert result.code == 0, result.err
    assert "redrive: QStash 5 published, 0 still pending" in result.out
    assert len(qs.messages) == 10
    assert run_cli(capsys, "redrive", "--max-seconds", "5").out.count("QStash") == 0  # nothing left to do
