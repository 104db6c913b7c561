"""Evolution webhook bodies read into plain values: receipts, replies, connection changes.

Pure functions over the decoded JSON; every version difference Evolution 2.3.6-2.4.x shows (LID chats,
status-less edits, wrapper messages) is absorbed here so the database side sees one shape.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dispara.campaigns.phones import PhoneError, normalize_phone

# Evolution's renderStatus order; ERROR sits below every real receipt so it never overwrites one.
STATUS_RANK: Final = {"PENDING": 1, "ERROR": 2, "SERVER_ACK": 3, "DELIVERY_ACK": 4, "READ": 5, "PLAYED": 6}
DELIVERED_RANK: Final = STATUS_RANK["DELIVERY_ACK"]
READ_RANK: Final = STATUS_RANK["READ"]

_PHONE_DOMAIN: Final = "@s.whatsapp.net"
_NOT_A_CONTACT: Final = ("@g.us", "@broadcast", "@newsletter")
_WRAPPERS: Final = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
_PUNCTUATION: Final = re.compile(r"[^\w\s]|_")
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True)
class Receipt:
    """A status update of a message we sent, named by Evolution's key id."""

    key_id: str
    status: str
    rank: int


@dataclass(frozen=True)
class Reply:
    """A message a contact sent us; phone is None when only a LID names the chat."""

    key_id: str
    phone: str | None
    lid: str | None
    text: str
    quoted_key_id: str | None


@dataclass(frozen=True)
class Connection:
    """A change in the instance's link to WhatsApp: open, connecting, close, refused or logout."""

    state: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    why: str


Event = Receipt | Reply | Connection | Ignored


def parse(body: Mapping[str, Any]) -> Event:
    """What one webhook body means to dispara."""
    event = body.get("event")
    data = body.get("data")
    if event == "messages.update":
        return receipt(data)
    if event == "messages.upsert":
        return reply(data)
    if event in ("connection.update", "status.instance", "logout.instance"):
        return connection(str(event), data)
    return Ignored(f"event {event!r} not used")


def receipt(data: Any) -> Receipt | Ignored:
    if not isinstance(data, Mapping):
        return Ignored("messages.update without data")
    if data.get("fromMe") is not True:
        return Ignored("status of an incoming message")
    # 2.3.7+ reports edits as a status-less (or SERVER_ACK) update carrying the new `message`.
    if data.get("message") is not None:
        return Ignored("edit, not a receipt")
    key_id, status = data.get("keyId"), data.get("status")
    if not isinstance(key_id, str) or not key_id:
        return Ignored("messages.update without keyId")
    if not isinstance(status, str) or status not in STATUS_RANK:
        return Ignored(f"status {status!r} is not a receipt")
    return Receipt(key_id, status, STATUS_RANK[status])


def reply(data: Any) -> Reply | Ignored:
    if not isinstance(data, Mapping) or not isinstance(data.get("key"), Mapping):
        return Ignored("messages.upsert without key")
    key: Mapping[str, Any] = data["key"]
    if key.get("fromMe") is True:
        return Ignored("sent by us")
    fields = (key.get("remoteJid"), key.get("remoteJidAlt"), key.get("senderPn"))
    jids = [j for j in fields if isinstance(j, str) and j]
    if not jids or jids[0].endswith(_NOT_A_CONTACT):
        return Ignored("not a one-to-one chat")
    key_id = key.get("id")
    if not isinstance(key_id, str) or not key_id:
        return Ignored("messages.upsert without key.id")
    text = message_text(data.get("message"))
    return Reply(
        key_id=key_id,
        phone=phone_of(jids),
        lid=next((j for j in jids if j.endswith("@lid")), None),
        text=text or "",
        quoted_key_id=_quoted(data),
    )


def connection(event: str, data: Any) -> Connection | Ignored:
    if event == "logout.instance":
        return Connection("logout", "logged out of WhatsApp (logout.instance)")
    if not isinstance(data, Mapping):
        return Ignored(f"{event} without data")
    if event == "status.instance":
        code = data.get("disconnectionReasonCode")
        status = data.get("status")
        if status != "closed":
            return Ignored(f"status.instance {status!r}")
        return Connection("close", f"disconnected (status.instance, code {code})")
    state = data.get("state")
    if state not in ("open", "connecting", "close", "refused"):
        return Ignored(f"connection state {state!r}")
    return Connection(str(state), f"connection {state} (code {data.get('statusReason')})")


def phone_of(jids: Iterable[str]) -> str | None:
    """The first phone-number JID as a normalised number: device suffix and domain stripped, BR 9th digit."""
    for jid in jids:
        if not jid.endswith(_PHONE_DOMAIN):
            continue
        digits = jid[: -len(_PHONE_DOMAIN)].split(":", 1)[0]
        try:
            return normalize_phone(_with_ninth_digit(digits))
        except PhoneError:
            continue
    return None


def _with_ninth_digit(digits: str) -> str:
    # WhatsApp still names many Brazilian mobiles by their old 8-digit number; contacts carry the 9.
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return f"{digits[:4]}9{digits[4:]}"
    return digits


def message_text(message: Any, depth: int = 0) -> str | None:
    """The text of a message: conversation, extended text or caption, through ephemeral/view-once wrappers."""
    if not isinstance(message, Mapping) or depth > 4:
        return None
    conversation = message.get("conversation")
    if isinstance(conversation, str):
        return conversation
    for kind in ("extendedTextMessage", "imageMessage", "videoMessage", "documentMessage"):
        inner = message.get(kind)
        if isinstance(inner, Mapping):
            value = inner.get("text") if kind == "extendedTextMessage" else inner.get("caption")
            if isinstance(value, str):
                return value
    for wrapper in _WRAPPERS:
        inner = message.get(wrapper)
        if isinstance(inner, Mapping):
            found = message_text(inner.get("message"), depth + 1)
            if found is not None:
                return found
    return None


def _quoted(data: Mapping[str, Any]) -> str | None:
    candidates: list[Any] = [data.get("contextInfo")]
    message = data.get("message")
    if isinstance(message, Mapping):
        extended = message.get("extendedTextMessage")
        if isinstance(extended, Mapping):
            candidates.append(extended.get("contextInfo"))
        candidates.append(message.get("messageContextInfo"))
    for info in candidates:
        if isinstance(info, Mapping) and isinstance(info.get("stanzaId"), str) and info["stanzaId"]:
            return str(info["stanzaId"])
    return None


def fold(text: str) -> str:
    """Trimmed, case-folded, accents and punctuation stripped, spaces collapsed: `' Sair! '` -> `'sair'`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", plain)).strip()


def optout_keyword(text: str, keywords: Iterable[str]) -> str | None:
    """The keyword the whole message is (after `fold`), or None: `'sair.'` matches, `'não quero sair'` not."""
    folded = fold(text)
    for word in keywords:
        if folded and folded == fold(word):
            return word
    return None
