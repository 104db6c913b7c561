"""The queue gauges, read from the database at scrape time: depth per instance, paused instances."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dispara import metrics
from dispara.config import Settings
from tests.integration.queue.conftest import Conn, seed_campaign


def gauges(collector: metrics.QueueCollector) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for family in collector.collect():
        for sample in family.samples:
            found.setdefault(sample.name, {})[sample.labels.get("instance", "")] = sample.value
    return found


def test_depth_per_instance_and_paused_instances(conn: Conn, settings: Settings) -> None:
    seed_campaign(conn, 5, instances=["a", "b"])
    seed_campaign(conn, 2, instances=["c"])
    conn.execute("UPDATE instances SET paused_until = now() + interval '1 minute' WHERE name = 'c'")
    conn.execute("UPDATE jobs SET status = 'completed' WHERE id = (SELECT min(id) FROM jobs)")
    conn.commit()
    collector = metrics.QueueCollector(settings)
    try:
        found = gauges(collector)
    finally:
        collector.close()
    assert found["dispara_queue_depth"] == {"a": 2, "b": 2, "c": 2, "": 0}
    assert found["dispara_instances_paused"] == {"": 1}
    assert found["dispara_instance_paused"] == {"c": 1}


def test_an_unreachable_database_leaves_the_scrape_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = Settings(database_url="postgresql://nobody@127.0.0.1:1/x", data_dir=tmp_path)
    collector = metrics.QueueCollector(down)
    with caplog.at_level(logging.WARNING, logger="dispara.worker"):
        found = gauges(collector)
    assert found["dispara_instances_paused"] == {"": 0}
    assert "dispara_queue_depth" not in found
    assert any("metrics: reading the queue failed" in r.getMessage() for r in caplog.records)
