"""Group commit for delivery outcomes: the outcomes of concurrent deliveries are stored together.

Each outcome costs a turn on its campaign's row (the exact counters) and a commit (an fsync). One
transaction for whatever arrived meanwhile keeps both to one per group, and every delivery still answers
QStash only after its own outcome is durable. A group that fails is stored again outcome by outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg_pool import ConnectionPool

from dispara import summary
from dispara.db import Connection
from dispara.queue.backoff import RetryPolicy
from dispara.queue.complete import BatchResult, apply_message_outcomes
from dispara.queue.model import Outcome

log = logging.getLogger("dispara.serve")

MAX_GROUP = 500
T = TypeVar("T")

Before = Callable[[Connection, list[tuple[Outcome, Any]]], None]
"""Runs once in the group's transaction before its outcomes are stored, with each one's `extra`
(releasing the instance leases in one statement)."""


def groups(items: queue.Queue[T | None] | queue.SimpleQueue[T | None], limit: int) -> Iterator[list[T]]:
    """What arrived meanwhile, up to `limit` at a time, until a None is taken (after its group)."""
    while True:
        first = items.get()
        if first is None:
            return
        group = [first]
        while len(group) < limit:
            try:
                more = items.get_nowait()
            except queue.Empty:
                break
            if more is None:
                yield group
                return
            group.append(more)
        yield group


@dataclass
class _Item:
    outcome: Outcome
    extra: Any
    done: Future[bool]  # whether the outcome moved its message


class GroupCommit:
    """A thread that stores outcomes handed to `store`, which blocks until its outcome is committed."""

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        policy: RetryPolicy,
        on_stored: Callable[[Connection, BatchResult], None],
        before: Before,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.on_stored = on_stored
        self.before = before
        self.items: queue.Queue[_Item | None] = queue.Queue()
        self.compactor = summary.Compactor()
        self.thread = threading.Thread(target=self._loop, name="dispara-serve-commit", daemon=True)
        self.thread.start()

    def store(self, outcome: Outcome, extra: Any, timeout: float = 60.0) -> bool:
        """Store one outcome with the others arriving meanwhile; True if its message moved."""
        item = _Item(outcome, extra, Future())
        self.items.put(item)
        return item.done.result(timeout)

    def close(self) -> None:
        self.items.put(None)
        self.thread.join(10)

    def _loop(self) -> None:
        for group in groups(self.items, MAX_GROUP):
            self._store(group)

    def _store(self, group: list[_Item]) -> None:
        try:
            result = self._apply(group)
        except Exception:
            if len(group) == 1:
                log.exception("could not store a delivery outcome")
                group[0].done.set_exception(RuntimeError("outcome not stored"))
                return
            log.warning("storing %d outcomes together failed; storing them one by one", len(group))
            for item in group:
                self._store([item])
            return
        moved = {f.job.id for f in result.finished}
        for item in group:
            item.done.set_result(item.outcome.job.id in moved)
        if self.compactor.due():
            with self.pool.connection() as conn:
                self.compactor.maybe(conn)

    def _apply(self, group: list[_Item]) -> BatchResult:
        with self.pool.connection() as conn, conn.transaction():
            self.before(conn, [(i.outcome, i.extra) for i in group])
            result = apply_message_outcomes(conn, [i.outcome for i in group], policy=self.policy)
            self.on_stored(conn, result)  # the job events, in the transaction that stores what they report
            return result
