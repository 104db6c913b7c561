"""The Supabase layer of `db migrate --supabase`: what the database offers, plans, scripts, what is in place.

Scripts live in dispara/db/supabase/*.sql with `{placeholders}` for tables (the deployment's names) and
for the few values composed in as literals (the /dispatch URL, the JWT claim path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Literal

from psycopg import sql
from psycopg.rows import dict_row

from dispara.db import Connection, tables
from dispara.db.queries import q
from dispara.db.rows import one_dict

CRON_JOB = "dispara-dispatch"
KeyStore = Literal["vault", "private"]
KEY_SHOWN = "'<DISPARA_API_KEY>'"
CLOSED = ("dispara_migrations",)  # bookkeeping: no client role gets a row of it
TENANTS = "tenants"
# What a logged-in user of the web app may do to its own tenant's rows of dispara's tables. The queue's
# state is read-only: a user who could set a sent job back to pending would have it sent again.
CLIENT_PRIVILEGES = {
    "campaigns": "SELECT, INSERT, UPDATE, DELETE",
    "settings": "SELECT, INSERT, UPDATE, DELETE",
    "optouts": "SELECT, INSERT, UPDATE, DELETE",
    "message_logs": "SELECT, INSERT",
    "jobs": "SELECT, INSERT",  # seed 000: the web app enqueues jobs itself
}
READ_ONLY = "SELECT"


def owns_grants(logical: str) -> bool:
    """Whether dispara sets the client roles' grants on the table: not on the web app's own (mapped)
    tables, whose grants are the app's; row-level security applies to them all the same.
    """
    return logical not in tables.renamed()


@dataclass(frozen=True)
class Capabilities:
    """What the database has, or can install, for each part of the layer."""

    has_http_post: bool
    pg_net_available: bool
    has_cron: bool
    pg_cron_available: bool
    pg_cron_preloaded: bool
    cron_database: bool
    has_vault: bool
    has_client_roles: bool
    schema: str


@dataclass
class Plan:
    """The SQL to run, in order; where the bearer key goes (None: nowhere); what was left out and why."""

    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key_store: KeyStore | None = None

    def script(self) -> str:
        """The whole layer as shown before it is applied (the key itself is never shown)."""
        notes = "".join(f"-- left out: {note}\n" for note in self.notes)
        key = ""
        if self.key_store is not None:
            key = (
                f"-- the bearer key of /dispatch (server.api_key); dispara fills it in when it applies this\n"
                f"{_key_statement(self.key_store).replace('%(key)s', KEY_SHOWN)};\n"
            )
        return "-- supabase layer\n" + notes + "".join(step.rstrip() + "\n" for step in self.steps) + key


def detect(conn: Connection) -> Capabilities:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q("supabase_detect")).fetchone()
    assert row is not None
    return Capabilities(**row)


@cache
def _text(name: str) -> str:
    return resources.files("dispara.db").joinpath("supabase", f"{name}.sql").read_text(encoding="utf-8")


def render(conn: Connection | None, name: str, **values: sql.Composable) -> str:
    """A script with the deployment's table names and the given values filled in."""
    names = {logical: tables.identifier(logical) for logical in tables.LOGICAL}
    # Package text; the values are psycopg-quoted identifiers and literals.
    return sql.SQL(_text(name)).format(**names, **values).as_string(conn)


def _key_statement(store: KeyStore) -> str:
    return q("supabase_vault_secret_create") if store == "vault" else q("supabase_private_secret_set")


def installed(conn: Connection) -> list[str]:
    """The parts of the layer in place, as `db status` names them; empty when there is none."""
    row = one_dict(conn, q("supabase_installed"))
    assert row is not None
    rls, private_key, has_cron, has_vault = row["rls"], row["private_key"], row["has_cron"], row["has_vault"]
    parts = ["insert trigger notify_job_dispatcher"] if row["trigger"] else []
    job = conn.execute(q("supabase_cron_job"), {"name": CRON_JOB}).fetchone() if has_cron else None
    if job is not None:
        parts.append(f"pg_cron job {CRON_JOB}{_last_run(*job)}")
    if has_vault and conn.execute(q("supabase_vault_key_exists")).fetchone():
        parts.append("bearer key in Vault")
    elif private_key:
        parts.append("bearer key in dispara_private.secrets")
    if rls:
        parts.append("row-level security")
    return parts


def _last_run(status: str | None, started: datetime | None, message: str | None) -> str:
    if status is None or started is None:
        return " (not run yet)"
    at = started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    why = f", {message}" if status == "failed" and message else ""  # pg_cron's error text
    return f" (last run {at}: {status}{why})"
