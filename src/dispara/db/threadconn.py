"""One autocommit connection per thread, opened on first use and re-opened when it breaks."""

from __future__ import annotations

import threading

from dispara.config import Settings
from dispara.db import Connection
from dispara.db.connect import connect


class ThreadConnections:
    """Call it for this thread's connection; never close what it returns, `close()` closes them all."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Connection] = []

    def __call__(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self._settings, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
