"""Per-tenant settings stored in the database (the `settings` table), as the web app keeps them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import all_dicts
from dispara.errors import InputError, NotFoundError
from dispara.redact import mask_secret, mask_url


@dataclass(frozen=True)
class Known:
    description: str
    secret: bool


# The seed's key names, kept as the web app writes them.
KNOWN: dict[str, Known] = {
    "groq-apikey": Known("Groq API key for transcription", secret=True),
    "elevenlabs-apikey": Known("ElevenLabs API key for text-to-speech", secret=True),
    "elevenlabs-voice-id": Known("ElevenLabs voice used by default", secret=False),
    "evolution-url": Known("Evolution API server of this tenant (else EVOLUTION_API_URL)", secret=False),
    "evolution-apikey": Known("Evolution API key of this tenant (else EVOLUTION_API_KEY)", secret=True),
    "JOB_WEBHOOK": Known("URL notified when each job starts and finishes", secret=False),
    "webhook-secret": Known("HMAC secret that signs webhook bodies", secret=True),
}


def check_key(key: str) -> str:
    if key not in KNOWN:
        known = ", ".join(KNOWN)
        raise InputError(f"unknown setting {key!r}; known settings: {known}")
    return key


def mask_value(key: str, value: str) -> str:
    if KNOWN.get(key, Known("", secret=True)).secret:
        return mask_secret(value)
    return mask_url(value) if "://" in value else value


def set_value(conn: Connection, tenant: UUID, key: str, value: str) -> None:
    check_key(key)
    if not value.strip():
        raise InputError(f"setting {key}: the value is empty (use `dispara settings unset {key}`)")
    conn.execute(q("setting_upsert"), {"tenant_id": tenant, "key": key, "value": value})


def get_value(conn: Connection, tenant: UUID, key: str) -> str:
    row = conn.execute(q("setting_get"), {"tenant_id": tenant, "key": check_key(key)}).fetchone()
    if row is None:
        raise NotFoundError(f"setting {key} is not set")
    return str(row[0])


def all_values(conn: Connection, tenant: UUID) -> dict[str, str]:
    rows = all_dicts(conn, q("setting_list"), {"tenant_id": tenant})
    return {str(row["key"]): str(row["value"]) for row in rows}


def unset(conn: Connection, tenant: UUID, key: str) -> bool:
    cur = conn.execute(q("setting_delete"), {"tenant_id": tenant, "key": check_key(key)})
    return cur.rowcount > 0


def secrets(values: Mapping[str, str]) -> list[str]:
    """The values of secret settings among `values` (to mask them in logs)."""
    return [v for k, v in values.items() if KNOWN.get(k, Known("", secret=True)).secret]
