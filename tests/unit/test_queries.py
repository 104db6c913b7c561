"""The named-query loader."""

from __future__ import annotations

import pytest

from dispara.db.queries import _parse, q


def test_named_queries_load_from_package_files() -> None:
    assert q("tenant_get_or_create").lstrip().startswith("WITH inserted")
    assert not q("setting_get").endswith(";")


def test_unknown_query_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no SQL query named 'nope'"):
        q("nope")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(RuntimeError, match="defined twice"):
        _parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql", {})
