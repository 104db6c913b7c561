"""Audio jobs end to end on the real database: local storage, stub ElevenLabs/Groq/Evolution servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispara.config import AudioConfig, ElevenLabsConfig, GroqConfig, Settings, WebhookConfig
from dispara.queue.worker import WorkerSummary, run_worker
from tests.integration.queue import conftest as queue_fixtures
from tests.integration.queue.conftest import API_KEY, make_settings
from tests.stubs.audio_stubs import ElevenLabsStub, ExternalWorkerStub, GroqStub
from tests.stubs.evolution_stub import EvolutionStub

receiver = queue_fixtures.receiver  # the webhook receiver fixture, shared

XI_KEY = "xi-test-key-0123456789"
GROQ_KEY = "gsk_test_0123456789"
NUMBER = "5511987654321"
INSTANCE = "audio-inst"


@pytest.fixture(scope="module")
def eleven() -> Iterator[ElevenLabsStub]:
    with ElevenLabsStub(api_key=XI_KEY) as stub:
        yield stub


@pytest.fixture(scope="module")
def groq() -> Iterator[GroqStub]:
    with GroqStub(api_key=GROQ_KEY) as stub:
        yield stub


@pytest.fixture
def fresh(eleven: ElevenLabsStub, groq: GroqStub) -> None:
    """Module-scoped stubs start each test with no records and no queued errors."""
    for stub in (eleven, groq):
        with stub.lock:
            stub._records.clear()
            stub._errors.clear()
    eleven.opus = True


@pytest.fixture
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as stub:
        yield stub


def audio_settings(
    db_dsn: str,
    data_dir: Path,
    *,
    eleven: ElevenLabsStub,
    groq: GroqStub,
    evolution: EvolutionStub | None,
    keys: bool = True,
    webhook: WebhookConfig | None = None,
    **audio: Any,
) -> Settings:
    base = make_settings(
        db_dsn, data_dir, evolution_url=evolution.url if evolution else None, webhook=webhook
    )
    updates: dict[str, Any] = {
        "elevenlabs": ElevenLabsConfig(url=eleven.url, api_key=XI_KEY if keys else None, voice_id="voice-1"),
        "groq": GroqConfig(url=groq.url, api_key=GROQ_KEY if keys else None),
        "audio": AudioConfig(instance=INSTANCE, **audio),
    }
    return base.model_copy(update=updates)


@pytest.fixture
def settings_for(
    db_dsn: str, tmp_path: Path, eleven: ElevenLabsStub, groq: GroqStub, evolution: EvolutionStub, fresh: None
) -> Any:
    def make(**kwargs: Any) -> Settings:
        return audio_settings(
            db_dsn, tmp_path / "data", eleven=eleven, groq=groq, evolution=evolution, **kwargs
        )

    return make


def drain(settings: Settings) -> WorkerSummary:
    return run_worker(settings, once=True)


@pytest.fixture
def external() -> Iterator[ExternalWorkerStub]:
    with ExternalWorkerStub(token="ext-token-0123456789") as stub:
        yield stub
