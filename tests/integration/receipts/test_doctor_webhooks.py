"""`dispara doctor` reports instances whose Evolution webhook is wrong, and those Evolution reported down."""

from __future__ import annotations

import psycopg
import pytest
from pytest_httpx import HTTPXMock

from dispara.receipts import setup
from tests.integration.test_doctor import EVO, EVO_KEY, env, seed, statuses

__all__ = ["env"]
SECRET = "hook-secret-0123456789abcdef0123456789"
PUBLIC = "https://dispara.example.com"


def test_doctor_flags_a_webhook_that_points_elsewhere(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], httpx_mock: HTTPXMock, db_dsn: str
) -> None:
    seed(db_dsn)
    with psycopg.connect(db_dsn) as conn:  # what a `logout.instance` webhook leaves behind
        tid = conn.execute("SELECT id FROM tenants WHERE name = 'default'").fetchone()
        assert tid is not None
        conn.execute(
            "INSERT INTO instances (tenant_id, name, paused_until, pause_reason, webhook_paused) "
            "VALUES (%s, 'vendas-1', now() + interval '10 years', "
            "'Evolution: logged out of WhatsApp (logout.instance)', true)",
            (tid[0],),
        )
    for name, value in {
        "EVOLUTION_API_URL": EVO,
        "EVOLUTION_API_KEY": EVO_KEY,
        "EVOLUTION_WEBHOOK_SECRET": SECRET,
        "DISPARA_PUBLIC_URL": PUBLIC,
    }.items():
        env.setenv(name, value)
    httpx_mock.add_response(url=f"{EVO}/instance/fetchInstances", json=[], is_optional=True)
    httpx_mock.add_response(
        url=f"{EVO}/instance/connectionState/vendas-1",
        json={"instance": {"instanceName": "vendas-1", "state": "open"}},
        is_optional=True,
    )
    found = {
        "enabled": True,
        "url": "https://old.example.com/hook",
        "headers": {"X-Dispara-Secret": SECRET},
        "events": list(setup.EVENTS),
    }
    httpx_mock.add_response(url=f"{EVO}/webhook/find/vendas-1", json=found)
    results = statuses(capsys)
    check = results["evolution webhook vendas-1"]
    assert check["status"] == "fail"
    assert check["detail"] == "webhook points elsewhere (https://old.example.com/hook)"
    assert check["hint"] == "run `dispara evolution webhook setup --instance vendas-1`"
    paused = results["evolution instance vendas-1 paused"]
    assert (paused["status"], paused["detail"]) == (
        "fail",
        "Evolution: logged out of WhatsApp (logout.instance)",
    )
