"""Receipt test data: a campaign whose messages were sent with known Evolution key ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from dispara.config import EvolutionConfig
from dispara.receipts import inbox
from tests.integration.queue.conftest import Conn, Seeded, seed_campaign

CONFIG = EvolutionConfig(webhook_secret="hook-secret-0123456789abcdef0123456789")


@dataclass
class Sent:
    seeded: Seeded
    keys: list[str]

    @property
    def tenant_id(self) -> UUID:
        return self.seeded.tenant_id

    @property
    def campaign_id(self) -> UUID:
        return self.seeded.campaign_id


def mark_sent(conn: Conn, seeded: Seeded, indexes: range | list[int] | None = None) -> list[str]:
    """Record the sends the way the worker does (status sent, the key id Evolution answered)."""
    chosen = list(range(len(seeded.message_ids)) if indexes is None else indexes)
    keys = [f"3EB0{seeded.message_ids[i]:018X}" for i in chosen]
    conn.execute(
        "UPDATE message_logs m SET status = 'sent', sent_at = now(), evolution_key = u.k "
        "FROM unnest(%s::bigint[], %s::text[]) AS u(id, k) WHERE m.id = u.id",
        ([seeded.message_ids[i] for i in chosen], keys),
    )
    conn.execute(
        "UPDATE jobs SET status = 'completed' WHERE id = ANY(%s)", ([seeded.job_ids[i] for i in chosen],)
    )
    conn.execute(
        "UPDATE campaigns SET sent_count = sent_count + %s WHERE id = %s", (len(chosen), seeded.campaign_id)
    )
    conn.commit()
    return keys


def sent_campaign(conn: Conn, n: int, **kwargs: Any) -> Sent:
    seeded = seed_campaign(conn, n, **kwargs)
    return Sent(seeded, mark_sent(conn, seeded))


def post(conn: Conn, tenant_id: UUID, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        inbox.record(conn, tenant_id, json.dumps(body).encode())
    conn.commit()


def drain(conn: Conn, tenant_id: UUID, config: EvolutionConfig = CONFIG) -> inbox.Processed:
    result = inbox.drain(conn, tenant_id, config)
    conn.commit()
    return result


def receipts_of(conn: Conn, campaign_id: UUID) -> dict[str, Any]:
    """The campaign counters next to the truth in message_logs."""
    row = conn.execute(
        "SELECT c.delivered_count, c.read_count, c.replied_count, "
        "(SELECT count(delivered_at) FROM message_logs WHERE campaign_id = c.id), "
        "(SELECT count(read_at) FROM message_logs WHERE campaign_id = c.id), "
        "(SELECT count(replied_at) FROM message_logs WHERE campaign_id = c.id) "
        "FROM campaigns c WHERE c.id = %s",
        (campaign_id,),
    ).fetchone()
    conn.commit()
    assert row is not None
    return {
        "delivered": row[0], "read": row[1], "replied": row[2],
        "rows": {"delivered": row[3], "read": row[4], "replied": row[5]},
    }  # fmt: skip
