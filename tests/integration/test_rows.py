"""dispara.db.rows: columns reach fields by name, whatever the SELECT's order; a stray column is an error."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

from dispara.db.rows import all_as, all_dicts, one_as, one_dict


@dataclass(frozen=True)
class Pair:
    sent: int
    failed: int


def test_a_reordered_select_cannot_swap_two_fields(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert one_as(conn, Pair, "SELECT 1 AS sent, 2 AS failed") == Pair(sent=1, failed=2)
    assert one_as(conn, Pair, "SELECT 2 AS failed, 1 AS sent") == Pair(sent=1, failed=2)
    rows = all_as(conn, Pair, "SELECT n AS failed, -n AS sent FROM generate_series(1, 2) AS n")
    assert rows == [Pair(sent=-1, failed=1), Pair(sent=-2, failed=2)]
    assert one_dict(conn, "SELECT 2 AS failed, 1 AS sent") == {"failed": 2, "sent": 1}
    assert all_dicts(conn, "SELECT 1 AS x WHERE false") == []
    assert one_as(conn, Pair, "SELECT 1 AS sent, 2 AS failed WHERE false") is None


def test_a_column_the_dataclass_does_not_have_fails_at_once(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'total'"):
        one_as(conn, Pair, "SELECT 1 AS sent, 2 AS failed, 3 AS total")
