"""The inbox of Evolution webhook events: record a raw body in one INSERT, process what is recorded later.

Processing is idempotent and order-free: receipts only move a message's status up and its times once,
replies are deduplicated by (instance, key id), so a retried or reordered event changes nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import psycopg

from dispara import optouts
from dispara.config import EvolutionConfig
from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import all_as, one_dict
from dispara.receipts import events
from dispara.receipts.events import Connection as ConnectionChange
from dispara.receipts.events import Receipt, Reply

log = logging.getLogger("dispara.receipts")

BATCH = 500
KEEP_PROCESSED_S = 7 * 86400.0
_STATUS_NAMES = sorted(events.STATUS_RANK, key=events.STATUS_RANK.__getitem__)


class BadEvent(ValueError):
    """The body is not an Evolution webhook event; the message names what is wrong."""


@dataclass(frozen=True)
class Recorded:
    event: str
    instance: str


def parse_body(raw: bytes) -> tuple[dict[str, Any], Recorded]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadEvent("body: not JSON") from None
    if not isinstance(body, dict):
        raise BadEvent("body: not a JSON object")
    event, instance = body.get("event"), body.get("instance")
    if not isinstance(event, str) or not event:
        raise BadEvent("event: missing or not a string")
    if not isinstance(instance, str) or not instance:
        raise BadEvent("instance: missing or not a string")
    return body, Recorded(event, instance)


def record(conn: Connection, tenant_id: UUID, raw: bytes) -> Recorded:
    """Store one webhook body as received (a retried body is stored once); raises `BadEvent` on junk."""
    _, recorded = parse_body(raw)
    record_many(conn, tenant_id, [(raw, recorded)])
    return recorded


def record_many(conn: Connection, tenant_id: UUID, items: Sequence[tuple[bytes, Recorded]]) -> None:
    """Store parsed bodies in one statement."""
    conn.execute(
        q("inbox_record"),
        {
            "tenant_id": tenant_id,
            "digests": [hashlib.sha256(raw).digest() for raw, _ in items],
            "events": [r.event for _, r in items],
            "instances": [r.instance for _, r in items],
            # PostgreSQL jsonb cannot hold \u0000; the body is kept, minus that escape.
            "bodies": [raw.decode("utf-8", "replace").replace("\\u0000", "") for raw, _ in items],
        },
    )


@dataclass
class Processed:
    claimed: int = 0
    receipts: int = 0
    waiting: int = 0
    replies: int = 0
    optouts: list[tuple[str, str]] = field(default_factory=list)
    """(instance, phone) of each number a reply opted out."""
    connections: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class _Row:
    id: int
    event: str
    instance: str
    body: dict[str, Any]
    received_at: datetime


def process(conn: Connection, tenant_id: UUID, config: EvolutionConfig, *, limit: int = BATCH) -> Processed:
    """Process one batch of recorded events in one transaction (receipts that now match their send first)."""
    result = Processed()
    with conn.transaction():
        rows = _claim(conn, q("inbox_claim_matched"), tenant_id, limit)
        rows += _claim(conn, q("inbox_claim"), tenant_id, limit - len(rows))
        result.claimed = len(rows)
        if rows:
            _apply(conn, tenant_id, config, rows, result)
        conn.execute(q("inbox_expire"), {"tenant_id": tenant_id, "wait_s": config.receipt_wait_s})
    return result


def drain(conn: Connection, tenant_id: UUID, config: EvolutionConfig) -> Processed:
    """Process until nothing processable is left; `waiting` is then the receipts still waiting for a send."""
    total = Processed()
    while True:
        batch = process(conn, tenant_id, config)
        total.receipts += batch.receipts
        total.replies += batch.replies
        total.optouts += batch.optouts
        total.connections += batch.connections
        total.ignored += batch.ignored
        total.claimed += batch.claimed
        if batch.claimed == 0:
            total.waiting = pending(conn, tenant_id)[1]
            return total


def pending(conn: Connection, tenant_id: UUID) -> tuple[int, int]:
    """Events not processed yet, and receipts waiting for their send."""
    row = one_dict(conn, q("inbox_pending"), {"tenant_id": tenant_id})
    assert row is not None
    return int(row["events"]), int(row["waiting"])


def prune(conn: Connection) -> int:
    return conn.execute(q("inbox_prune"), {"keep_s": KEEP_PROCESSED_S}).rowcount


def _claim(conn: Connection, query: LiteralString, tenant_id: UUID, limit: int) -> list[_Row]:
    if limit <= 0:
        return []
    return all_as(conn, _Row, query, {"tenant_id": tenant_id, "limit": limit})


def _apply(
    conn: Connection, tenant_id: UUID, config: EvolutionConfig, rows: Sequence[_Row], result: Processed
) -> None:
    outcomes: dict[int, str] = {}
    receipts: list[tuple[_Row, Receipt]] = []
    for row in rows:
        parsed = events.parse(row.body)
        if isinstance(parsed, Receipt):
            receipts.append((row, parsed))
        elif isinstance(parsed, Reply | ConnectionChange):
            outcomes[row.id] = outcome = _isolated(conn, tenant_id, config, row, parsed)
            if isinstance(parsed, ConnectionChange):
                result.connections += 1
            elif outcome != "duplicate reply" and not outcome.startswith("error"):
                result.replies += 1
            if outcome.startswith("opt-out "):
                result.optouts.append((row.instance, outcome.removeprefix("opt-out ")))
        else:
            outcomes[row.id] = f"ignored: {parsed.why}"
            result.ignored += 1
    waiting = _receipts(conn, tenant_id, receipts, outcomes)
    result.receipts += len(receipts) - len(waiting)
    result.waiting += len(waiting)
    if waiting:
        conn.execute(
            q("inbox_wait"), {"ids": [r.id for r, _ in waiting], "keys": [p.key_id for _, p in waiting]}
        )
    if outcomes:
        conn.execute(q("inbox_done"), {"ids": list(outcomes), "outcomes": list(outcomes.values())})


def _isolated(
    conn: Connection, tenant_id: UUID, config: EvolutionConfig, row: _Row, event: Reply | ConnectionChange
) -> str:
    """One reply or connection change in a savepoint: one that breaks is closed as an error, not retried
    forever with the rest of its batch."""
    try:
        with conn.transaction():
            if isinstance(event, Reply):
                return _reply(conn, tenant_id, config, row, event)
            return _connection(conn, tenant_id, config, row, event)
    except psycopg.Error as exc:
        log.error("Evolution event %d (%s) failed: %s", row.id, row.event, type(exc).__name__)
        return f"error: {type(exc).__name__}"


def _receipts(
    conn: Connection, tenant_id: UUID, receipts: Sequence[tuple[_Row, Receipt]], outcomes: dict[int, str]
) -> list[tuple[_Row, Receipt]]:
    """Apply the batch's receipts; those whose message is not known yet."""
    if not receipts:
        return []
    params = {
        "tenant_id": tenant_id,
        "inbox_ids": [row.id for row, _ in receipts],
        "instances": [row.instance for row, _ in receipts],
        "keys": [r.key_id for _, r in receipts],
        "ranks": [r.rank for _, r in receipts],
        "at": [row.received_at for row, _ in receipts],
        "names": _STATUS_NAMES,
        "delivered_rank": events.DELIVERED_RANK,
        "read_rank": events.READ_RANK,
    }
    matched = {row[0] for row in conn.execute(q("receipts_apply"), params)}
    waiting = []
    for row, r in receipts:
        if row.id in matched:
            outcomes[row.id] = f"receipt {r.status}"
        else:
            waiting.append((row, r))
    return waiting


def _reply(conn: Connection, tenant_id: UUID, config: EvolutionConfig, row: _Row, reply: Reply) -> str:
    """Record a contact's message once, attach it to the message it answers, opt out on a keyword."""
    key = {"tenant_id": tenant_id, "instance": row.instance, "key_id": reply.key_id}
    fresh = conn.execute(
        q("reply_record"), {**key, "phone": reply.phone, "text": reply.text, "at": row.received_at}
    )
    if fresh.fetchone() is None:
        return "duplicate reply"
    where = {"tenant_id": tenant_id, "instance": row.instance, "quoted": reply.quoted_key_id}
    target = one_dict(conn, q("reply_target"), {**where, "phone": reply.phone})
    target = target or {"id": None, "campaign_id": None, "phone_number": None}
    message_id, campaign_id = target["id"], target["campaign_id"]
    phone = reply.phone or target["phone_number"]  # a LID-only chat: the number we messaged, when quoted
    if message_id is not None:
        conn.execute(q("reply_attach"), {"message_id": message_id, "at": row.received_at, "text": reply.text})
    word = events.optout_keyword(reply.text, config.optout_keywords)
    opted_out = word is not None and phone is not None
    if word is not None and phone is not None:
        optouts.add(conn, tenant_id, [phone], reason=f"respondeu {word}")
        link = {"tenant_id": tenant_id, "phone": phone, "campaign_id": campaign_id}
        conn.execute(q("optout_link_campaign"), link)
    conn.execute(q("reply_link"), {**key, "message_id": message_id, "phone": phone, "opted_out": opted_out})
    if opted_out:
        return f"opt-out {phone}"
    if word is not None:
        log.warning("opt-out reply on %s names no phone number (LID only)", row.instance)
        return "opt-out reply without a phone number"
    return "reply" if message_id is not None else "reply to no known message"


def _connection(
    conn: Connection, tenant_id: UUID, config: EvolutionConfig, row: _Row, change: ConnectionChange
) -> str:
    pause = {"open": "resume", "connecting": "soft"}.get(change.state, "hard")
    conn.execute(
        q("instance_connection"),
        {
            "tenant_id": tenant_id,
            "name": row.instance,
            "state": "close" if change.state == "logout" else change.state,
            "reason": f"Evolution: {change.reason}",
            "at": row.received_at,
            "pause": pause,
            "soft_s": config.soft_pause_s,
        },
    )
    return f"connection {change.state}"
