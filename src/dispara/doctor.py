"""`dispara doctor`: is everything dispara depends on reachable and correctly configured?

One result per check: the database first, then Evolution (the server, then each instance the tenant's
campaigns use), QStash, ElevenLabs, Groq, Supabase Storage and the job webhook. Services that are not
configured are `skipped`, never failures. Checks run concurrently, each HTTP request with a short
timeout; the database is read once (read-only: the tenant is looked up, never created) and the checks
that need a tenant setting or the instance list wait for it.

Every secret the checks could know (config and tenant settings, the database password) is masked out of
every detail and hint, whatever a server echoes back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import psycopg
from psycopg.conninfo import make_conninfo

from dispara import tenant_settings
from dispara.config import Settings, reveal, secret_values
from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import all_dicts
from dispara.errors import ConfigError, DatabaseError, DisparaError, ServiceError
from dispara.providers import health
from dispara.providers.evolution_errors import one_line
from dispara.providers.outbox import outbox_path
from dispara.redact import scrub

if TYPE_CHECKING:
    from dispara.providers.evolution import EvolutionSender

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RECENT_DAYS",
    "CheckResult",
    "TenantData",
    "check_database",
    "failure",
    "run_checks",
]

Status = Literal["ok", "fail", "skipped"]

DEFAULT_TIMEOUT_S: Final = health.DEFAULT_TIMEOUT_S
RECENT_DAYS: Final = 30
"""Instances of campaigns created in this many days are checked (plus every row of `instances`)."""
MAX_INSTANCE_CHECKS_AT_ONCE: Final = 32


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""
    database: bool = False
    """A failure of the database itself (exit code 5) rather than of an external service (6)."""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def _fail(name: str, detail: str, hint: str = "") -> CheckResult:
    return CheckResult(name, "fail", detail, hint)


def _skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "skipped", detail)


@dataclass(frozen=True)
class TenantData:
    """What the checks need from the database: the tenant's settings and the instances it uses."""

    name: str
    exists: bool
    settings: Mapping[str, str] = field(default_factory=dict)
    instances: tuple[str, ...] = ()
    webhook_pauses: Mapping[str, str] = field(default_factory=dict)
    """Instances Evolution's webhooks reported disconnected, with the reason."""


# ---- database ----------------------------------------------------------------------------------------


class _DatabaseFailed(Exception):
    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.result = CheckResult("database", "fail", detail, hint, database=True)


def check_database(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[CheckResult, TenantData | None]:
    """Reachable and migrated; with it, the tenant's data (None when it cannot be read)."""
    from dispara.db import migrate

    try:
        conn, where, embedded = _connect_bounded(settings, timeout)
    except _DatabaseFailed as exc:
        return exc.result, None
    try:
        with conn:
            version = migrate.current_version(conn)
            latest = migrate.latest_version()
            tenant = _tenant_data(conn, settings.tenant) if version >= 1 else None
    except psycopg.Error as exc:
        reason = one_line(str(exc), 240)
        return CheckResult("database", "fail", f"{where}: {reason}", "", database=True), None
    return _schema_state(where, embedded, version, latest, tenant), tenant


def _connect_bounded(settings: Settings, timeout: float) -> tuple[Connection, str, bool]:
    """A connection, how to name the database, and whether it is embedded; or _DatabaseFailed."""
    from dispara.db.connect import Database, locate, open_connection

    try:
        db = locate(settings)
    except ConfigError as exc:  # a malformed DATABASE_URL
        raise _DatabaseFailed(str(exc), "fix DATABASE_URL") from None
    except DisparaError as exc:
        detail = f"embedded database under {settings.data_dir}: {exc}"
        hint = "set DATABASE_URL to an external database, or check that DISPARA_DATA_DIR is writable"
        raise _DatabaseFailed(detail, hint) from None
    where = f"embedded {db.shown}" if db.embedded else f"external {db.shown}"
    # libpq waits forever for a host that drops packets: bound the connection attempt (minimum 2 s).
    try:
        bounded = Database(make_conninfo(db.dsn, connect_timeout=max(2, math.ceil(timeout))), db.embedded)
    except psycopg.Error:  # its message quotes the string, password included
        hint = "use postgresql://user:password@host:5432/database"
        raise _DatabaseFailed("DATABASE_URL is not a valid connection string", hint) from None
    try:
        return open_connection(bounded, autocommit=True), where, db.embedded
    except DatabaseError as exc:
        reason = one_line(str(exc.__cause__ or exc), 240)
        hint = (
            "run `dispara db stop` and retry, or set DATABASE_URL to an external database"
            if db.embedded
            else "check DATABASE_URL (host, port, user, password, database name) and that the server is up"
        )
        raise _DatabaseFailed(f"{where}: cannot connect: {reason}", hint) from None


def _schema_state(
    where: str, embedded: bool, version: int, latest: int, tenant: TenantData | None
) -> CheckResult:
    name = "database"
    about = ""
    if tenant is not None:
        about = f"; tenant {tenant.name}" + ("" if tenant.exists else " (no data yet)")
    if version > latest:
        detail = f"{where}: schema version {version} is newer than this dispara ({latest})"
        return CheckResult(name, "fail", detail, "upgrade dispara", database=True)
    if version < latest:
        state = "no dispara schema" if version == 0 else f"schema version {version} of {latest}"
        if embedded:
            return _ok(name, f"{where}, {state}: migrated automatically on next use{about}")
        return CheckResult(name, "fail", f"{where}: {state}", "run `dispara db migrate`", database=True)
    return _ok(name, f"{where}, schema version {version} (latest){about}")


def _tenant_data(conn: Connection, name: str) -> TenantData:
    row = conn.execute(q("doctor_tenant_id"), {"name": name}).fetchone()
    if row is None:
        return TenantData(name, exists=False)
    tenant_id = row[0]
    values = tenant_settings.all_values(conn, tenant_id)
    params = {"tenant_id": tenant_id, "days": RECENT_DAYS}
    instances = tuple(str(r[0]) for r in conn.execute(q("doctor_instances"), params) if r[0])
    rows = all_dicts(conn, q("doctor_webhook_pauses"), {"tenant_id": tenant_id})
    pauses = {str(row["name"]): str(row["pause_reason"]) for row in rows}
    return TenantData(name, exists=True, settings=values, instances=instances, webhook_pauses=pauses)


# ---- services ----------------------------------------------------------------------------------------


class _Context:
    """What the service checks share; `tenant()` waits for the database check."""

    def __init__(
        self, settings: Settings, timeout: float, db: Future[tuple[CheckResult, TenantData | None]]
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._db = db

    def tenant(self) -> TenantData | None:
        return self._db.result()[1]

    def pick(self, configured: str | None, env_name: str, setting: str) -> tuple[str | None, str]:
        """The configured value, else the tenant setting; with where it came from, for hints."""
        if configured:
            return configured, env_name
        tenant = self.tenant()
        value = tenant.settings.get(setting) if tenant is not None else None
        return (value, f"the tenant setting {setting}") if value else (None, env_name)

    def not_configured(self, service: str, where: str) -> str:
        """`<service> not configured (<where>)`, saying so when the tenant settings could not be read."""
        unread = "; tenant settings not read: database unavailable" if self.tenant() is None else ""
        return f"{service} not configured ({where}{unread})"


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return _ok(name, check())
    except health.CheckFailed as exc:
        return _fail(name, str(exc), exc.hint)


def _outcome(name: str, future: Future[str]) -> CheckResult:
    try:
        return _ok(name, future.result())
    except health.CheckFailed as exc:
        return _fail(name, str(exc), exc.hint)
    except Exception as exc:  # a bug in one check must not hide the others
        return _fail(name, f"unexpected error: {type(exc).__name__}: {exc}")


def _evolution(ctx: _Context) -> list[CheckResult]:
    from dispara.errors import ConfigError
    from dispara.providers.evolution import EvolutionSender
    from dispara.redact import public_url

    evo = ctx.settings.evolution
    if not evo.url:
        outbox = outbox_path(ctx.settings.data_dir)
        return [_skipped("evolution", f"Evolution not configured: messages go to the outbox file {outbox}")]
    api_key = reveal(evo.api_key)
    if not api_key:
        detail = f"{public_url(evo.url)}: EVOLUTION_API_URL is set but EVOLUTION_API_KEY is not"
        return [_fail("evolution", detail, health.EVOLUTION_KEY_HINT)]
    try:
        sender = EvolutionSender(
            evo.url,
            api_key,
            typing_delay_ms=0,
            timeout_extra_s=ctx.timeout,
            connect_timeout_s=ctx.timeout,
            max_connections=MAX_INSTANCE_CHECKS_AT_ONCE,
        )
    except ConfigError as exc:
        return [_fail("evolution", str(exc), "check EVOLUTION_API_URL and EVOLUTION_API_KEY")]
    with sender, ThreadPoolExecutor(MAX_INSTANCE_CHECKS_AT_ONCE, thread_name_prefix="doctor-evo") as pool:
        server_future = pool.submit(health.check_evolution_server, evo.url, api_key, timeout=ctx.timeout)
        tenant = ctx.tenant()
        names = tenant.instances if tenant is not None else ()
        futures = [(n, pool.submit(health.check_evolution_instance, sender, n)) for n in names]
        server = _outcome("evolution", server_future)
        instances = [_outcome(f"evolution instance {n}", f) for n, f in futures]
    if tenant is None:
        return [
            server,
            _skipped(
                "evolution instances", "Evolution instances not checked: the database could not be read"
            ),
        ]
    if not instances:
        if server.status == "fail":
            return [server]
        return [_ok(server.name, f"{server.detail}; no instances used by tenant {tenant.name} yet")]
    if server.status == "fail" and all(r.status == "fail" for r in instances):
        # Every instance failed with the server: one line says it better than N copies of it.
        note = f" ({len(instances)} instance(s) not checked)"
        return [CheckResult(server.name, server.status, server.detail + note, server.hint)]
    return [server, *instances]


def _evolution_webhooks(ctx: _Context) -> list[CheckResult]:
    """Each instance's webhook points at `dispara serve` with the secret (receipts, replies, drops).

    Only once EVOLUTION_WEBHOOK_SECRET is set: without it receipts are simply not in use.
    """
    from dispara.providers.evolution import EvolutionSender
    from dispara.receipts import setup

    evo = ctx.settings.evolution
    api_key = reveal(evo.api_key)
    if not evo.url or not api_key or not evo.webhook_secret:
        return []
    tenant = ctx.tenant()
    if tenant is None or not tenant.instances:
        return []  # the evolution check says why
    try:
        want = setup.wanted(ctx.settings)
    except DisparaError as exc:
        return [_fail("evolution webhooks", str(exc))]
    with EvolutionSender(evo.url, api_key, typing_delay_ms=0, timeout_extra_s=ctx.timeout) as sender:
        results = [_webhook_of(sender, name, want) for name in tenant.instances]
    hint = "reconnect it (QR code in the Evolution manager); sending resumes when Evolution reports it open"
    for name, reason in sorted(tenant.webhook_pauses.items()):
        results.append(_fail(f"evolution instance {name} paused", reason, hint))
    return results


def _webhook_of(sender: EvolutionSender, name: str, want: dict[str, Any]) -> CheckResult:
    from dispara.receipts import setup

    check = f"evolution webhook {name}"
    try:
        problem = setup.problem(sender.find_webhook(name), want)
    except ServiceError as exc:
        return _fail(check, str(exc))
    if problem is None:
        return _ok(check, f"points at {want['url']}")
    return _fail(check, problem, f"run `dispara evolution webhook setup --instance {name}`")


def _qstash(ctx: _Context) -> list[CheckResult]:
    qstash = ctx.settings.qstash
    token = reveal(qstash.token)
    if not token:
        return [_skipped("qstash", "QStash not configured (QSTASH_TOKEN not set)")]
    return [_run("qstash", lambda: health.check_qstash(qstash.url, token, timeout=ctx.timeout))]


def _elevenlabs(ctx: _Context) -> list[CheckResult]:
    cfg = ctx.settings.elevenlabs
    key, key_name = ctx.pick(reveal(cfg.api_key), "ELEVENLABS_API_KEY", "elevenlabs-apikey")
    if not key:
        detail = ctx.not_configured("ElevenLabs", "ELEVENLABS_API_KEY or tenant setting elevenlabs-apikey")
        return [_skipped("elevenlabs", detail)]
    voice, voice_name = ctx.pick(cfg.voice_id, "ELEVENLABS_VOICE_ID", "elevenlabs-voice-id")
    return [
        _run(
            "elevenlabs",
            lambda: health.check_elevenlabs(
                cfg.url, key, voice, timeout=ctx.timeout, key_name=key_name, voice_name=voice_name
            ),
        )
    ]


def _groq(ctx: _Context) -> list[CheckResult]:
    cfg = ctx.settings.groq
    key, key_name = ctx.pick(reveal(cfg.api_key), "GROQ_API_KEY", "groq-apikey")
    if not key:
        return [_skipped("groq", ctx.not_configured("Groq", "GROQ_API_KEY or tenant setting groq-apikey"))]
    return [
        _run(
            "groq", lambda: health.check_groq(cfg.url, key, cfg.model, timeout=ctx.timeout, key_name=key_name)
        )
    ]


def _storage(ctx: _Context) -> list[CheckResult]:
    cfg = ctx.settings.supabase
    url, key = cfg.url, reveal(cfg.service_role_key)
    if not url and not key:
        local = ctx.settings.data_dir / "storage"
        detail = f"Supabase Storage not configured (SUPABASE_URL): audio files are kept under {local}"
        return [_skipped("storage", detail)]
    if not url or not key:
        given, missing = (
            ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY")
            if url
            else ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_URL")
        )
        return [_fail("storage", f"{given} is set but {missing} is not", f"set {missing}")]
    return [_run("storage", lambda: health.check_storage(url, key, cfg.bucket, timeout=ctx.timeout))]


def _webhook(ctx: _Context) -> list[CheckResult]:
    cfg = ctx.settings.webhook
    url, url_name = ctx.pick(cfg.url, "JOB_WEBHOOK", "JOB_WEBHOOK")
    if not url:
        detail = ctx.not_configured("webhook", "JOB_WEBHOOK or tenant setting JOB_WEBHOOK")
        if cfg.required:
            return [
                _fail("webhook", detail, "webhook.required is set: the worker fails jobs without a webhook")
            ]
        return [_skipped("webhook", detail)]
    secret, _ = ctx.pick(reveal(cfg.secret), "webhook.secret", "webhook-secret")
    return [
        _run("webhook", lambda: health.check_webhook(url, secret, timeout=ctx.timeout, url_name=url_name))
    ]


SERVICE_CHECKS: Final[tuple[tuple[str, Callable[[_Context], list[CheckResult]]], ...]] = (
    ("evolution", _evolution),
    ("evolution webhooks", _evolution_webhooks),
    ("qstash", _qstash),
    ("elevenlabs", _elevenlabs),
    ("groq", _groq),
    ("storage", _storage),
    ("webhook", _webhook),
)


# ---- running and judging -----------------------------------------------------------------------------


def _guarded_database(settings: Settings, timeout: float) -> tuple[CheckResult, TenantData | None]:
    try:
        return check_database(settings, timeout=timeout)
    except Exception as exc:
        detail = f"unexpected error: {type(exc).__name__}: {exc}"
        return CheckResult("database", "fail", detail, database=True), None


def run_checks(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[CheckResult]:
    """Every check, in a fixed order; concurrently, so the whole run takes about one timeout at worst."""
    with ThreadPoolExecutor(len(SERVICE_CHECKS) + 1, thread_name_prefix="doctor") as pool:
        # Submitted first, so it runs before any check that waits for it: no deadlock on a full pool.
        db_future = pool.submit(_guarded_database, settings, timeout)
        ctx = _Context(settings, timeout, db_future)
        futures = [(name, pool.submit(check, ctx)) for name, check in SERVICE_CHECKS]
        database, tenant = db_future.result()
        results = [database]
        for name, future in futures:
            try:
                results.extend(future.result())
            except Exception as exc:  # a bug in one check must not hide the others
                results.append(_fail(name, f"unexpected error: {type(exc).__name__}: {exc}"))
    return _redact(results, _secrets(settings, tenant))


_SECRET: Final = tenant_settings.Known("", secret=True)  # unknown tenant settings count as secret


def _secrets(settings: Settings, tenant: TenantData | None) -> list[str]:
    found = set(secret_values(settings))
    if tenant is not None:
        found.update(v for k, v in tenant.settings.items() if tenant_settings.KNOWN.get(k, _SECRET).secret)
    # Longest first, so a secret that contains another is masked whole. Very short values are left alone:
    # masking "abc" everywhere would garble the output and protects nothing.
    return sorted((s for s in {*found, *(s.strip() for s in found)} if len(s) >= 4), key=len, reverse=True)


def _redact(results: list[CheckResult], secrets: list[str]) -> list[CheckResult]:
    def clean(text: str) -> str:
        return scrub(text, secrets)

    return [CheckResult(r.name, r.status, clean(r.detail), clean(r.hint), r.database) for r in results]


def failure(results: list[CheckResult]) -> DisparaError | None:
    """The error to exit with, or None when every configured check passed.

    A failed database check wins (exit code 5): nothing else works without the database, and the checks
    that read it were partly blind. Otherwise any failed service gives exit code 6.
    """
    failed = [r for r in results if r.status == "fail"]
    if not failed:
        return None
    checked = sum(r.status != "skipped" for r in results)
    message = f"{len(failed)} of {checked} checks failed: {', '.join(r.name for r in failed)}"
    if any(r.database for r in failed):
        return DatabaseError(message)
    return ServiceError(message)
