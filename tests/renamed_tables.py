"""Test tooling: with DISPARA_TEST_TABLES=renamed, every dispara table has another name (one in another
schema), so a test run proves the queries follow config `tables:`. Not tenants: a mapped tenants table is
the web app's, whose rows dispara never creates (tests/integration/test_adopt_tables.py covers it).

Tests' own SQL still says `campaigns`: views of that name, on the search path after `public`, lead to the
renamed tables, and raise when a dispara connection (application_name dispara*) uses one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import psycopg
from psycopg import sql

from dispara.db import tables

ACTIVE = os.environ.get("DISPARA_TEST_TABLES") == "renamed"
VIEWS = "dispara_own_names"
MAPPING = {
    **{name: f"app_{name}" for name in tables.LOGICAL if name != "tenants"},
    "message_logs": "saas.message_logs_app",
}
_GUARD = f"""
CREATE SCHEMA {VIEWS};
CREATE FUNCTION {VIEWS}.guard() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF current_setting('application_name') LIKE 'dispara%' THEN
        RAISE EXCEPTION 'dispara used a table by its own name, not the mapped one';
    END IF;
    RETURN true;
END
$$;
"""


def install() -> None:
    """The renamed tables for this test process; the CLI's `tables.use(config)` keeps them underneath."""
    if not ACTIVE:
        return
    original = tables.use

    def use(mapping: Mapping[str, str]) -> None:
        original({**MAPPING, **mapping})

    tables.use = use
    tables.use({})


def before_migrate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    if ACTIVE:
        conn.execute("CREATE SCHEMA saas")


def after_migrate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    if not ACTIVE:
        return
    conn.execute(_GUARD.encode())
    for name in MAPPING:
        view = sql.SQL("CREATE VIEW {} AS SELECT * FROM {} WHERE {}.guard()").format(
            sql.Identifier(VIEWS, name), sql.Identifier(*tables.physical(name)), sql.Identifier(VIEWS)
        )
        conn.execute(view)


def on_database(admin: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """A test database's search path finds the views (database settings are not copied from a template)."""
    if ACTIVE:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = public, {}").format(
                sql.Identifier(name), sql.Identifier(VIEWS)
            )
        )
