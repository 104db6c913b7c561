"""OutboxSender: one JSON line per message, never interleaved across threads or processes."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from dispara.errors import TransientServiceError
from dispara.providers.base import OutgoingMessage, Sender
from dispara.providers.outbox import OutboxSender

# Long enough that a line is far above PIPE_BUF (4096): atomicity must not rely on small writes.
LONG_TEXT = "Olá {nome}! Promoção 🎉 " * 300


def message(n: int, *, writer: str = "t", text: str = LONG_TEXT) -> OutgoingMessage:
    return OutgoingMessage("sales", f"55119{n:08d}", "text", f"{writer}:{n}:{text}", None, None, None)


def read_lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]  # any interleaving breaks json.loads


def test_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "outbox.jsonl"
    with OutboxSender(path) as outbox:
        sender: Sender = outbox
        result = sender.send(
            OutgoingMessage(
                "sales", "5511999990000", "image", None, "https://x/a.jpg", "Oi", "a.jpg", "image/jpeg"
            )
        )
        assert sender.instance_state("sales") == "open"
    assert result.key_id.startswith("outbox-") and len(result.key_id) == len("outbox-") + 32
    assert result.response["outbox"] is True
    assert result.response["key_id"] == result.key_id
    [line] = read_lines(path)
    assert set(line) == {
        "ts",
        "instance",
        "number",
        "type",
        "text",
        "media_url",
        "caption",
        "file_name",
        "key_id",
    }
    assert line["instance"] == "sales" and line["number"] == "5511999990000" and line["type"] == "image"
    assert line["media_url"] == "https://x/a.jpg" and line["caption"] == "Oi" and line["file_name"] == "a.jpg"
    assert line["text"] is None and line["key_id"] == result.key_id and isinstance(line["ts"], float)


def test_key_ids_are_unique_and_unicode_is_kept(tmp_path: Path) -> None:
    with OutboxSender(tmp_path / "o.jsonl") as outbox:
        ids = {outbox.send(message(i, text="ção 🎉")).key_id for i in range(100)}
    assert len(ids) == 100
    assert "ção 🎉" in (tmp_path / "o.jsonl").read_text(encoding="utf-8")


def test_label_says_it_is_the_outbox(tmp_path: Path) -> None:
    with OutboxSender(tmp_path / "o.jsonl") as outbox:
        assert outbox.label == (
            f"outbox (no EVOLUTION_API_URL set): messages are written to {tmp_path / 'o.jsonl'}, not sent"
        )
        assert repr(outbox).startswith("OutboxSender(")


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text('{"earlier": true}\n')
    with OutboxSender(path) as outbox:
        outbox.send(message(1, text="x"))
    assert len(read_lines(path)) == 2


def test_send_after_close_is_a_clear_error(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path / "o.jsonl")
    outbox.close()
    outbox.close()  # idempotent
    with pytest.raises(TransientServiceError, match="closed"):
        outbox.send(message(1))


def test_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    threads, per_thread = 8, 150
    with OutboxSender(path) as outbox:

        def work(t: int) -> None:
            for i in range(per_thread):
                outbox.send(message(i, writer=f"thread{t}"))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    lines = read_lines(path)
    assert len(lines) == threads * per_thread
    assert len({line["key_id"] for line in lines}) == threads * per_thread
    for t in range(threads):
        assert sum(line["text"].startswith(f"thread{t}:") for line in lines) == per_thread


def _write_from_process(path: str, writer: str, count: int, start: Any) -> None:
    # Each process opens its own sender on the same file, as two `dispara worker` processes would.
    with OutboxSender(path) as outbox:
        start.wait(30)  # all writers begin together, so the appends really overlap
        for i in range(count):
            outbox.send(message(i, writer=writer))


def test_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    per_process = 600
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded pytest process
    start = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_write_from_process, args=(str(path), f"proc{p}", per_process, start))
        for p in range(2)
    ]
    for p in procs:
        p.start()
    with OutboxSender(path) as outbox:  # and this process at the same time
        start.wait(30)
        for i in range(per_process):
            outbox.send(message(i, writer="parent"))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = read_lines(path)
    assert len(lines) == 3 * per_process
    for writer in ("proc0", "proc1", "parent"):
        got = sorted(
            int(line["text"].split(":")[1]) for line in lines if line["text"].startswith(f"{writer}:")
        )
        assert got == list(range(per_process))
