"""Evolution webhook bodies shaped like the 2.3.6-2.4.x source emits them, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

INSTANCE_ID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"


def envelope(event: str, instance: str, data: Any) -> dict[str, Any]:
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": "https://dispara.example.com/evolution/webhook",
        "date_time": "2025-12-10T11:42:03.512Z",
        "sender": "5511900000000@s.whatsapp.net",
        "server_url": "https://evo.example.com",
        "apikey": None,
    }


def receipt(
    instance: str,
    key_id: str,
    status: str | None,
    *,
    remote_jid: str = "5511987654321@s.whatsapp.net",
    **extra: Any,
) -> dict[str, Any]:
    """A `messages.update` of a message we sent (`status=None`: 2.3.6's status-less edit update)."""
    data: dict[str, Any] = {
        "keyId": key_id,
        "remoteJid": remote_jid,
        "fromMe": True,
        "instanceId": INSTANCE_ID,
        **extra,
    }
    if status is not None:
        data["status"] = status
    return envelope("messages.update", instance, data)


def upsert(
    instance: str,
    key_id: str,
    text: str,
    *,
    remote_jid: str,
    remote_jid_alt: str | None = None,
    sender_pn: str | None = None,
    quoted: str | None = None,
    message: dict[str, Any] | None = None,
    from_me: bool = False,
) -> dict[str, Any]:
    """A `messages.upsert` of a contact's text (2.3.6: LID in remoteJid and the phone in remoteJidAlt)."""
    key: dict[str, Any] = {"remoteJid": remote_jid, "fromMe": from_me, "id": key_id}
    if remote_jid_alt is not None:
        key["remoteJidAlt"] = remote_jid_alt
    if sender_pn is not None:
        key["senderPn"] = sender_pn
    data: dict[str, Any] = {
        "key": key,
        "pushName": "Maria Silva",
        "status": "DELIVERY_ACK",
        "message": message if message is not None else {"conversation": text},
        "messageType": "conversation",
        "messageTimestamp": 1765366923,
        "instanceId": INSTANCE_ID,
        "source": "ios",
    }
    if quoted is not None:
        data["contextInfo"] = {"stanzaId": quoted, "quotedMessage": {"conversation": "Olá!"}}
    return envelope("messages.upsert", instance, data)


def connection(instance: str, state: str, status_reason: int = 200) -> dict[str, Any]:
    return envelope(
        "connection.update", instance, {"instance": instance, "state": state, "statusReason": status_reason}
    )


def logout(instance: str) -> dict[str, Any]:
    return envelope("logout.instance", instance, None)


def status_closed(instance: str, code: int = 401) -> dict[str, Any]:
    return envelope(
        "status.instance",
        instance,
        {
            "instance": instance,
            "status": "closed",
            "disconnectionAt": "2025-12-10T14:42:03.512Z",
            "disconnectionReasonCode": code,
            "disconnectionObject": "{}",
        },
    )
