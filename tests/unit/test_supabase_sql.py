"""The Supabase layer's scripts follow the table mapping like every other SQL of dispara."""

from __future__ import annotations

from importlib import resources

import pytest
from psycopg import sql

from dispara.db import tables
from dispara.supabase.layer import render
from tests.unit.test_queries import _BARE_TABLE, _code

VALUES = {
    "schema": sql.Identifier("app"),
    "url": sql.Literal("https://x/dispatch"),
    "timeout_ms": sql.Literal(1000),
    "command": sql.Literal("SELECT 1"),
    "claim_path": sql.Literal(["app_metadata", "tenant_id"]),
    "table": sql.Identifier("app", "x_jobs"),
    "grants": sql.SQL(""),
}


def scripts() -> list[str]:
    folder = resources.files("dispara.db").joinpath("supabase")
    return sorted(e.name.removesuffix(".sql") for e in folder.iterdir() if e.name.endswith(".sql"))


@pytest.mark.parametrize("name", scripts())
def test_every_table_in_every_script_follows_the_mapping(name: str) -> None:
    tables.use({logical: f"app.x_{logical}" for logical in tables.LOGICAL})
    try:
        text = render(None, name, **VALUES)
    finally:
        tables.use({})
    assert _BARE_TABLE.findall(_code(text)) == [], "write tables as {placeholders}"
