"""Log lines: JSON objects with the structured fields, text with the level, secrets masked in both."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta

import pytest

from dispara import logs
from dispara.config import EvolutionConfig, GroqConfig, Settings, secret_values

KEY = "evo-key-5c1f0a9e7d"
PASSWORD = "pg-pass-77aa19"


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"boom with {KEY}")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("dispara.worker", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_level_utc_time_and_the_fields_of_the_call() -> None:
    fmt = logs.JsonFormatter([KEY])
    line = fmt.format(
        record("job %d sent", 7, worker="h:1:ab", job_id=7, message_id=9, campaign_id="c-1", outcome="sent")
    )
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "warning"
    assert entry["message"] == "job 7 sent"
    assert (entry["worker"], entry["job_id"], entry["message_id"]) == ("h:1:ab", 7, 9)
    assert (entry["campaign_id"], entry["outcome"]) == ("c-1", "sent")
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() == timedelta(0)
    assert "error_kind" not in entry  # absent fields are left out, not null


def test_bound_fields_fill_in_what_the_call_does_not_give(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_context", {})
    logs.bind(worker="host:42:beef")
    entry = json.loads(logs.JsonFormatter().format(record("database connection lost")))
    assert entry["worker"] == "host:42:beef"
    entry = json.loads(logs.JsonFormatter().format(record("x", worker="other")))
    assert entry["worker"] == "other"


@pytest.mark.parametrize("formatter", [logs.JsonFormatter, logs.TextFormatter])
def test_no_secret_reaches_either_format(formatter: type[logs.JsonFormatter | logs.TextFormatter]) -> None:
    fmt = formatter([KEY, PASSWORD])
    lines = [
        fmt.format(record("sending with key %s failed", KEY)),
        fmt.format(record("cannot reach http://admin:%s@evo.example.com/x?apikey=zz9-top", PASSWORD)),
        fmt.format(record("connect failed: host=db password=%s dbname=x", PASSWORD)),
        fmt.format(record("crashed", exc=True)),
        fmt.format(record("ok", instance=f"inst-{KEY}")),
    ]
    text = "\n".join(lines)
    for secret in (KEY, PASSWORD, "zz9-top"):
        assert secret not in text
    assert "****" in lines[0] and "evo.example.com" in lines[1]
    assert "RuntimeError" in lines[3]  # the traceback is kept, masked


def test_text_lines_carry_the_level() -> None:
    line = logs.TextFormatter().format(record("instance a paused 2s"))
    assert " WARNING dispara.worker instance a paused 2s" in line


def test_secret_values_are_the_keys_and_url_passwords_of_the_settings() -> None:
    settings = Settings(
        database_url=f"postgresql://u:{PASSWORD}@db/x",
        evolution=EvolutionConfig(url="https://evo.example.com", api_key=KEY),
        groq=GroqConfig(api_key="gsk-123456"),
    )
    assert set(secret_values(settings)) == {PASSWORD, KEY, "gsk-123456"}


def test_configure_replaces_the_handler_and_sets_the_level() -> None:
    root = logging.getLogger("dispara")
    saved = root.handlers[:], root.level, root.propagate
    try:
        logs.configure("json", logs.level_for(0, False, logging.INFO), [KEY])
        [handler] = root.handlers
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert root.level == logging.INFO
        logs.configure("text", logs.level_for(2, False))
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def test_a_secret_json_would_escape_is_masked_too() -> None:
    odd = 'k"ey\\with-quote-and-backslash'
    line = logs.JsonFormatter([odd]).format(record("auth %s refused", odd))
    assert json.loads(line)["message"] == "auth **** refused"
