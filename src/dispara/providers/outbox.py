"""The embedded default sender: with no Evolution URL set, messages go to a JSON-lines file, not to WhatsApp.

Safe for many threads and processes appending at once: one `os.write` per line on an O_APPEND descriptor.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from dispara import jsontext
from dispara.errors import TransientServiceError
from dispara.providers.base import InstanceState, OutgoingMessage, SendResult


def outbox_path(data_dir: Path) -> Path:
    """Where the outbox lives under the data dir: the worker writes it, doctor and the docs point at it."""
    return data_dir / "outbox.jsonl"


class OutboxSender:
    """A `Sender` that appends each message to `path` and reports it as sent, clearly labelled as such."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self.label = f"outbox (no EVOLUTION_API_URL set): messages are written to {self.path}, not sent"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND makes each write land atomically at the current end of file, even across processes.
        # No fsync per line: the outbox is a demo/dry-run sink, and fsync would cap it at disk latency.
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        # Held only so close() can never race a write onto a recycled descriptor number.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutboxSender({str(self.path)!r})"

    def __enter__(self) -> OutboxSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg: OutgoingMessage) -> SendResult:
        key_id = f"outbox-{uuid.uuid4().hex}"
        record: dict[str, Any] = {
            "ts": time.time(),
            "instance": msg.instance,
            "number": msg.number,
            "type": msg.message_type,
            "text": msg.text,
            "media_url": msg.media_url,
            "caption": msg.caption,
            "file_name": msg.file_name,
            "key_id": key_id,
        }
        line = (jsontext.dumps(record) + "\n").encode()
        self._append(line)
        return SendResult(key_id=key_id, response={"outbox": True, "path": str(self.path), **record})

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise TransientServiceError(f"outbox {self.path} is closed")
            try:
                written = os.write(self._fd, line)
            except OSError as exc:
                raise TransientServiceError(f"cannot write to outbox {self.path}: {exc.strerror}") from exc
        if written != len(line):
            # Only a full disk or a signal short-writes a regular file; the rest could interleave, so fail.
            raise TransientServiceError(f"short write to outbox {self.path} ({written}/{len(line)} bytes)")

    def instance_state(self, instance: str) -> InstanceState:
        return "open"

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
