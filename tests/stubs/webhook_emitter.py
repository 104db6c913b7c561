"""Evolution's side of the webhooks for e2e tests and the benchmark: receipt plans shaped like a real
campaign's (duplicates, out of order), and a client that POSTs them to `dispara serve` concurrently.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.stubs import evolution_events as ev


@dataclass
class Plan:
    """Webhook bodies in the order they will be posted, and what they should add up to."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    delivered: set[tuple[str, str]] = field(default_factory=set)
    read: set[tuple[str, str]] = field(default_factory=set)


def receipt_plan(
    sent: Sequence[tuple[str, str]],
    *,
    seed: int = 7,
    delivered_rate: float = 0.9,
    read_rate: float = 0.6,
    duplicate_rate: float = 0.1,
    reorder_rate: float = 0.1,
) -> Plan:
    """SERVER_ACK, then DELIVERY_ACK for some and READ for some of those, per (instance, key id) sent.

    `duplicate_rate` of the bodies are posted twice (Evolution retrying the same body);
    `reorder_rate` of the messages get their receipts in reverse (READ before DELIVERY_ACK).
    """
    rng = random.Random(seed)
    plan = Plan()
    counter = 0
    for instance, key in sent:
        steps = ["SERVER_ACK"]
        if rng.random() < delivered_rate:
            steps.append("DELIVERY_ACK")
            plan.delivered.add((instance, key))
            if rng.random() < read_rate:
                steps.append("READ")
                plan.read.add((instance, key))
        if rng.random() < reorder_rate:
            steps.reverse()
        for step in steps:
            counter += 1
            body = ev.receipt(instance, key, step) | {
                "date_time": f"2025-12-10T11:{counter // 1000 % 60:02d}:00.{counter % 1000:03d}Z"
            }
            plan.bodies.append(body)
            if rng.random() < duplicate_rate:
                plan.bodies.append(body)
    return plan


class Emitter:
    """POSTs webhook bodies to a `dispara serve` URL with the secret header, from a few threads."""

    def __init__(self, url: str, secret: str, *, threads: int = 8) -> None:
        self.url = url.rstrip("/") + "/evolution/webhook"
        self.headers = {"X-Dispara-Secret": secret, "Content-Type": "application/json"}
        self.threads = threads

    def post_all(self, bodies: Iterable[dict[str, Any]]) -> list[int]:
        """The status of each POST, in order; every body is posted exactly once."""
        raws = [json.dumps(b).encode() for b in bodies]
        chunks = [raws[i :: self.threads] for i in range(self.threads)]
        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(self._post_chunk, chunks))
        return [s for chunk in results for s in chunk]

    def _post_chunk(self, raws: list[bytes]) -> list[int]:
        with httpx.Client(timeout=30) as client:
            return [client.post(self.url, content=raw, headers=self.headers).status_code for raw in raws]
