"""QStash test data and a `dispara serve` app in this process, its Evolution the local stub."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from starlette.testclient import TestClient

from dispara import summary
from dispara.config import EvolutionConfig, QStashConfig, ServerConfig, Settings
from dispara.providers.evolution import EvolutionSender
from dispara.server.app import create_app
from tests.integration.queue.conftest import API_KEY, Conn, tenant
from tests.stubs.evolution_stub import EvolutionStub
from tests.stubs.qstash_stub import DEV_CURRENT_KEY, DEV_NEXT_KEY, DEV_TOKEN, sign

PUBLIC_URL = "https://dispara.example.com"
MESSAGES_URL = f"{PUBLIC_URL}/qstash/messages"
FAILED_URL = f"{PUBLIC_URL}/qstash/failed"
SERVE_KEY = "serve-key-0123456789"
_phones = itertools.count(1)


@dataclass
class QSeeded:
    tenant_id: UUID
    campaign_id: UUID
    message_ids: list[int]
    phones: list[str]
    instances: list[str]

    def body(self, i: int, **changes: Any) -> bytes:
        data = {
            "message_id": self.message_ids[i],
            "phone_number": self.phones[i],
            "message_content": f"Olá {self.phones[i]}",
            "instance_name": self.instances[i % len(self.instances)],
            "campaign_id": str(self.campaign_id),
            "tenant_id": str(self.tenant_id),
            **changes,
        }
        return json.dumps(data).encode()


def seed_qstash_campaign(
    conn: Conn,
    n: int,
    *,
    instances: Sequence[str] = ("inst-a",),
    retries: int = 2,
    status: str = "processing",
    message_status: str = "queued",
    tenant_name: str = "default",
    phones: Sequence[str] | None = None,
) -> QSeeded:
    tid = tenant(conn, tenant_name)
    phone_list = list(phones) if phones is not None else [f"5521{next(_phones):09d}" for _ in range(n)]
    row = conn.execute(
        "INSERT INTO campaigns (tenant_id, name, status, total_messages, instances, retries, transport, "
        "idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, 'qstash', %s) RETURNING id",
        (tid, f"q-{uuid.uuid4().hex[:6]}", status, n, list(instances), retries, uuid.uuid4().hex),
    ).fetchone()
    assert row is not None
    names = [instances[i % len(instances)] for i in range(n)]
    ids = [
        r[0]
        for r in conn.execute(
            "INSERT INTO message_logs (tenant_id, campaign_id, phone_number, message_content, instance_name, "
            "status, seq) SELECT %s, %s, p, 'Olá ' || p, i, %s, k "
            "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(p, i, k) ORDER BY k RETURNING id",
            (tid, row[0], message_status, phone_list, names),
        ).fetchall()
    ]
    summary.add_ingested(conn, tid, row[0], Counter(names), message_status)
    conn.commit()
    return QSeeded(tid, row[0], ids, phone_list, list(instances))


def qstash_settings(db_dsn: str, data_dir: Path, evolution_url: str | None, qstash_url: str = "") -> Settings:
    return Settings(
        database_url=db_dsn,
        data_dir=data_dir,
        evolution=EvolutionConfig(url=evolution_url, api_key=API_KEY, typing_delay_ms=0),
        qstash=QStashConfig(
            url=qstash_url or "http://127.0.0.1:9",
            token=DEV_TOKEN,
            current_signing_key=DEV_CURRENT_KEY,
            next_signing_key=DEV_NEXT_KEY,
            clock_tolerance_s=0,
        ),
        server=ServerConfig(public_url=PUBLIC_URL, api_key=SERVE_KEY),
    )


@pytest.fixture
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as stub:
        yield stub


@pytest.fixture
def qsettings(db_dsn: str, tmp_path: Path, evolution: EvolutionStub) -> Settings:
    return qstash_settings(db_dsn, tmp_path / "data", evolution.url)


@pytest.fixture
def client(qsettings: Settings) -> Iterator[TestClient]:
    sender = EvolutionSender(qsettings.evolution.url or "", API_KEY, typing_delay_ms=0)
    app = create_app(qsettings, sender=sender)
    with TestClient(app, base_url=PUBLIC_URL, raise_server_exceptions=False) as c:
        yield c
    sender.close()


def deliver(
    client: TestClient,
    raw: bytes,
    *,
    retried: int = 0,
    key: str = DEV_CURRENT_KEY,
    url: str = MESSAGES_URL,
    signature: str | None = None,
    **claims: Any,
) -> Any:
    """POST a delivery as QStash makes it (or a forged one, through `key`, `url`, `claims`, `signature`)."""
    headers = {
        "Content-Type": "application/json",
        "Upstash-Retried": str(retried),
        "Upstash-Message-Id": "msg_test",
        "Upstash-Signature": signature if signature is not None else sign(key, url, raw, **claims),
    }
    if signature == "":
        del headers["Upstash-Signature"]
    return client.post("/qstash/messages", content=raw, headers=headers)
