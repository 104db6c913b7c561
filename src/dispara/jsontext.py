"""JSON for what the worker reads and writes per message: dumps through orjson (a fifth of json's cost),
with json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)'s text (small floats'
exponents aside: 1e-7, not 1e-07; the same number); loads through json.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Dates and dataclasses through `default=str` as json does, not orjson's own RFC 3339 / field mapping.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII kept as is."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """JSON text (a database value's UTF-8 bytes) as Python values, exactly as json.loads reads it.

    Not orjson's: it turns integers beyond 64 bits into floats and refuses 1e400, which jsonb holds.
    Decoding to str first skips json.loads's encoding detection on bytes, half its cost on a payload.
    """
    return json.loads(data if isinstance(data, str) else str(data, "utf-8"))
