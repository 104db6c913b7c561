"""`dispara audio tts|transcribe` as an operator runs them: subprocesses against local stub servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile

from tests.helpers import run_subprocess
from tests.integration.queue.conftest import API_KEY, Conn
from tests.stubs.audio_stubs import ElevenLabsStub, GroqStub, make_ogg
from tests.stubs.evolution_stub import EvolutionStub

pytestmark = pytest.mark.slow

XI_KEY = "xi-e2e-key-0123456789"
GROQ_KEY = "gsk_e2e_0123456789"
NUMBER = "5511987654321"


@pytest.fixture
def eleven() -> Iterator[ElevenLabsStub]:
    with ElevenLabsStub(api_key=XI_KEY) as stub:
        yield stub


@pytest.fixture
def groq() -> Iterator[GroqStub]:
    with GroqStub(api_key=GROQ_KEY, text="Quero saber do meu pedido") as stub:
        yield stub


@pytest.fixture
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=API_KEY) as stub:
        yield stub


@pytest.fixture
def env(
    cli_env: dict[str, str], tmp_path: Path, eleven: ElevenLabsStub, groq: GroqStub, evolution: EvolutionStub
) -> dict[str, str]:
    config = tmp_path / "dispara.yaml"
    config.write_text(
        "audio:\n  instance: atendimento\n  result_targets: [messages.transcript]\n"
        "evolution:\n  typing_delay_ms: 0\n",
        encoding="utf-8",
    )
    return {
        **cli_env,
        "DISPARA_CONFIG": str(config),
        "ELEVENLABS_API_URL": eleven.url,
        "ELEVENLABS_API_KEY": XI_KEY,
        "ELEVENLABS_VOICE_ID": "voice-1",
        "GROQ_API_URL": groq.url,
        "GROQ_API_KEY": GROQ_KEY,
        "EVOLUTION_API_URL": evolution.url,
        "EVOLUTION_API_KEY": API_KEY,
    }


def test_tts_wait_stores_an_ogg_and_sends_a_voice_note(
    env: dict[str, str], eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    result = run_subprocess(env, "audio", "tts", "Olá", "--to", NUMBER, "--wait", "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["status"] == "completed" and body["error"] is None
    stored = (
        Path(env["DISPARA_DATA_DIR"])
        / "storage"
        / body["result"]["output_bucket"]
        / body["result"]["output_path"]
    )
    assert soundfile.info(str(stored)).subtype == "OPUS"
    assert len(eleven.requests()) == 1
    (send,) = evolution.sends()
    assert (
        send.route == "sendWhatsAppAudio" and send.instance == "atendimento" and send.body["number"] == NUMBER
    )


def test_tts_without_keys_fails_naming_the_key_and_calls_nothing(
    env: dict[str, str], eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    env = {k: v for k, v in env.items() if k != "ELEVENLABS_API_KEY"}
    result = run_subprocess(env, "audio", "tts", "Olá", "--to", NUMBER, "--wait")
    assert result.code == 6
    assert "failed: missing elevenlabs-apikey" in result.err and "Traceback" not in result.err
    assert eleven.requests() == [] and evolution.requests() == []


def test_tts_without_wait_prints_the_job_id_and_a_worker_runs_it(
    env: dict[str, str], conn: Conn, evolution: EvolutionStub
) -> None:
    result = run_subprocess(env, "audio", "tts", "Olá", "--to", NUMBER)
    assert result.code == 0, result.err
    job_id = int(result.out.split()[1])
    assert result.out.startswith(f"job {job_id} queued (text-to-speech)")
    assert conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone() == ("pending",)
    conn.commit()
    assert evolution.requests() == []
    worker = run_subprocess(env, "worker", "--once")
    assert worker.code == 0, worker.err
    assert "1 other done" in worker.out
    assert conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone() == ("completed",)
    assert len(evolution.sends()) == 1


def test_transcribe_a_local_file_and_send_the_text_back(
    env: dict[str, str], tmp_path: Path, groq: GroqStub, evolution: EvolutionStub
) -> None:
    voice = tmp_path / "voice.ogg"
    voice.write_bytes(make_ogg(0.5))
    result = run_subprocess(env, "audio", "transcribe", str(voice), "--to", NUMBER, "--wait")
    assert result.code == 0, result.err
    assert "  text: Quero saber do meu pedido" in result.out
    assert "uploaded" in result.err
    (request,) = groq.requests()
    assert request.body["filename"].endswith("voice.ogg") and request.body["size"] == voice.stat().st_size
    (send,) = evolution.sends()
    assert send.route == "sendText" and send.body == {
        "number": NUMBER,
        "text": "Quero saber do meu pedido",
        "delay": 0,
    }


def test_a_result_table_outside_the_allowlist_is_refused_before_anything(
    env: dict[str, str], tmp_path: Path, groq: GroqStub, evolution: EvolutionStub
) -> None:
    voice = tmp_path / "voice.ogg"
    voice.write_bytes(make_ogg(0.2))
    args = ["--result-table", "users", "--result-row-id", "1", "--result-column", "password", "--wait"]
    result = run_subprocess(env, "audio", "transcribe", str(voice), *args)
    assert result.code == 4
    assert result.err.startswith("dispara: error: result target 'users.password' is not allowed")
    assert groq.requests() == [] and evolution.requests() == []
    assert not (Path(env["DISPARA_DATA_DIR"]) / "storage").exists()  # not even uploaded


def test_bad_input_is_one_line_and_exit_4(env: dict[str, str]) -> None:
    result = run_subprocess(env, "audio", "tts", "Olá", "--to", "12", "--path", "../x.ogg")
    assert result.code == 4
    assert result.err.startswith("dispara: error: text-to-speech data.id_sender: '12':")
    missing = run_subprocess(env, "audio", "transcribe")
    assert missing.code == 4 and "give a FILE to transcribe, or --path" in missing.err


def test_wait_with_a_worker_running_sends_once(
    env: dict[str, str], tmp_path: Path, evolution: EvolutionStub, eleven: ElevenLabsStub
) -> None:
    import subprocess
    import sys

    worker = subprocess.Popen(
        [sys.executable, "-m", "dispara", "worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        results = [
            run_subprocess(env, "audio", "tts", f"Olá {i}", "--to", NUMBER, "--wait") for i in range(3)
        ]
    finally:
        worker.terminate()
        worker.wait(30)
    assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
    assert len(eleven.requests()) == 3 and len(evolution.sends()) == 3  # each job ran exactly once
