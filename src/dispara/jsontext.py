"""Compact JSON text for what the worker stores and writes per message (orjson: a fifth of json's cost).

Output is json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)'s, for the values
the worker passes; anything orjson refuses (an integer beyond 64 bits, ...) goes through json itself.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Dates and dataclasses through `default=str` as json does, not orjson's own RFC 3339 / field mapping.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
loads = orjson.loads


def dumps(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII kept as is."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
