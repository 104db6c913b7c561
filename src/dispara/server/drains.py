"""One /dispatch drain at a time per serve process: the insert trigger may fire many times a second, and
each drain is a whole worker (threads, connections); a wake-up during a drain asks for one more round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DrainGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def run(self, drain: Callable[[], T]) -> T | None:
        """The last round's result; None at once when a drain is already running (it will run again)."""
        with self._lock:
            if self._running:
                # The running drain may be past its last claim: one more round takes what this caller saw.
                self._again = True
                return None
            self._running = True
        try:
            while True:
                result = drain()
                with self._lock:
                    if not self._again:
                        return result
                    self._again = False
        finally:
            with self._lock:
                self._running = False
