"""`dispara doctor` reports instances whose Evolution webhook is missing or points elsewhere."""

from __future__ import annotations

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
    check = statuses(capsys)["evolution webhook vendas-1"]
    assert check["status"] == "fail"
    assert check["detail"] == "webhook points elsewhere (https://old.example.com/hook)"
    assert check["hint"] == "run `dispara evolution webhook setup --instance vendas-1`"
