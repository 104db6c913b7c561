"""messages.update into message_logs: status only up, first times, counts exact under duplicates, reorder."""

from __future__ import annotations

import random

from tests.integration.queue.conftest import Conn, scalar, seed_campaign
from tests.integration.receipts.conftest import drain, mark_sent, post, receipts_of, sent_campaign
from tests.stubs import evolution_events as ev


def _status(conn: Conn, message_id: int) -> tuple[object, ...]:
    row = conn.execute(
        "SELECT delivery_status, delivered_at IS NOT NULL, read_at IS NOT NULL "
        "FROM message_logs WHERE id = %s",
        (message_id,),
    ).fetchone()
    conn.commit()
    assert row is not None
    return tuple(row)


def test_receipts_move_status_up_and_count_each_message_once(conn: Conn) -> None:
    sent = sent_campaign(conn, 3)
    a, b, c = sent.keys
    post(
        conn,
        sent.tenant_id,
        ev.receipt("inst-a", a, "SERVER_ACK"),
        ev.receipt("inst-a", a, "DELIVERY_ACK"),
        ev.receipt("inst-a", a, "READ"),
        ev.receipt("inst-a", b, "SERVER_ACK"),
        ev.receipt("inst-a", b, "DELIVERY_ACK"),
        ev.receipt("inst-a", c, "SERVER_ACK"),
    )
    result = drain(conn, sent.tenant_id)
    assert result.receipts == 6 and result.waiting == 0
    ids = sent.seeded.message_ids
    assert _status(conn, ids[0]) == ("READ", True, True)
    assert _status(conn, ids[1]) == ("DELIVERY_ACK", True, False)
    assert _status(conn, ids[2]) == ("SERVER_ACK", False, False)
    assert receipts_of(conn, sent.campaign_id) == {
        "delivered": 2, "read": 1, "replied": 0, "rows": {"delivered": 2, "read": 1, "replied": 0},
    }  # fmt: skip


def test_read_before_delivery_ack_and_error_after_a_receipt_change_nothing_back(conn: Conn) -> None:
    sent = sent_campaign(conn, 2)
    a, b = sent.keys
    post(conn, sent.tenant_id, ev.receipt("inst-a", a, "READ"), ev.receipt("inst-a", b, "ERROR"))
    drain(conn, sent.tenant_id)
    post(
        conn,
        sent.tenant_id,
        ev.receipt("inst-a", a, "DELIVERY_ACK"),
        ev.receipt("inst-a", a, "SERVER_ACK"),
        ev.receipt("inst-a", a, "ERROR"),
    )
    drain(conn, sent.tenant_id)
    ids = sent.seeded.message_ids
    assert _status(conn, ids[0]) == ("READ", True, True)
    assert _status(conn, ids[1]) == ("ERROR", False, False)
    post(conn, sent.tenant_id, ev.receipt("inst-a", b, "DELIVERY_ACK"))
    drain(conn, sent.tenant_id)
    assert _status(conn, ids[1]) == ("DELIVERY_ACK", True, False)
    assert receipts_of(conn, sent.campaign_id)["delivered"] == 2


def test_non_receipts_are_ignored(conn: Conn) -> None:
    sent = sent_campaign(conn, 1)
    (key,) = sent.keys
    post(
        conn,
        sent.tenant_id,
        ev.receipt("inst-a", key, None),  # 2.3.6: an edit with no status
        ev.receipt("inst-a", key, "DELETED"),
        ev.receipt("inst-a", key, "SERVER_ACK", message={"editedMessage": {}}),  # 2.3.7's edit
        ev.receipt("inst-a", key, "READ", fromMe=False),  # our own phone read an incoming message
        ev.receipt("inst-b", key, "READ"),  # same key id on another instance is another message
    )
    result = drain(conn, sent.tenant_id)
    assert result.receipts == 0 and result.ignored == 4 and result.waiting == 1
    assert _status(conn, sent.seeded.message_ids[0]) == (None, False, False)


def test_lid_and_device_suffix_jids_still_match_by_key(conn: Conn) -> None:
    sent = sent_campaign(conn, 2)
    post(
        conn,
        sent.tenant_id,
        ev.receipt("inst-a", sent.keys[0], "DELIVERY_ACK", remote_jid="123456789012345@lid"),
        ev.receipt("inst-a", sent.keys[1], "DELIVERY_ACK", remote_jid="557391639625:75@s.whatsapp.net"),
    )
    drain(conn, sent.tenant_id)
    assert receipts_of(conn, sent.campaign_id)["delivered"] == 2


def test_a_receipt_before_the_send_is_recorded_waits_for_it(conn: Conn) -> None:
    seeded = seed_campaign(conn, 1)
    key = f"3EB0{seeded.message_ids[0]:018X}"
    post(conn, seeded.tenant_id, ev.receipt("inst-a", key, "DELIVERY_ACK"), ev.receipt("inst-a", key, "READ"))
    assert drain(conn, seeded.tenant_id).waiting == 2
    assert receipts_of(conn, seeded.campaign_id)["delivered"] == 0
    mark_sent(conn, seeded)  # the send's commit, after its receipts
    result = drain(conn, seeded.tenant_id)
    assert result.receipts == 2 and result.waiting == 0
    assert _status(conn, seeded.message_ids[0]) == ("READ", True, True)
    assert scalar(conn, "SELECT count(*) FROM evolution_inbox WHERE processed_at IS NULL") == 0


def test_unmatched_receipts_expire(conn: Conn) -> None:
    seeded = seed_campaign(conn, 1)
    post(conn, seeded.tenant_id, ev.receipt("inst-a", "3EB0NOSUCHKEY", "READ"))
    drain(conn, seeded.tenant_id)
    conn.execute("UPDATE evolution_inbox SET received_at = now() - interval '2 hours'")
    conn.commit()
    drain(conn, seeded.tenant_id)
    assert scalar(conn, "SELECT outcome FROM evolution_inbox") == "unmatched receipt"


def test_retried_bodies_are_stored_once(conn: Conn) -> None:
    sent = sent_campaign(conn, 1)
    body = ev.receipt("inst-a", sent.keys[0], "READ")
    post(conn, sent.tenant_id, body, body, body)
    assert scalar(conn, "SELECT count(*) FROM evolution_inbox") == 1


def test_counts_are_exact_under_duplicates_and_reordering(conn: Conn) -> None:
    sent = sent_campaign(conn, 300, instances=("inst-a", "inst-b"))
    rng = random.Random(7)
    events, delivered, read = [], set(), set()
    for i, key in enumerate(sent.keys):
        instance = sent.seeded.instances[i % 2]
        steps = ["SERVER_ACK"] + (["DELIVERY_ACK"] if rng.random() < 0.8 else [])
        if "DELIVERY_ACK" in steps:
            delivered.add(key)
            if rng.random() < 0.5:
                steps.append("READ")
                read.add(key)
        for step in steps:
            body = ev.receipt(instance, key, step)
            events.append(body)
            if rng.random() < 0.1:  # a retry: the same body again, and a copy carrying another date_time
                events.append(body)
                events.append({**body, "date_time": "2025-12-10T11:50:00.000Z"})
    rng.shuffle(events)
    for start in range(0, len(events), 97):  # in several batches, as they would arrive
        post(conn, sent.tenant_id, *events[start : start + 97])
        drain(conn, sent.tenant_id)
    state = receipts_of(conn, sent.campaign_id)
    assert state["delivered"] == state["rows"]["delivered"] == len(delivered)
    assert state["read"] == state["rows"]["read"] == len(read)
