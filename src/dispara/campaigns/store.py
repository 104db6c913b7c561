"""Writing a prepared campaign: the campaign row, its message logs (COPY) and one job per message.

Callers run these inside one transaction, so a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from psycopg.types.json import Jsonb

from dispara import summary
from dispara.campaigns.ahead import read_ahead
from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import one_as


class MessageRow(Protocol):
    """What store needs of a prepared message."""

    @property
    def seq(self) -> int: ...
    @property
    def phone(self) -> str: ...
    @property
    def content(self) -> str | None: ...
    @property
    def message_type(self) -> str: ...
    @property
    def media_url(self) -> str | None: ...
    @property
    def file_name(self) -> str | None: ...
    @property
    def instance(self) -> str: ...
    @property
    def contact(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as the send report shows it."""

    id: UUID
    name: str
    status: str
    total_messages: int
    sent_count: int
    failed_count: int
    created_at: datetime


@dataclass(frozen=True)
class NewCampaign:
    tenant_id: UUID
    name: str
    target_audience: str | None
    creative: str | None
    status: str
    instances: list[str]
    delay_min: float
    delay_max: float
    scheduled_for: datetime | None
    transport: str
    retries: int
    idempotency_key: str
    document: dict[str, Any]
    daily_cap: int | None
    user_id: str | None = None


def find_by_key(conn: Connection, tenant_id: UUID, key: str) -> CampaignRecord | None:
    return one_as(conn, CampaignRecord, q("campaign_find_by_key"), {"tenant_id": tenant_id, "key": key})


def insert_campaign(conn: Connection, new: NewCampaign) -> UUID | None:
    """The new campaign's id; None when the tenant already has one with this idempotency key."""
    params = {
        "tenant_id": new.tenant_id,
        "user_id": new.user_id,
        "name": new.name,
        "target_audience": new.target_audience,
        "creative": new.creative,
        "status": new.status,
        "instances": new.instances,
        "delay_min": new.delay_min,
        "delay_max": new.delay_max,
        "is_scheduled": new.scheduled_for is not None,
        "scheduled_for": new.scheduled_for,
        "transport": new.transport,
        "retries": new.retries,
        "idempotency_key": new.idempotency_key,
        "document": Jsonb(new.document),
        "daily_cap": new.daily_cap,
    }
    row = conn.execute(q("campaign_insert"), params).fetchone()
    return row[0] if row else None


def set_contact_details(conn: Connection, campaign_id: UUID, *, test: bool, fields: list[str]) -> None:
    """Whether the campaign is a test send, and its contacts' columns in the file's order."""
    conn.execute(
        q("campaign_set_contact_details"), {"campaign_id": campaign_id, "test": test, "fields": fields}
    )


# Messages go in in chunks: after each chunk's COPY its jobs are queued, and the next chunk is prepared in a
# thread meanwhile. One COPY and then one INSERT of every job would leave the client idle during the INSERT
# and the server idle while the client prepares faster than it can send. A chunk of rows costs ~10 MB, and
# at most four exist at once (two ready, one being prepared, one being copied).
CHUNK = 20_000


@dataclass(frozen=True)
class Jobs:
    """The jobs a queued campaign's messages get."""

    run_at: datetime | None
    max_attempts: int


def copy_messages(
    conn: Connection,
    tenant_id: UUID,
    campaign_id: UUID,
    messages: Iterable[MessageRow],
    *,
    jobs: Jobs | None = None,
) -> int:
    """Stream the messages into message_logs, `queued` with one job each when `jobs` is given (else
    `pending`); returns how many were written."""
    per_instance: dict[str, int] = {}  # filled as the rows are prepared, for the campaign's summary
    rows = _rows(tenant_id, campaign_id, messages, queued=jobs is not None, tally=per_instance)
    count = ranged_jobs = 0
    ranged = jobs is not None and _ids_in_copy_order(conn)
    after = _last_message_id(conn) if ranged else 0
    with read_ahead(rows, CHUNK) as chunks:
        for chunk in chunks:
            with conn.cursor() as cur, cur.copy(q("message_logs_copy")) as copy:
                for row in chunk:
                    copy.write_row(row)
            count += len(chunk)
            if ranged and jobs is not None:
                # The chunk's ids are above the highest id before it and at most the highest id after it.
                upto = _last_message_id(conn)
                params = {"campaign_id": campaign_id, "after": after, "upto": upto}
                ranged_jobs += conn.execute(q("jobs_insert_for_messages"), params | asdict(jobs)).rowcount
                after = upto
    # An id range misses rows whose ids do not follow the copy (an app's table with ids of its own):
    # they get their jobs here, so no message is ever queued without one.
    if jobs is not None and ranged_jobs != count:
        conn.execute(q("jobs_insert_for_campaign"), {"campaign_id": campaign_id} | asdict(jobs))
    summary.add_ingested(
        conn, tenant_id, campaign_id, per_instance, "queued" if jobs is not None else "pending"
    )
    return count


def _ids_in_copy_order(conn: Connection) -> bool:
    row = conn.execute(q("message_logs_ids_ordered")).fetchone()
    return bool(row and row[0])


def _last_message_id(conn: Connection) -> int:
    row = conn.execute(q("message_logs_last_id")).fetchone()
    return int(row[0]) if row else 0


def _rows(
    tenant_id: UUID, campaign_id: UUID, messages: Iterable[MessageRow], *, queued: bool, tally: dict[str, int]
) -> Iterator[tuple[object, ...]]:
    status, queued_at = ("queued", "now") if queued else ("pending", None)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    # As text: psycopg writes a str as it is, and dumps a UUID anew on every row (half the cost of a row).
    tenant, campaign = str(tenant_id), str(campaign_id)
    for m in messages:
        tally[m.instance] = tally.get(m.instance, 0) + 1
        yield (
            tenant,
            campaign,
            m.seq,
            m.phone,
            m.content,
            m.message_type,
            m.media_url,
            m.file_name,
            m.instance,
            status,
            queued_at,
            dumps(m.contact),
        )


def finish_campaign(
    conn: Connection, *, tenant_id: UUID, campaign_id: UUID, total: int, instances: list[str]
) -> None:
    """Set the total and make sure every instance has pacing state."""
    conn.execute(q("campaign_set_total"), {"campaign_id": campaign_id, "total": total})
    conn.execute(q("instances_ensure"), {"tenant_id": tenant_id, "names": instances})


def optouts(conn: Connection, tenant_id: UUID) -> set[str]:
    return {row[0] for row in conn.execute(q("optouts_all"), {"tenant_id": tenant_id})}
