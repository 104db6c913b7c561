"""messages.upsert: replies recorded against the message they answer, opt-out keywords, deduplication."""

from __future__ import annotations

from pathlib import Path

from dispara.queue.worker import run_worker
from tests.integration.queue.conftest import API_KEY, Conn, make_settings, scalar, seed_campaign
from tests.integration.receipts.conftest import drain, post, receipts_of, sent_campaign
from tests.stubs import evolution_events as ev
from tests.stubs.evolution_stub import EvolutionStub

PHONE = "5511987654321"


def _optout(conn: Conn, phone: str) -> tuple[object, ...] | None:
    row = conn.execute("SELECT reason, campaign_id FROM optouts WHERE phone = %s", (phone,)).fetchone()
    conn.commit()
    return None if row is None else tuple(row)


def test_a_sair_reply_quoting_our_message_opts_out_and_counts_a_reply(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    body = ev.upsert(
        "inst-a", "3A5F1C2B9D8E7F601234", " Sair! ", remote_jid=f"{PHONE}@s.whatsapp.net", quoted=sent.keys[0]
    )
    post(conn, sent.tenant_id, body)
    result = drain(conn, sent.tenant_id)
    assert result.optouts == [("inst-a", PHONE)]
    assert _optout(conn, PHONE) == ("respondeu SAIR", sent.campaign_id)
    row = conn.execute("SELECT reply_text, replied_at IS NOT NULL FROM message_logs").fetchone()
    assert row == (" Sair! ", True)
    assert receipts_of(conn, sent.campaign_id)["replied"] == 1


def test_the_phone_comes_from_whichever_field_is_a_phone_jid(conn: Conn) -> None:
    phones = ["5511987650001", "5511987650002", "5511987650003", "5511987650004"]
    sent = sent_campaign(conn, 4, phones=phones)
    post(
        conn,
        sent.tenant_id,
        # 2.3.6: the LID in remoteJid, the phone in remoteJidAlt
        ev.upsert(
            "inst-a",
            "K1",
            "PARAR",
            remote_jid="111111111111111@lid",
            remote_jid_alt=f"{phones[0]}@s.whatsapp.net",
        ),
        # 2.4.0-rc2: the phone in remoteJid, the LID in remoteJidAlt
        ev.upsert(
            "inst-a", "K2", "stop", remote_jid=f"{phones[1]}@s.whatsapp.net", remote_jid_alt="2222@lid"
        ),
        # older: senderPn, and the number without the ninth digit and with a device suffix
        ev.upsert(
            "inst-a", "K3", "Descadastrar", remote_jid="3333@lid", sender_pn="551187650003:12@s.whatsapp.net"
        ),
        # LID only, but quoting our message: the number we messaged
        ev.upsert("inst-a", "K4", "CANCELAR", remote_jid="4444@lid", quoted=sent.keys[3]),
    )
    result = drain(conn, sent.tenant_id)
    assert sorted(p for _, p in result.optouts) == phones
    assert receipts_of(conn, sent.campaign_id)["replied"] == 4


def test_only_a_whole_keyword_opts_out(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    jid = f"{PHONE}@s.whatsapp.net"
    post(
        conn,
        sent.tenant_id,
        ev.upsert("inst-a", "K1", "não quero sair agora", remote_jid=jid),
        ev.upsert("inst-a", "K2", "obrigado", remote_jid=jid),
    )
    result = drain(conn, sent.tenant_id)
    assert result.optouts == [] and result.replies == 2
    assert _optout(conn, PHONE) is None
    assert scalar(conn, "SELECT reply_text FROM message_logs") == "obrigado"
    assert receipts_of(conn, sent.campaign_id)["replied"] == 1


def test_text_is_read_through_wrappers(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    wrapped = {"ephemeralMessage": {"message": {"extendedTextMessage": {"text": "SAÍR"}}}}
    post(
        conn,
        sent.tenant_id,
        ev.upsert("inst-a", "K1", "", remote_jid=f"{PHONE}@s.whatsapp.net", message=wrapped),
    )
    assert drain(conn, sent.tenant_id).optouts == [("inst-a", PHONE)]


def test_groups_broadcasts_newsletters_and_our_own_messages_are_not_replies(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    post(
        conn,
        sent.tenant_id,
        ev.upsert("inst-a", "K1", "SAIR", remote_jid="120363000000000000@g.us"),
        ev.upsert("inst-a", "K2", "SAIR", remote_jid="status@broadcast"),
        ev.upsert("inst-a", "K3", "SAIR", remote_jid="120363000000000001@newsletter"),
        ev.upsert("inst-a", "K4", "SAIR", remote_jid=f"{PHONE}@s.whatsapp.net", from_me=True),
    )
    result = drain(conn, sent.tenant_id)
    assert result.ignored == 4 and result.optouts == []
    assert scalar(conn, "SELECT count(*) FROM optouts") == 0


def test_a_repeated_upsert_is_one_reply(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    body = ev.upsert("inst-a", "K1", "SAIR", remote_jid=f"{PHONE}@s.whatsapp.net")
    post(conn, sent.tenant_id, body, {**body, "date_time": "2025-12-10T12:00:00.000Z"})
    result = drain(conn, sent.tenant_id)
    assert result.replies == 1 and result.optouts == [("inst-a", PHONE)]
    assert receipts_of(conn, sent.campaign_id)["replied"] == 1


def test_a_sair_reply_cancels_the_numbers_queued_messages_in_other_campaigns(
    conn: Conn, db_dsn: str, tmp_path: Path
) -> None:
    first = sent_campaign(conn, 1, phones=[PHONE])
    other = seed_campaign(conn, 2, phones=[PHONE, "5511987650009"])
    post(conn, first.tenant_id, ev.upsert("inst-a", "K1", "SAIR", remote_jid=f"{PHONE}@s.whatsapp.net"))
    drain(conn, first.tenant_id)
    with EvolutionStub(api_key=API_KEY) as stub:
        run_worker(make_settings(db_dsn, tmp_path, evolution_url=stub.url), once=True)
        assert [s.body["number"] for s in stub.sends()] == ["5511987650009"]
    rows = conn.execute(
        "SELECT phone_number, status FROM message_logs WHERE campaign_id = %s", (other.campaign_id,)
    ).fetchall()
    assert dict(rows) == {PHONE: "cancelled", "5511987650009": "sent"}


def test_an_event_the_database_refuses_is_closed_as_an_error_and_the_batch_goes_on(conn: Conn) -> None:
    sent = sent_campaign(conn, 1, phones=[PHONE])
    conn.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.key_id = 'BOOM' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
    )
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON evolution_replies FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    conn.commit()
    jid = f"{PHONE}@s.whatsapp.net"
    post(
        conn,
        sent.tenant_id,
        ev.upsert("inst-a", "BOOM", "SAIR", remote_jid=jid),
        ev.receipt("inst-a", sent.keys[0], "READ"),
        ev.upsert("inst-a", "K2", "obrigado", remote_jid=jid),
    )
    result = drain(conn, sent.tenant_id)
    assert (result.replies, result.receipts, result.optouts) == (1, 1, [])
    outcomes = dict(conn.execute("SELECT id, outcome FROM evolution_inbox ORDER BY id").fetchall())
    conn.commit()
    assert list(outcomes.values()) == ["error: RaiseException", "receipt READ", "reply"]
