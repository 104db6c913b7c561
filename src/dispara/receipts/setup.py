"""The per-instance webhook dispara needs on the Evolution server: what it should be, and how one differs.

A per-instance webhook (not the global one) because only it carries LOGOUT_INSTANCE and STATUS_INSTANCE and
custom headers: the secret travels in `X-Dispara-Secret`, never in the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from dispara.config import Settings, reveal
from dispara.errors import ConfigError
from dispara.transports.qstash import endpoint

EVENTS: Final = (
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "CONNECTION_UPDATE",
    "LOGOUT_INSTANCE",
    "STATUS_INSTANCE",
)
HEADER: Final = "X-Dispara-Secret"
PATH: Final = "/evolution/webhook"
SECRET_PATH: Final = f"{PATH}/s/"


@dataclass(frozen=True)
class Change:
    instance: str
    problem: str | None
    """Why the current webhook is not the one wanted, or None when it already is."""


def wanted(settings: Settings) -> dict[str, Any]:
    """The `webhook` object for `POST /webhook/set`; ConfigError when the public URL or secret is missing."""
    base = settings.server.public_url
    secret = reveal(settings.evolution.webhook_secret)
    if not base:
        raise ConfigError("Evolution webhooks need DISPARA_PUBLIC_URL (server.public_url), serve's address")
    if not secret:
        raise ConfigError("Evolution webhooks need EVOLUTION_WEBHOOK_SECRET (evolution.webhook_secret)")
    return {
        "enabled": True,
        "url": endpoint(base, PATH),
        "headers": {HEADER: secret},
        "byEvents": False,
        "base64": False,
        "events": list(EVENTS),
    }


def problem(found: dict[str, Any] | None, want: dict[str, Any]) -> str | None:
    """What is wrong with the instance's stored webhook (never quoting the secret), or None."""
    if not found:
        return "no webhook"
    if not found.get("enabled"):
        return "webhook disabled"
    if found.get("url") != want["url"]:
        return f"webhook points elsewhere ({_shown(found.get('url'))})"
    headers = found.get("headers") if isinstance(found.get("headers"), dict) else {}
    given = {str(k).lower(): v for k, v in (headers or {}).items()}
    if given.get(HEADER.lower()) != want["headers"][HEADER]:
        return f"webhook without the right {HEADER} header"
    events = found.get("events")
    if isinstance(events, list) and events:  # an empty list means every event
        missing = [e for e in want["events"] if e not in events]
        if missing:
            return "webhook misses events " + ", ".join(missing)
    if found.get("webhookByEvents"):
        return "webhook has byEvents on"
    return None


def shown(want: dict[str, Any]) -> dict[str, Any]:
    """The webhook object as it may be printed: the secret masked."""
    return {**want, "headers": dict.fromkeys(want["headers"], "****")}


def mask_secret_path(path: str) -> str:
    """A path with the secret segment of `/evolution/webhook/s/<secret>` masked, for logs and output."""
    if path.startswith(SECRET_PATH):
        _, slash, suffix = path[len(SECRET_PATH) :].partition("/")
        return f"{SECRET_PATH}****{slash}{suffix}"
    return path


def _shown(url: Any) -> str:
    from urllib.parse import urlsplit

    from dispara.redact import public_url

    if not isinstance(url, str) or not url:
        return "none"
    clean = public_url(url)
    path = urlsplit(clean).path
    return clean[: len(clean) - len(path)] + mask_secret_path(path) if path else clean
