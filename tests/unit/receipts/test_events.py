"""Reading Evolution webhook bodies: phones from JIDs, text through wrappers, keyword matching."""

from __future__ import annotations

import pytest

from dispara.receipts import events
from dispara.receipts.events import Connection, Ignored, Receipt, Reply
from tests.stubs import evolution_events as ev


@pytest.mark.parametrize(
    ("jids", "phone"),
    [
        (["5511987654321@s.whatsapp.net"], "5511987654321"),
        (["551187654321@s.whatsapp.net"], "5511987654321"),  # the BR ninth digit restored
        (["557391639625:75@s.whatsapp.net"], "5573991639625"),  # device suffix
        (["123456789012345@lid", "5511987654321@s.whatsapp.net"], "5511987654321"),
        (["123456789012345@lid"], None),
        (["551133334444@s.whatsapp.net"], "551133334444"),  # a landline keeps its 8 digits
    ],
)
def test_phone_of(jids: list[str], phone: str | None) -> None:
    assert events.phone_of(jids) == phone


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("SAIR", "SAIR"),
        ("  sair!! ", "SAIR"),
        ("Saír.", "SAIR"),
        ("pArAr", "PARAR"),
        ("descadastrar 🙏", "DESCADASTRAR"),
        ("quero sair", None),
        ("sair agora", None),
        ("", None),
    ],
)
def test_optout_keyword_matches_the_whole_message_only(text: str, word: str | None) -> None:
    assert events.optout_keyword(text, ["SAIR", "PARAR", "STOP", "CANCELAR", "DESCADASTRAR"]) == word


def test_message_text_unwraps() -> None:
    assert events.message_text({"conversation": "oi"}) == "oi"
    assert events.message_text({"extendedTextMessage": {"text": "oi"}}) == "oi"
    assert events.message_text({"viewOnceMessageV2": {"message": {"imageMessage": {"caption": "c"}}}}) == "c"
    assert events.message_text({"audioMessage": {}}) is None


def test_parse_each_event() -> None:
    assert events.parse(ev.receipt("i", "K", "READ")) == Receipt("K", "READ", 5)
    assert isinstance(events.parse(ev.receipt("i", "K", None)), Ignored)
    reply = events.parse(ev.upsert("i", "R", "SAIR", remote_jid="1@lid", quoted="K"))
    assert reply == Reply("R", None, "1@lid", "SAIR", "K")
    assert events.parse(ev.logout("i")) == Connection("logout", "logged out of WhatsApp (logout.instance)")
    assert events.parse(ev.connection("i", "open")) == Connection("open", "connection open (code 200)")
    assert isinstance(events.parse({"event": "qrcode.updated", "data": {}}), Ignored)
    assert isinstance(events.parse({"event": "messages.upsert", "data": []}), Ignored)
