"""Settings: defaults < YAML file < environment < flags, with the source of every value kept.

Secrets are only ever shown through `mask()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from dispara.db import tables
from dispara.errors import ConfigError
from dispara.redact import mask_secret, mask_url
from dispara.yamlfile import read_yaml

APP_NAME = "dispara"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EvolutionConfig(_Section):
    url: str | None = None
    api_key: SecretStr | None = None
    typing_delay_ms: int = Field(1200, ge=0)
    timeout_extra_s: float = Field(60.0, gt=0)
    webhook_secret: SecretStr | None = None
    optout_keywords: list[str] = Field(
        default_factory=lambda: ["SAIR", "PARAR", "STOP", "CANCELAR", "DESCADASTRAR"], min_length=1
    )
    optout_confirmation: str | None = None
    receipt_wait_s: float = Field(3600.0, gt=0)
    soft_pause_s: float = Field(60.0, ge=0)


class QStashConfig(_Section):
    url: str = "https://qstash.upstash.io"
    token: SecretStr | None = None
    current_signing_key: SecretStr | None = None
    next_signing_key: SecretStr | None = None
    batch_size: int = Field(100, ge=1, le=100)
    clock_tolerance_s: float = Field(5.0, ge=0)


class ServerConfig(_Section):
    public_url: str | None = None
    api_key: SecretStr | None = None
    signature_url: str | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    sending_lease_s: float = Field(120.0, gt=0)
    dispatch_seconds: float = Field(25.0, gt=0)
    dispatch_all_tenants: bool = False


class ElevenLabsConfig(_Section):
    url: str = "https://api.elevenlabs.io"
    api_key: SecretStr | None = None
    voice_id: str | None = None
    model_id: str = "eleven_flash_v2_5"
    output_format: str = "opus_48000_32"
    timeout_s: float = Field(120.0, gt=0)


class GroqConfig(_Section):
    url: str = "https://api.groq.com"
    api_key: SecretStr | None = None
    model: str = "whisper-large-v3-turbo"
    timeout_s: float = Field(60.0, gt=0)


class SupabaseConfig(_Section):
    url: str | None = None
    service_role_key: SecretStr | None = None
    bucket: str = "dispara-audio"
    # Where a user's tenant sits in the JWT PostgREST passes on (row-level security reads it).
    tenant_claim: str = Field("app_metadata.tenant_id", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class WebhookConfig(_Section):
    url: str | None = None
    secret: SecretStr | None = None
    required: bool = False
    campaign_events: Literal["message", "campaign"] = "message"


class ExternalWorkerConfig(_Section):
    url: str | None = None
    token: SecretStr | None = None
    timeout_s: float = Field(300.0, gt=0)


class AudioConfig(_Section):
    instance: str | None = None
    language: str = Field("pt", min_length=2)
    result_targets: list[str] = Field(default_factory=list)
    tts_path: str = Field("tts/{date}/{job_id}.ogg", min_length=1)
    upload_path: str = Field("uploads/{date}/{uuid}-{name}", min_length=1)
    signed_url_ttl_s: int = Field(3600, ge=60)
    max_attempts: int = Field(3, ge=1, le=100)
    instance_wait_s: float = Field(30.0, ge=0)

    @field_validator("result_targets", mode="after")
    @classmethod
    def _table_dot_column(cls, value: list[str]) -> list[str]:
        for target in value:
            parts = target.split(".")
            if len(parts) not in (2, 3) or not all(parts):
                raise ValueError(f"{target!r}: write each target as table.column or schema.table.column")
        return value


class WorkerConfig(_Section):
    concurrency: int = Field(4, ge=1, le=256)
    batch_size: int = Field(100, ge=1, le=10_000)
    poll_interval_s: float = Field(1.0, gt=0)
    lease_s: float = Field(15.0, gt=0)
    grace_s: float = Field(10.0, ge=0)
    retry_base_s: float = Field(15.0, gt=0)
    retry_cap_s: float = Field(600.0, gt=0)
    pause_base_s: float = Field(2.0, gt=0)
    pause_cap_s: float = Field(900.0, gt=0)
    unreachable_cap_s: float = Field(60.0, gt=0)
    pause_campaign_after: int = Field(20, ge=1)
    max_lease_expiries: int = Field(3, ge=1)
    once_horizon_s: float = Field(30.0, ge=0)
    retention_days: int = Field(30, ge=0)


class TablesConfig(_Section):
    """The names dispara's tables have in this deployment (`table` or `schema.table`); unset: its own."""

    tenants: str | None = None
    campaigns: str | None = None
    message_logs: str | None = None
    jobs: str | None = None
    instances: str | None = None
    settings: str | None = None
    optouts: str | None = None
    webhook_events: str | None = None
    evolution_inbox: str | None = None
    evolution_replies: str | None = None
    campaign_summary: str | None = None
    campaign_summary_deltas: str | None = None
    campaign_sends: str | None = None
    dispara_migrations: str | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        return None if value is None else tables.check_name(value)

    def mapping(self) -> dict[str, str]:
        """logical name -> name in this deployment, for the tables that are renamed."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Settings(_Section):
    database_url: str | None = None
    tenant: str = Field("default", min_length=1)
    data_dir: Path = Field(default_factory=lambda: _user_dir("data"))
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    qstash: QStashConfig = Field(default_factory=QStashConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    elevenlabs: ElevenLabsConfig = Field(default_factory=ElevenLabsConfig)
    groq: GroqConfig = Field(default_factory=GroqConfig)
    supabase: SupabaseConfig = Field(default_factory=SupabaseConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    external_worker: ExternalWorkerConfig = Field(default_factory=ExternalWorkerConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    tables: TablesConfig = Field(default_factory=TablesConfig)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()


# The environment names are a public contract shared with deployments: keep them exactly.
ENV_KEYS: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "DISPARA_TENANT": "tenant",
    "DISPARA_DATA_DIR": "data_dir",
    "EVOLUTION_API_URL": "evolution.url",
    "EVOLUTION_API_KEY": "evolution.api_key",
    "EVOLUTION_WEBHOOK_SECRET": "evolution.webhook_secret",
    "QSTASH_URL": "qstash.url",
    "QSTASH_TOKEN": "qstash.token",
    "QSTASH_CURRENT_SIGNING_KEY": "qstash.current_signing_key",
    "QSTASH_NEXT_SIGNING_KEY": "qstash.next_signing_key",
    "DISPARA_PUBLIC_URL": "server.public_url",
    "DISPARA_API_KEY": "server.api_key",
    "ELEVENLABS_API_URL": "elevenlabs.url",
    "ELEVENLABS_API_KEY": "elevenlabs.api_key",
    "ELEVENLABS_VOICE_ID": "elevenlabs.voice_id",
    "GROQ_API_URL": "groq.url",
    "GROQ_API_KEY": "groq.api_key",
    "SUPABASE_URL": "supabase.url",
    "SUPABASE_SERVICE_ROLE_KEY": "supabase.service_role_key",
    "JOB_WEBHOOK": "webhook.url",
    "EXTERNAL_WORKER_URL": "external_worker.url",
    "EXTERNAL_WORKER_TOKEN": "external_worker.token",
}


def _secret_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _secret_keys(kind, f"{prefix}{name}.")
        elif kind is SecretStr or SecretStr in get_args(kind):
            yield f"{prefix}{name}"


# The dotted keys whose type is SecretStr: the type is the one place that says what is a secret.
SECRET_KEYS = frozenset(_secret_keys(Settings))


@dataclass(frozen=True)
class Config:
    """The effective settings, the file they were read from, and where each dotted key came from."""

    settings: Settings
    file: Path | None
    sources: Mapping[str, str]

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """Every dotted key with its value and source, in model order."""
        for key, value in _flatten(self.settings.model_dump()):
            yield key, value, self.sources.get(key, "default")


def _user_dir(kind: Literal["data", "config"]) -> Path:
    import platformdirs

    if kind == "data":
        return Path(platformdirs.user_data_dir(APP_NAME))
    return Path(platformdirs.user_config_dir(APP_NAME))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """--config, else $DISPARA_CONFIG, else ./dispara.yaml, else the user config dir, else None."""
    named = explicit or env.get("DISPARA_CONFIG") or None
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            origin = "--config" if explicit else "DISPARA_CONFIG"
            raise ConfigError(f"{path}: configuration file not found (from {origin})")
        return path
    for candidate in (Path("dispara.yaml"), _user_dir("config") / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def _read_file(path: Path) -> dict[str, Any]:
    data = read_yaml(path, str(path), error=ConfigError, what="configuration file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of keys, not {type(data).__name__}")
    return data


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        if error["loc"][0] == "tables":
            return key, f"unknown table; dispara's tables are: {', '.join(TablesConfig.model_fields)}"
        return key, "unknown key"
    return key, str(error["msg"]).removeprefix("Value error, ")


def _validate(data: dict[str, Any], origin_of: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        key, problem = _describe(exc.errors()[0])
        raise ConfigError(f"{origin_of.get(key, 'configuration')}: {key}: {problem}") from None


def load_config(
    *,
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge defaults, the config file, the environment and command-line flags, in that order."""
    env = os.environ if env is None else env
    path = find_config_file(config_file, env)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        file_data = _read_file(path)
        for key, _ in _flatten(file_data):
            sources[key] = f"file {path}"
        merged = file_data
    for name, key in ENV_KEYS.items():
        value = env.get(name)
        if value:  # an exported but empty variable means "not set", as in most shells' tooling
            _set_dotted(merged, key, value)
            sources[key] = f"env {name}"
    for key, value in (flags or {}).items():
        if value is not None:
            _set_dotted(merged, key, value)
            sources[key] = f"flag --{key.replace('_', '-')}"
    settings = _validate(merged, sources)
    return Config(settings=settings, file=path, sources=sources)


def reveal(value: SecretStr | None) -> str | None:
    """The plain text of a secret setting, for the code that sends it (never for output)."""
    return None if value is None else value.get_secret_value()


def mask(key: str, value: Any) -> str:
    """A value as it may be shown to a person: secrets as ****abcd, credentials cut out of URLs."""
    if value is None:
        return "-"
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if key in SECRET_KEYS:
        return mask_secret(text)
    if key == "database_url" or key.endswith("url") or "://" in text:
        return mask_url(text)
    return text


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (keys, tokens, passwords in URLs), to mask them in free text."""
    found: list[str] = []
    for _key, value in _flatten(settings.model_dump()):
        if isinstance(value, SecretStr):
            if value:
                found.append(value.get_secret_value())
        elif isinstance(value, str) and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(password)
    return found


def mask_dsn(dsn: str) -> str:
    """A connection string with its password (and any credential in its query) replaced by ****."""
    return mask_url(dsn)
