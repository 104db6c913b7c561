"""Which Evolution server and key a tenant's messages go to under `--all-tenants`."""

from __future__ import annotations

from pydantic import SecretStr

from dispara.config import EvolutionConfig, Settings, reveal
from dispara.queue.tenancy import evolution_settings

GLOBAL = Settings(evolution=EvolutionConfig(url="https://evo.example.com", api_key=SecretStr("global-key")))


def _server(values: dict[str, str]) -> tuple[str | None, str | None]:
    evolution = evolution_settings(GLOBAL, values).evolution
    return evolution.url, reveal(evolution.api_key)


def test_a_tenant_without_settings_uses_the_global_server_and_key() -> None:
    assert _server({}) == ("https://evo.example.com", "global-key")


def test_a_key_alone_is_for_the_global_server() -> None:
    assert _server({"evolution-apikey": "own-key"}) == ("https://evo.example.com", "own-key")


def test_a_server_of_its_own_never_receives_the_global_key() -> None:
    assert _server({"evolution-url": "https://elsewhere.example"}) == ("https://elsewhere.example", None)
    own = {"evolution-url": "https://elsewhere.example", "evolution-apikey": "own-key"}
    assert _server(own) == ("https://elsewhere.example", "own-key")
