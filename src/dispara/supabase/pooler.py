"""Supabase's transaction pooler: no LISTEN and no server-side prepared statements through it.

A transaction pooler hands each transaction to whichever server connection is free, so a LISTEN hears
nothing afterwards and a statement prepared on one connection is missing on the next.
"""

from __future__ import annotations

import logging
from typing import Any, LiteralString

import psycopg
from psycopg.conninfo import conninfo_to_dict

from dispara.db import Connection

TRANSACTION_POOLER_PORT = "6543"
log = logging.getLogger("dispara.db")
_warned: set[str] = set()


def is_transaction_pooler(dsn: str) -> bool:
    """Whether the DSN points at Supabase's transaction pooler (it listens on port 6543)."""
    try:
        port = str(conninfo_to_dict(dsn).get("port") or "")
    except psycopg.ProgrammingError:
        return False
    return TRANSACTION_POOLER_PORT in port.split(",")


def connect_options(dsn: str) -> dict[str, Any]:
    """psycopg options for this DSN: through the transaction pooler, never prepare a statement."""
    return {"prepare_threshold": None} if is_transaction_pooler(dsn) else {}


def listen(conn: Connection, statement: LiteralString, *, then: str) -> bool:
    """LISTEN, or say once why not and return False (the caller polls): `then` is how often it will."""
    reason = None
    if str(conn.info.port) == TRANSACTION_POOLER_PORT:
        reason = "the transaction pooler (port 6543) cannot LISTEN"
    else:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            conn.rollback()
            reason = f"LISTEN failed ({type(exc).__name__})"
    if reason is None:
        return True
    if then not in _warned:
        _warned.add(then)
        log.warning("%s: polling %s instead; the session pooler (port 5432) can", reason, then)
    return False
