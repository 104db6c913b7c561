"""`dispara evolution webhook setup`: shows what it sets, asks, sets only what differs, hides the secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from dispara.receipts import setup
from tests.conftest import _isolate
from tests.helpers import run_cli

EVO = "http://evo.test"
SECRET = "hook-secret-0123456789abcdef0123456789"
PUBLIC = "https://dispara.example.com"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolate(monkeypatch, tmp_path)
    for name, value in {
        "EVOLUTION_API_URL": EVO,
        "EVOLUTION_API_KEY": "evo-key-0123456789",
        "EVOLUTION_WEBHOOK_SECRET": SECRET,
        "DISPARA_PUBLIC_URL": PUBLIC,
    }.items():
        monkeypatch.setenv(name, value)


def _right() -> dict[str, object]:
    return {
        "enabled": True,
        "url": f"{PUBLIC}/evolution/webhook",
        "headers": {"X-Dispara-Secret": SECRET},
        "events": list(setup.EVENTS),
        "webhookByEvents": False,
    }


def test_all_sets_only_the_instances_that_differ(
    httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    httpx_mock.add_response(
        url=f"{EVO}/instance/fetchInstances",
        json=[{"name": "loja-1"}, {"instance": {"instanceName": "loja-2"}}],
    )
    httpx_mock.add_response(url=f"{EVO}/webhook/find/loja-1", json=_right())
    elsewhere = {**_right(), "url": "https://old.example.com/evolution/webhook/s/old-secret?x=1"}
    httpx_mock.add_response(url=f"{EVO}/webhook/find/loja-2", json=elsewhere)
    httpx_mock.add_response(method="POST", url=f"{EVO}/webhook/set/loja-2", json={})
    result = run_cli(capsys, "evolution", "webhook", "setup", "--all", "--yes")
    assert result.code == 0, result.err
    assert "loja-1: already set" in result.out
    assert "loja-2: webhook points elsewhere (https://old.example.com/evolution/webhook/s/****)" in result.out
    assert SECRET not in result.out + result.err and "old-secret" not in result.out
    (sent,) = [r for r in httpx_mock.get_requests() if r.method == "POST"]
    assert json.loads(sent.content) == {
        "webhook": {
            "enabled": True,
            "url": f"{PUBLIC}/evolution/webhook",
            "headers": {"X-Dispara-Secret": SECRET},
            "byEvents": False,
            "base64": False,
            "events": [
                "MESSAGES_UPSERT",
                "MESSAGES_UPDATE",
                "CONNECTION_UPDATE",
                "LOGOUT_INSTANCE",
                "STATUS_INSTANCE",
            ],
        }
    }


def test_without_yes_and_no_terminal_it_refuses_and_sets_nothing(
    httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    httpx_mock.add_response(url=f"{EVO}/webhook/find/loja-1", json=None)
    result = run_cli(capsys, "evolution", "webhook", "setup", "--instance", "loja-1")
    assert result.code == 4 and "1 webhook(s) to set: pass --yes to confirm" in result.err
    assert "loja-1: no webhook" in result.out
    assert all(r.method == "GET" for r in httpx_mock.get_requests())


def test_it_needs_the_public_url_and_one_of_instance_or_all(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "evolution", "webhook", "setup").code == 2
    monkeypatch.delenv("DISPARA_PUBLIC_URL")
    result = run_cli(capsys, "evolution", "webhook", "setup", "--all")
    assert result.code == 3 and "DISPARA_PUBLIC_URL" in result.err


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"enabled": False}, "webhook disabled"),
        ({"headers": {"x-dispara-secret": "old"}}, "webhook without the right X-Dispara-Secret header"),
        (
            {"events": ["MESSAGES_UPSERT"]},
            "webhook misses events MESSAGES_UPDATE, CONNECTION_UPDATE, LOGOUT_INSTANCE, STATUS_INSTANCE",
        ),
        ({"events": []}, None),  # every event
        ({"webhookByEvents": True}, "webhook has byEvents on"),
    ],
)
def test_problem(change: dict[str, object], problem: str | None) -> None:
    from dispara.config import load_config

    want = setup.wanted(load_config().settings)
    assert setup.problem({**_right(), **change}, want) == problem
