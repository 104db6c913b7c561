"""Following a campaign: a snapshot on every change, woken by worker notifications, polling as a fallback."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from dispara.db import Connection
from dispara.status import Snapshot, snapshot

CHANNEL = "dispara_campaign"


def _signature(snap: Snapshot) -> tuple[object, ...]:
    instances = tuple((i.name, i.sent, i.failed, i.pending, i.pause_reason) for i in snap.instances)
    return snap.status, tuple(sorted(snap.counts.items())), instances, tuple(snap.errors)


def watch_campaign(
    conn: Connection, tenant_id: UUID, campaign_id: UUID, *, poll_s: float = 2.0, min_redraw_s: float = 0.0
) -> Iterator[Snapshot]:
    """Yield a snapshot whenever the campaign changes, the last one once it has finished.

    `conn` must be in autocommit mode: notifications are only delivered between transactions.
    """
    conn.execute(f"LISTEN {CHANNEL}")
    last: tuple[object, ...] | None = None
    wanted = str(campaign_id)
    while True:
        snap = snapshot(conn, tenant_id, campaign_id)
        signature = _signature(snap)
        if signature != last:
            last = signature
            yield snap
        if snap.finished:
            return
        _wait(conn, wanted, poll_s, min_redraw_s)


def _wait(conn: Connection, wanted: str, poll_s: float, min_redraw_s: float) -> None:
    for note in conn.notifies(timeout=poll_s):
        if note.payload == wanted:
            break
    if min_redraw_s:
        # Swallow the burst that follows, so a fast campaign redraws a few times a second, not hundreds.
        for _ in conn.notifies(timeout=min_redraw_s):
            pass
