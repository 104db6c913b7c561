"""The local Evolution stub and a sender pointed at it, for the tests that need a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispara.providers.evolution import EvolutionSender
from tests.stubs.evolution_stub import EvolutionStub

STUB_KEY = "stub-test-key-0123456789"


@pytest.fixture
def stub() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=STUB_KEY) as server:
        yield server


@pytest.fixture
def stub_sender(stub: EvolutionStub) -> Iterator[EvolutionSender]:
    with EvolutionSender(stub.url, STUB_KEY, typing_delay_ms=0, timeout_extra_s=5) as sender:
        yield sender
