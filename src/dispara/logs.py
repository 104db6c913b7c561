"""Log output of the CLI: text lines or one JSON object per line, both with every known secret masked.

Structured fields (worker, job, message, campaign, outcome...) travel in `extra=` on the log call.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from dispara.redact import redact_text

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
# Fields a log call may pass in `extra=`, in the order a JSON line shows them.
FIELDS = (
    "worker",
    "job_id",
    "message_id",
    "campaign_id",
    "campaign",
    "instance",
    "task_type",
    "attempt",
    "outcome",
    "error_kind",
)
_context: dict[str, str] = {}  # fields every record gets unless its call says otherwise


def bind(**fields: str) -> None:
    """Fields added to every later record of this process (a worker's id)."""
    _context.update(fields)


class _Redacting(logging.Formatter):
    def __init__(
        self, secrets: Iterable[str] = (), fmt: str | None = None, datefmt: str | None = None
    ) -> None:
        super().__init__(fmt, datefmt)
        self.secrets = tuple(secrets)

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = (*self.secrets, *(s for s in secrets if s and s not in self.secrets))


class TextFormatter(_Redacting):
    """`HH:MM:SS LEVEL logger message`, masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, "%(asctime)s %(levelname)s %(name)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(_Redacting):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the known fields, exc."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        given = tuple(secrets)
        # The line is masked once, after encoding: a secret with a quote or a backslash is escaped there.
        super().__init__((*given, *(json.dumps(s, ensure_ascii=False)[1:-1] for s in given)))

    def add(self, secrets: Iterable[str]) -> None:
        given = tuple(secrets)
        super().add((*given, *(json.dumps(s, ensure_ascii=False)[1:-1] for s in given)))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in FIELDS:
            value = fields.get(name, _context.get(name))
            if value is not None:
                entry[name] = value if isinstance(value, int | float) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False))


def level_for(verbose: int, debug: bool, floor: int = logging.WARNING) -> int:
    """-v: INFO, -vv or --debug: DEBUG; else `floor`."""
    if debug or verbose >= 2:
        return logging.DEBUG
    return logging.INFO if verbose == 1 else floor


def configure(fmt: LogFormat, level: int, secrets: Iterable[str] = ()) -> None:
    """Send the `dispara` loggers to stderr in `fmt`, at `level`, masking `secrets`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger("dispara")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def mask(secrets: Iterable[str]) -> None:
    """Mask these too from now on: secrets read after start-up (a tenant's own keys)."""
    wanted = tuple(secrets)
    for handler in logging.getLogger("dispara").handlers:
        if isinstance(handler.formatter, _Redacting):
            handler.formatter.add(wanted)
