"""Reading an iterator a few chunks ahead in a thread, so that preparing the next rows (Python, the GIL)
overlaps the database's work on the last ones (its own process, on another core) while the consumer waits.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


@contextlib.contextmanager
def read_ahead(items: Iterable[T], size: int, depth: int = 2) -> Iterator[Iterator[list[T]]]:
    """Lists of up to `size` items, at most `depth` ready ahead; an error while reading is raised here."""
    ready: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce, args=(items, size, ready, stop), name="read-ahead", daemon=True
    )
    thread.start()
    try:
        yield _consume(ready)
    finally:
        stop.set()
        while thread.is_alive():  # unblock a put, then let the producer see `stop`
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


def _produce(items: Iterable[T], size: int, ready: queue.Queue[object], stop: threading.Event) -> None:
    try:
        chunk: list[T] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == size:
                if stop.is_set():
                    return
                ready.put(chunk)
                chunk = []
        ready.put(chunk)
        ready.put(_DONE)
    except BaseException as exc:  # handed to the consumer's thread, which raises it
        ready.put(exc)


def _consume(ready: queue.Queue[object]) -> Iterator[list[T]]:
    while True:
        got = ready.get()
        if got is _DONE:
            return
        if isinstance(got, BaseException):
            raise got
        chunk: list[T] = got  # type: ignore[assignment]
        if chunk:
            yield chunk
