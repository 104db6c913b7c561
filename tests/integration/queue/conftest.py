"""Queue test data, written the way `campaign send` writes it, and helpers to run and watch a worker."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from dispara import summary
from dispara.config import EvolutionConfig, Settings, WebhookConfig, WorkerConfig
from dispara.queue.worker import WorkerSummary, run_worker
from tests.stubs.evolution_stub import EvolutionStub

Conn = psycopg.Connection[Any]
API_KEY = "stub-key-0123456789"
_phones = itertools.count(1)


@dataclass
class Seeded:
    tenant_id: UUID
    campaign_id: UUID
    message_ids: list[int]
    job_ids: list[int]
    phones: list[str]
    instances: list[str]


def tenant(conn: Conn, name: str = "default") -> UUID:
    row = conn.execute(
        "INSERT INTO tenants (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
        "RETURNING id",
        (name,),
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def seed_campaign(
    conn: Conn,
    n_messages: int,
    *,
    instances: Sequence[str] = ("inst-a",),
    delay: tuple[float, float] = (0, 0),
    retries: int = 2,
    daily_cap: int | None = None,
    status: str = "processing",
    tenant_name: str = "default",
    name: str | None = None,
    message_type: str = "text",
    phones: Sequence[str] | None = None,
    run_at_offset_s: float = 0.0,
    priority: int = 0,
    summarised: bool = True,
) -> Seeded:
    """A campaign with one queued message and one pending job per message, instances round-robin."""
    tid = tenant(conn, tenant_name)
    phone_list = (
        list(phones) if phones is not None else [f"5511{next(_phones):09d}" for _ in range(n_messages)]
    )
    assert len(phone_list) == n_messages
    row = conn.execute(
        """
        INSERT INTO campaigns (tenant_id, name, status, total_messages, instances, delay_min, delay_max,
                               retries, daily_cap, idempotency_key, started_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) RETURNING id
        """,
        (
            tid,
            name or f"camp-{uuid.uuid4().hex[:6]}",
            status,
            n_messages,
            list(instances),
            delay[0],
            delay[1],
            retries,
            daily_cap,
            uuid.uuid4().hex,
        ),
    ).fetchone()
    assert row is not None
    cid = row[0]
    for inst in instances:
        conn.execute(
            "INSERT INTO instances (tenant_id, name, day) "
            "VALUES (%s, %s, (now() AT TIME ZONE 'America/Sao_Paulo')::date) ON CONFLICT DO NOTHING",
            (tid, inst),
        )
    names = [instances[i % len(instances)] for i in range(n_messages)]
    is_text = message_type == "text"
    media = None if is_text else "https://example.com/files/pic.jpg"
    message_ids = [
        r[0]
        for r in conn.execute(
            """
            INSERT INTO message_logs (tenant_id, campaign_id, phone_number, message_content, message_type,
                                      media_url, instance_name, status, queued_at, seq)
            SELECT %s, %s, p, 'Olá ' || p, %s, %s, i, 'queued', now(), n
            FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(p, i, n)
            ORDER BY n
            RETURNING id
            """,
            (tid, cid, message_type, media, phone_list, names),
        ).fetchall()
    ]
    if summarised:  # a database from before the summary (migration 0010) has no such table
        summary.add_ingested(conn, tid, cid, Counter(names), "queued")
    payloads = [
        json.dumps(
            {
                "run_location": "supabase",
                "task_type": "send-message",
                "data": {"message_id": mid, "campaign_id": str(cid)},
            }
        )
        for mid in message_ids
    ]
    job_ids = [
        r[0]
        for r in conn.execute(
            """
            INSERT INTO jobs (tenant_id, payload, instance, campaign_id, message_id, max_attempts, run_at,
                              priority)
            SELECT %s, pl::jsonb, i, %s, m, %s, now() + make_interval(secs => %s), %s
            FROM unnest(%s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY AS u(pl, i, m, n)
            ORDER BY n
            RETURNING id
            """,
            (tid, cid, retries + 1, run_at_offset_s, priority, payloads, names, message_ids),
        ).fetchall()
    ]
    conn.commit()
    return Seeded(UUID(str(tid)), cid, message_ids, job_ids, phone_list, list(instances))


def campaign_state(conn: Conn, campaign_id: UUID) -> dict[str, Any]:
    """Counters on the campaign row next to the truth in message_logs; the summary must agree with it."""
    conn.commit()
    assert summary.verify(conn, campaign_id) == []
    row = conn.execute(
        "SELECT status, sent_count, failed_count, total_messages, completed_at, status_reason "
        "FROM campaigns WHERE id = %s",
        (campaign_id,),
    ).fetchone()
    assert row is not None
    by_status = dict(
        conn.execute(
            "SELECT status, count(*) FROM message_logs WHERE campaign_id = %s GROUP BY status", (campaign_id,)
        ).fetchall()
    )
    conn.commit()
    return {
        "status": row[0],
        "sent_count": row[1],
        "failed_count": row[2],
        "total": row[3],
        "completed_at": row[4],
        "reason": row[5],
        "messages": by_status,
    }


def job_rows(conn: Conn, job_ids: Sequence[int]) -> list[dict[str, Any]]:
    conn.commit()
    cur = conn.execute(
        "SELECT id, status, attempts, max_attempts, last_error, error_kind, run_at, locked_by, result, "
        "started_at, finished_at FROM jobs WHERE id = ANY(%s) ORDER BY id",
        (list(job_ids),),
    )
    cols = [d.name for d in cur.description or []]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def scalar(conn: Conn, sql: str, *params: Any) -> Any:
    conn.commit()
    row = conn.execute(sql, params).fetchone()
    conn.commit()
    return None if row is None else row[0]


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll state (the database, a stub's log) until `predicate` holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def make_settings(
    db_dsn: str,
    data_dir: Path,
    *,
    evolution_url: str | None = None,
    lease_s: float = 30.0,
    poll_s: float = 0.2,
    grace_s: float = 5.0,
    batch_size: int = 100,
    concurrency: int = 4,
    webhook: WebhookConfig | None = None,
    typing_delay_ms: int = 0,
) -> Settings:
    return Settings(
        database_url=db_dsn,
        data_dir=data_dir,
        evolution=EvolutionConfig(
            url=evolution_url, api_key=API_KEY if evolution_url else None, typing_delay_ms=typing_delay_ms
        ),
        worker=WorkerConfig(
            concurrency=concurrency,
            batch_size=batch_size,
            poll_interval_s=poll_s,
            lease_s=lease_s,
            grace_s=grace_s,
        ),
        webhook=webhook or WebhookConfig(),
    )


@dataclass
class RunningWorker:
    thread: threading.Thread
    stop: threading.Event
    result: list[WorkerSummary] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)

    def join(self, timeout: float = 60.0) -> WorkerSummary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop in time"
        if self.error:
            raise self.error[0]
        return self.result[0]


def start_worker(settings: Settings, **kwargs: Any) -> RunningWorker:
    """run_worker in a thread, as a second process would run it (own connections, own worker id)."""
    stop = kwargs.pop("stop_event", None) or threading.Event()
    running = RunningWorker(threading.Thread(target=lambda: None), stop)

    def target() -> None:
        try:
            running.result.append(run_worker(settings, stop_event=stop, **kwargs))
        except BaseException as exc:  # surfaced by join()
            running.error.append(exc)

    running.thread = threading.Thread(target=target, name="test-worker", daemon=True)
    running.thread.start()
    return running


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def evo_settings(db_dsn: str, tmp_path: Path, stub: EvolutionStub) -> Settings:
    return make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url)


@pytest.fixture
def outbox_settings(db_dsn: str, tmp_path: Path) -> Settings:
    return make_settings(db_dsn, tmp_path / "data")


class Receiver:
    """A tiny webhook receiver on 127.0.0.1: records JSON bodies; `status`/`hold` make it fail or hang."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.hold = threading.Event()
        self.hold.set()  # set = answer at once
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                receiver.hold.wait(30)
                with receiver.lock:
                    receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.hold.set()
    r.server.shutdown()
    r.server.server_close()
