"""The named-query loader."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispara.db import migrate, tables
from dispara.db.queries import _all, _parse, q


def test_named_queries_load_from_package_files() -> None:
    assert q("tenant_get_or_create").lstrip().startswith("WITH inserted")
    assert not q("setting_get").endswith(";")


def test_unknown_query_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no SQL query named 'nope'"):
        q("nope")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(RuntimeError, match="defined twice"):
        _parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql", {})


_Q_CALL = re.compile(r"""\bq\(\s*["']([a-z_][a-z0-9_]*)["']\s*\)""")
_ANY_Q_CALL = re.compile(r"\bq\(")
SRC = Path(__file__).resolve().parents[2] / "src"


def _q_calls() -> dict[str, list[str]]:
    """Query name -> the source files that call q() with it; fails on a q() whose name is not a literal."""
    calls: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        literal = _Q_CALL.findall(text)
        where = str(path.relative_to(SRC))
        if path.name != "queries.py":  # its own definition, `def q(name: str)`
            assert len(literal) == len(_ANY_Q_CALL.findall(text)), f"{where}: q() with a computed name"
        for name in literal:
            calls.setdefault(name, []).append(where)
    return calls


def test_every_named_query_is_used_and_every_q_call_names_a_query() -> None:
    defined = set(_all())
    used = _q_calls()
    assert sorted(defined - set(used)) == [], "named queries no code calls: remove them"
    unknown = {name: files for name, files in used.items() if name not in defined}
    assert unknown == {}, "q() names no query"


_TABLE_WORDS = "|".join(tables.LOGICAL)
# A dispara table in table position (after FROM, JOIN, ...) or qualifying a column, written bare.
_BARE_TABLE = re.compile(
    rf"\b(?:FROM|JOIN|UPDATE|INTO|TABLE|ON|REFERENCES|COPY|TRUNCATE)\s+({_TABLE_WORDS})\b(?!\()"
    rf"|(?<![.\w%(\"])({_TABLE_WORDS})\.",
    re.IGNORECASE,
)


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


@pytest.fixture
def renamed_tables() -> Iterator[None]:
    tables.use({name: f"app.x_{name}" for name in tables.LOGICAL})
    try:
        yield
    finally:
        tables.use({})


@pytest.mark.usefixtures("renamed_tables")
def test_every_table_in_every_query_and_migration_follows_the_mapping() -> None:
    texts = {name: q(name) for name in _all()}
    texts |= {f"migration {m.version}": m.sql for m in migrate.available()}
    bare = {name: _BARE_TABLE.findall(_code(text)) for name, text in texts.items()}
    assert {name: found for name, found in bare.items() if found} == {}, "write tables as {placeholders}"
    assert '"app"."x_jobs"' in q("queue_claim")


@pytest.mark.usefixtures("renamed_tables")
def test_renamed_tables_leave_migration_checksums_alone() -> None:
    renamed = [m.checksum for m in migrate.available()]
    tables.use({})
    assert [m.checksum for m in migrate.available()] == renamed
