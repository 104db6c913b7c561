"""The clients audio jobs use, built once per worker context, and the API keys each job needs.

Keys come from the configuration (environment) first, else from the tenant's settings rows; a missing
one fails the job at once, naming the setting, before any request is made.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from dispara import tenant_settings
from dispara.config import Settings, reveal
from dispara.db import Connection
from dispara.errors import ConfigError, PermanentServiceError
from dispara.providers.elevenlabs import ElevenLabsClient
from dispara.providers.external_worker import ExternalWorker
from dispara.providers.groq import GroqClient
from dispara.providers.storage import Storage, make_storage
from dispara.queue.handlers import HandlerContext

SERVICES_KEY = "audio"
_build_lock = threading.Lock()


@dataclass
class AudioServices:
    storage: Storage
    elevenlabs: ElevenLabsClient
    groq: GroqClient
    external: ExternalWorker | None

    def close(self) -> None:
        for client in (self.storage, self.elevenlabs, self.groq, self.external):
            if client is not None:
                client.close()


def build(settings: Settings) -> AudioServices:
    """Clients for these settings; ConfigError when storage is half configured."""
    ext = settings.external_worker
    return AudioServices(
        storage=storage_for(settings),
        elevenlabs=ElevenLabsClient(settings.elevenlabs.url, timeout_s=settings.elevenlabs.timeout_s),
        groq=GroqClient(settings.groq.url, timeout_s=settings.groq.timeout_s),
        external=ExternalWorker(ext.url, reveal(ext.token), timeout_s=ext.timeout_s) if ext.url else None,
    )


def storage_for(settings: Settings) -> Storage:
    sb = settings.supabase
    return make_storage(settings.data_dir, sb.url, reveal(sb.service_role_key))


def services(ctx: HandlerContext) -> AudioServices:
    """This context's clients, built on first use (one set per worker, shared by its threads)."""
    found = ctx.services.get(SERVICES_KEY)
    if found is None:
        with _build_lock:
            found = ctx.services.get(SERVICES_KEY)
            if found is None:
                try:
                    found = ctx.services[SERVICES_KEY] = build(ctx.settings)
                except ConfigError as exc:
                    raise PermanentServiceError(str(exc)) from None
    assert isinstance(found, AudioServices)
    return found


@dataclass(frozen=True)
class Key:
    value: str
    source: str  # where it came from, for messages: an environment name or a tenant setting


@dataclass
class JobEnv:
    """What one job runs with: the context's pieces it needs, and its tenant's settings read once."""

    ctx: HandlerContext
    _values: Mapping[str, str] | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def tenant_id(self) -> UUID:
        if self.ctx.tenant_id is None:
            raise PermanentServiceError("audio jobs need a worker context with a tenant")
        return self.ctx.tenant_id

    def conn(self) -> Connection:
        if self.ctx.connection is None:
            raise PermanentServiceError("audio jobs need a worker context with a database connection")
        return self.ctx.connection()

    def tenant_values(self) -> Mapping[str, str]:
        if self._values is None:
            self._values = tenant_settings.all_values(self.conn(), self.tenant_id)
        return self._values

    def key(self, configured: str | None, setting: str, env: str) -> Key:
        """The configured value, else the tenant setting; PermanentServiceError naming it if neither."""
        # Stripped: a key pasted with a trailing newline would make an illegal header value.
        if configured and configured.strip():
            return Key(configured.strip(), env)
        value = (self.tenant_values().get(setting) or "").strip()
        if value:
            return Key(value, f"tenant setting {setting}")
        raise PermanentServiceError(
            f"missing {setting}: set {env} or run `dispara settings set {setting} VALUE`; no request was made"
        )
