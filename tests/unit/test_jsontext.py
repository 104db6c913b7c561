"""jsontext.dumps writes what json.dumps(compact, non-ASCII kept, default=str) writes, faster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest

from dispara import jsontext


@dataclass
class _Point:
    x: int


def _reference(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@pytest.mark.parametrize(
    "value",
    [
        {"text": "Olá, oferta 1 ✓", "n": [1, 2.5, None, True, False], "nested": {"a": {}}},
        {"at": datetime(2026, 12, 2, 3, 4, 5, 600, tzinfo=UTC), "day": date(2026, 12, 2)},
        {"id": UUID("12345678-1234-5678-1234-567812345678"), "point": _Point(1)},
        {1: "int key", "nul": "a\x00b", "quote": 'say "hi"\n'},
        {"big": 2**70, "float": 1e100, "small": 0.1},
    ],
)
def test_same_text_as_json(value: Any) -> None:
    assert jsontext.dumps(value) == _reference(value)


def test_small_floats_are_the_same_numbers() -> None:
    value = {"tiny": 1e-7, "odd": 6.692110657252752e-07}
    assert jsontext.dumps(value) == '{"tiny":1e-7,"odd":6.692110657252752e-7}'
    assert json.loads(jsontext.dumps(value)) == value


def test_loads_reads_what_dumps_wrote() -> None:
    value = {"task_type": "send-message", "data": {"message_id": 7, "text": "é"}}
    assert jsontext.loads(jsontext.dumps(value)) == value
    assert jsontext.loads(memoryview(jsontext.dumps(value).encode())) == value


def test_loads_keeps_what_jsonb_holds() -> None:
    # orjson would make the first a float and refuse the second
    assert jsontext.loads(b'{"id": 123456789012345678901234567890, "huge": 1e400}') == {
        "id": 123456789012345678901234567890,
        "huge": float("inf"),
    }
