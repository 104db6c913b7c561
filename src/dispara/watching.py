"""Following a campaign: a snapshot on every change, woken by worker notifications, polling as a fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

from dispara.db import Connection
from dispara.status import Snapshot, snapshot
from dispara.supabase import pooler

CHANNEL = "dispara_campaign"
# A snapshot reads the campaign's summary (milliseconds at any size), but a slow database still must not
# be polled harder: waiting this many times as long as the last snapshot took keeps a watcher under a fifth
# of a database core, so watching a campaign never slows the workers sending it.
COST_FACTOR = 4.0


def _signature(snap: Snapshot) -> tuple[object, ...]:
    instances = tuple((i.name, i.sent, i.failed, i.pending, i.pause_reason) for i in snap.instances)
    # Whether anything is sending changes what an operator must do, even when no count moves.
    stalled = snap.stalled_since is not None
    return snap.status, tuple(sorted(snap.counts.items())), instances, tuple(snap.errors), stalled


def watch_campaign(
    conn: Connection, tenant_id: UUID, campaign_id: UUID, *, poll_s: float = 2.0, min_redraw_s: float = 0.0
) -> Iterator[Snapshot]:
    """Yield a snapshot whenever the campaign changes, the last one once it has finished.

    `conn` must be in autocommit mode: notifications are only delivered between transactions.
    """
    pooler.listen(conn, f"LISTEN {CHANNEL}", then=f"every {poll_s:g}s")
    last: tuple[object, ...] | None = None
    wanted = str(campaign_id)
    while True:
        started = time.monotonic()
        snap = snapshot(conn, tenant_id, campaign_id)
        cost = time.monotonic() - started
        signature = _signature(snap)
        if signature != last:
            last = signature
            yield snap
        if snap.finished:
            return
        _wait(conn, wanted, poll_s, max(min_redraw_s, COST_FACTOR * cost))


def _wait(conn: Connection, wanted: str, poll_s: float, min_redraw_s: float) -> None:
    for note in conn.notifies(timeout=poll_s):
        if note.payload == wanted:
            break
    if min_redraw_s:
        # Swallow the burst that follows: a fast campaign redraws a few times a second, not hundreds.
        for _ in conn.notifies(timeout=min_redraw_s):
            pass
