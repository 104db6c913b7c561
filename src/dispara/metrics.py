"""Prometheus metrics of a worker: what it sent, failed and retried, how long claims take, and (read
from the database when scraped, at most every few seconds) the queue depth per instance and the
paused instances.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import TYPE_CHECKING, ParamSpec, TypeVar
from uuid import UUID

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dispara.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from dispara.config import Settings
    from dispara.db import Connection
    from dispara.queue.complete import BatchResult

log = logging.getLogger("dispara.worker")

REGISTRY = CollectorRegistry()
SENDS = Counter("dispara_sends", "Messages Evolution accepted.", ["instance"], registry=REGISTRY)
DONE = Counter("dispara_jobs_done", "Jobs other than sends that completed.", ["task_type"], registry=REGISTRY)
FAILURES = Counter("dispara_failures", "Jobs failed for good, by error kind.", ["kind"], registry=REGISTRY)
RETRIES = Counter("dispara_retries", "Failed attempts to retry later (transient).", registry=REGISTRY)
RELEASED = Counter("dispara_released", "Jobs put back unsent, no attempt spent.", registry=REGISTRY)
LOST = Counter(
    "dispara_leases_lost", "Outcomes not saved: the lease was another worker's.", registry=REGISTRY
)
CLAIMED = Counter(
    "dispara_claimed_runs", "Runs claimed (one instance's jobs, or an unpaced job).", registry=REGISTRY
)
CLAIM_SECONDS = Histogram(
    "dispara_claim_seconds",
    "Time one claim round takes, database round trips included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
_LABELLED = {"sent": SENDS, "done": DONE, "failed": FAILURES}
_PLAIN = {"retry": RETRIES, "release": RELEASED}
QUEUE_READ_EVERY_S = 5.0  # a scrape more frequent than this gets the previous reading

P = ParamSpec("P")
R = TypeVar("R")


def record(result: BatchResult) -> None:
    """Count the outcomes a completer has just stored (tallied first: a labelled inc takes a lock)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for o in result.applied:
        if o.kind == "sent":
            counts["sent", o.job.instance or ""] += 1
        elif o.kind == "done":
            counts["done", o.job.task_type] += 1
        elif o.kind == "failed":
            counts["failed", o.error_kind or "unknown"] += 1
        else:
            counts[o.kind, ""] += 1
    for (kind, label), n in counts.items():
        if kind in _LABELLED:
            _LABELLED[kind].labels(label).inc(n)
        elif kind in _PLAIN:
            _PLAIN[kind].inc(n)
    LOST.inc(len(result.lost))


def timed_claim(claim: Callable[P, int]) -> Callable[P, int]:
    """Decorates the worker's claim round (which returns the runs claimed): its latency and count."""

    @wraps(claim)
    def timed(*args: P.args, **kwargs: P.kwargs) -> int:
        started = time.perf_counter()
        runs = claim(*args, **kwargs)
        CLAIM_SECONDS.observe(time.perf_counter() - started)
        CLAIMED.inc(runs)
        return runs

    return timed


class QueueCollector(Collector):
    """Queue depth per instance and paused instances of the tenant, read on its own connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: Connection | None = None
        self.tenant: UUID | None = None
        self.lock = threading.Lock()
        self.read_at = float("-inf")
        self.depth: list[tuple[str, int]] = []
        self.paused: list[str] = []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            if time.monotonic() - self.read_at >= QUEUE_READ_EVERY_S:
                self.read()
            depth, paused = self.depth, self.paused
        queued = GaugeMetricFamily(
            "dispara_queue_depth", "Pending jobs per instance ('' : unpaced jobs).", labels=["instance"]
        )
        for instance, count in depth:
            queued.add_metric([instance], count)
        yield queued
        yield GaugeMetricFamily("dispara_instances_paused", "Instances resting now.", value=len(paused))
        each = GaugeMetricFamily(
            "dispara_instance_paused", "1 for each instance resting now.", labels=["instance"]
        )
        for name in paused:
            each.add_metric([name], 1)
        yield each

    def read(self) -> None:
        from dispara.db.connect import connect
        from dispara.db.queries import q
        from dispara.tenants import tenant_id

        try:
            if self.conn is None or self.conn.closed or self.conn.broken:
                self.conn = connect(self.settings, autocommit=True)
            if self.tenant is None:
                self.tenant = tenant_id(self.conn, self.settings.tenant)
            params = {"tenant_id": self.tenant}
            self.depth = [(str(i), int(n)) for i, n in self.conn.execute(q("metrics_queue_depth"), params)]
            self.paused = [str(r[0]) for r in self.conn.execute(q("metrics_paused_instances"), params)]
            self.read_at = time.monotonic()
        except (psycopg.Error, DatabaseError) as exc:  # the previous reading stays; try at the next scrape
            log.warning("metrics: reading the queue failed: %s", exc)
            if self.conn is not None:
                self.conn.close()

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()


class MetricsServer:
    """The /metrics endpoint of one worker process, on a thread of its own."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, queue: QueueCollector) -> None:
        self.server, self.thread, self.queue = server, thread, queue

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        REGISTRY.unregister(self.queue)
        self.queue.close()


def serve(settings: Settings, port: int, host: str) -> MetricsServer:
    """Serve the metrics on host:port (port 0: any free one, see `.port`)."""
    queue = QueueCollector(settings)
    REGISTRY.register(queue)
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        REGISTRY.unregister(queue)
        raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror}") from exc
    return MetricsServer(server, thread, queue)
