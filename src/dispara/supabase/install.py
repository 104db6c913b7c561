"""Planning the Supabase layer (install or remove) from what the database offers, and applying a plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from psycopg import sql

from dispara.config import Settings
from dispara.db import Connection, tables
from dispara.db.queries import q
from dispara.errors import ConfigError, InputError
from dispara.redact import mask_url
from dispara.supabase.layer import (
    CLIENT_PRIVILEGES,
    CLOSED,
    READ_ONLY,
    TENANTS,
    Capabilities,
    Plan,
    detect,
    owns_grants,
    render,
)

# pg_net gives up on a request after this long past the drain /dispatch runs before answering.
TIMEOUT_MARGIN_S = 10.0


@dataclass(frozen=True)
class Wanted:
    """What the operator asks for: where /dispatch is, how long it drains, where the tenant is in the JWT."""

    dispatch_url: str
    dispatch_seconds: float
    tenant_claim: str


def plan_install(conn: Connection, caps: Capabilities, wanted: Wanted) -> Plan:
    """RLS and the checked counters where the client roles exist; the wake-ups where net.http_post can."""
    plan = Plan()
    schema = sql.Identifier(caps.schema)
    if caps.has_client_roles:
        _add_rls(conn, plan, schema, wanted.tenant_claim)
    else:
        plan.notes.append(
            "row-level security and the checked counter functions: there are no anon, authenticated and "
            "service_role roles here, so this is not a Supabase database"
        )
    _add_wakeups(conn, plan, caps, wanted)
    if caps.has_client_roles:
        plan.steps.append(render(conn, "revoke_clients"))
    return plan


def _add_wakeups(conn: Connection, plan: Plan, caps: Capabilities, wanted: Wanted) -> None:
    schema = sql.Identifier(caps.schema)
    if not _use_http_post(plan, caps):
        return
    plan.key_store = "vault" if caps.has_vault else "private"
    plan.steps.append(render(conn, "key_vault" if caps.has_vault else "key_private"))
    timeout_ms = math.ceil((wanted.dispatch_seconds + TIMEOUT_MARGIN_S) * 1000)
    plan.steps.append(
        render(
            conn,
            "wake",
            schema=schema,
            url=sql.Literal(wanted.dispatch_url),
            timeout_ms=sql.Literal(timeout_ms),
        )
    )
    if _use_cron(plan, caps):
        plan.steps.append(
            render(conn, "cron", schema=schema, command=sql.Literal(cron_command(conn, caps.schema)))
        )


def cron_command(conn: Connection, schema: str) -> str:
    """The command the minute job runs (what `cron.job.command` shows)."""
    return sql.SQL("SELECT {}.dispara_dispatch_if_due()").format(sql.Identifier(schema)).as_string(conn)


def _add_rls(conn: Connection, plan: Plan, schema: sql.Identifier, claim: str) -> None:
    path = sql.SQL("{}::text[]").format(sql.Literal(claim.split(".")))
    plan.steps.append(render(conn, "rls_common", schema=schema, claim_path=path))
    for logical in tables.LOGICAL:
        table = tables.identifier(logical)
        if logical in CLOSED:
            plan.steps.append(render(conn, "rls_closed", table=table))
            continue
        kind = "rls_tenants" if logical == TENANTS else "rls_tenant_table"
        plan.steps.append(render(conn, kind, table=table, grants=_grants(logical, table)))


def _grants(logical: str, table: sql.Composable) -> sql.Composable:
    if not owns_grants(logical):
        return sql.SQL("")
    privileges = sql.SQL(CLIENT_PRIVILEGES.get(logical, READ_ONLY))  # package constants
    return sql.SQL(
        "REVOKE ALL ON {t} FROM anon, authenticated;\nGRANT {p} ON {t} TO authenticated;\n"
    ).format(t=table, p=privileges)


def _use_http_post(plan: Plan, caps: Capabilities) -> bool:
    if caps.has_http_post:
        return True
    if caps.pg_net_available:
        plan.steps.append("CREATE EXTENSION IF NOT EXISTS pg_net;")
        return True
    plan.notes.append(
        "the insert trigger and the minute re-drive: pg_net is not available and there is no "
        "net.http_post(url text, body jsonb, params jsonb, headers jsonb, timeout_milliseconds int); "
        "run `dispara worker`, or have a scheduler POST to /dispatch"
    )
    return False


def _use_cron(plan: Plan, caps: Capabilities) -> bool:
    if caps.has_cron:
        return True
    if caps.pg_cron_available and caps.pg_cron_preloaded and caps.cron_database:
        plan.steps.append("CREATE EXTENSION IF NOT EXISTS pg_cron;")
        return True
    if not caps.pg_cron_available:
        why = "pg_cron is not available and there is no cron.schedule"
    elif not caps.pg_cron_preloaded:
        why = "pg_cron is not in shared_preload_libraries"
    else:
        why = "pg_cron runs jobs in another database (cron.database_name)"
    plan.notes.append(
        f"the minute re-drive: {why}; jobs that come due later (scheduled, retried) wait for the next "
        "insert unless a scheduler runs SELECT dispara_dispatch_if_due()"
    )
    return False


def plan_remove(conn: Connection, caps: Capabilities) -> Plan:
    """Everything the install may have put in; each step does nothing where its part is not there."""
    plan = Plan()
    if caps.has_cron:
        plan.steps.append(render(conn, "remove_cron"))
    plan.steps.append(render(conn, "remove_wake"))
    if caps.has_vault:
        plan.steps.append(render(conn, "remove_vault_key"))
    if caps.has_client_roles:
        for logical in tables.LOGICAL:
            kind = "remove_rls_table" if owns_grants(logical) else "remove_rls_policy"
            plan.steps.append(render(conn, kind, table=tables.identifier(logical)))
        plan.steps.append(render(conn, "remove_rls_common"))
        kept = [".".join(tables.physical(name)) for name in tables.LOGICAL if not owns_grants(name)]
        if kept:
            plan.notes.append(
                f"row-level security stays enabled on the web app's tables ({', '.join(kept)}) and their "
                "grants are the app's: only dispara's policy is dropped"
            )
    plan.notes.append("the pg_net and pg_cron extensions stay installed: other things may use them")
    return plan


def apply(conn: Connection, plan: Plan, key: str | None) -> None:
    """Run the plan's steps and store the bearer key, inside the caller's transaction."""
    for step in plan.steps:
        conn.execute(step.encode())  # bytes: package text with psycopg-quoted values
    if plan.key_store == "vault":
        row = conn.execute(q("supabase_vault_secret_id")).fetchone()
        if row:
            conn.execute(q("supabase_vault_secret_update"), {"id": row[0], "key": key})
        else:
            conn.execute(q("supabase_vault_secret_create"), {"key": key})
    elif plan.key_store == "private":
        conn.execute(q("supabase_private_secret_set"), {"key": key})


def check_dispatch_url(url: str) -> None:
    """Refuse a --dispatch-url pg_net could not POST to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = mask_url(url)
        raise InputError(f"--dispatch-url {shown!r}: not an http(s) URL (expected https://host/dispatch)")


def prepare(
    conn: Connection, settings: Settings, dispatch_url: str | None, *, remove: bool, applying: bool
) -> Plan:
    """The plan `db migrate --supabase` shows: the install for these settings, or the removal.

    Applying needs the bearer key; printing does not (the script shows a placeholder for it).
    """
    caps = detect(conn)
    if remove:
        return plan_remove(conn, caps)
    assert dispatch_url is not None
    check_dispatch_url(dispatch_url)
    wanted = Wanted(dispatch_url, settings.server.dispatch_seconds, settings.supabase.tenant_claim)
    plan = plan_install(conn, caps, wanted)
    if applying and plan.key_store is not None and not settings.server.api_key:
        raise ConfigError("db migrate --supabase needs DISPARA_API_KEY (server.api_key): /dispatch checks it")
    return plan
