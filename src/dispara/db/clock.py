"""The database's clock, which every time decision uses: workers on hosts with skewed clocks agree."""

from __future__ import annotations

from datetime import datetime

from dispara.db import Connection
from dispara.db.queries import q


def db_now(conn: Connection) -> datetime:
    row = conn.execute(q("db_now")).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment
