"""Text-to-speech jobs through a real worker: ElevenLabs stub -> local storage -> voice note on the stub."""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

import httpx
import soundfile

from dispara.audio.payloads import TTS
from dispara.config import SupabaseConfig, WebhookConfig
from dispara.queue.enqueue import enqueue
from tests.integration.audio.conftest import INSTANCE, NUMBER, XI_KEY, drain
from tests.integration.queue.conftest import Conn, Receiver, job_rows, tenant, wait_for
from tests.stubs.audio_stubs import ElevenLabsStub, SupabaseStorageStub
from tests.stubs.evolution_stub import EvolutionStub


def tts_job(conn: Conn, **data: Any) -> int:
    body = {
        "text_to_convert": "Olá! Seu pedido saiu para entrega.",
        "output_bucket": "dispara-audio",
        "output_path": "tts/{id_sender}/{job_id}.ogg",
        "id_sender": NUMBER,
        **data,
    }
    job_id = enqueue(conn, tenant(conn), TTS, body)
    conn.commit()
    return job_id


def test_tts_stores_a_real_ogg_and_sends_one_voice_note(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub, receiver: Receiver
) -> None:
    settings = settings_for(webhook=WebhookConfig(url=receiver.url))
    job_id = tts_job(conn)
    summary = drain(settings)
    assert summary.done == 1 and summary.failed == 0
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    result = row["result"]
    stored = settings.data_dir / "storage" / "dispara-audio" / f"tts/{NUMBER}/{job_id}.ogg"
    audio = stored.read_bytes()
    assert audio == eleven.audio and audio[:4] == b"OggS"
    info = soundfile.info(io.BytesIO(audio))
    assert info.format == "OGG" and info.subtype == "OPUS"
    assert abs(result["duration_s"] - info.duration) < 0.03  # our container reading agrees with libsndfile
    assert result | {"duration_s": 0} == {
        "output_bucket": "dispara-audio",
        "output_path": f"tts/{NUMBER}/{job_id}.ogg",
        "bytes": len(audio),
        "format": "ogg",
        "voice_id": "voice-1",
        "duration_s": 0,
        "instance": INSTANCE,
        "message_key": result["message_key"],
    }
    (request,) = eleven.requests()
    assert request.path == "/v1/text-to-speech/voice-1"
    assert request.query == {"output_format": "opus_48000_32"}
    assert request.headers["xi-api-key"] == XI_KEY
    assert request.body == {
        "text": "Olá! Seu pedido saiu para entrega.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "pt",
    }
    (send,) = evolution.sends()
    assert send.route == "sendWhatsAppAudio" and send.instance == INSTANCE
    assert send.body["number"] == NUMBER
    assert base64.b64decode(send.body["audio"]) == audio  # local storage: the bytes themselves
    assert result["message_key"] == send_key(evolution)
    wait_for(lambda: len(receiver.received()) == 2, what="start and finish webhooks")
    start, finish = receiver.received()
    assert (start["job_name"], start["status"], start["finishedAt"]) == (TTS, "processing", None)
    assert (finish["job_name"], finish["status"]) == (TTS, "completed")
    assert finish["data"]["id_sender"] == NUMBER and finish["finishedAt"] is not None


def send_key(evolution: EvolutionStub) -> str:
    return "3EB0" + f"{len(evolution.sends()):016X}"


def test_missing_keys_fail_at_once_naming_the_setting_and_call_nothing(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    job_id = tts_job(conn)
    drain(settings_for(keys=False))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["error_kind"] == "permanent" and row["attempts"] == 1
    assert row["last_error"].startswith("missing elevenlabs-apikey: set ELEVENLABS_API_KEY or run")
    assert eleven.requests() == [] and evolution.requests() == []


def test_keys_from_the_tenant_settings_rows(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    tid = tenant(conn)
    conn.execute(
        "INSERT INTO settings (tenant_id, key, value) VALUES (%s, 'elevenlabs-apikey', %s)", (tid, XI_KEY)
    )
    job_id = tts_job(conn)
    drain(settings_for(keys=False))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert len(eleven.requests()) == 1 and len(evolution.sends()) == 1


def test_unknown_voice_fails_permanently_naming_it(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    job_id = tts_job(conn, voice_id="nope")
    drain(settings_for())
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["error_kind"] == "permanent"
    assert row["last_error"].startswith("voice nope not found (ElevenLabs HTTP 404 voice_not_found")
    assert evolution.sends(ok_only=False) == []


def test_without_ogg_it_asks_for_mp3_and_stores_that(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    eleven.opus = False
    job_id = tts_job(conn)
    settings = settings_for()
    drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert row["result"]["format"] == "mp3" and row["result"]["output_path"] == f"tts/{NUMBER}/{job_id}.mp3"
    assert "duration_s" not in row["result"]
    assert [r.query["output_format"] for r in eleven.requests()] == ["opus_48000_32", "mp3_44100_128"]
    assert len(evolution.sends()) == 1


def test_a_failed_send_is_retried_and_the_voice_note_goes_out_once(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    evolution.configure(fail_first={NUMBER: 1})
    settings = settings_for()
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"retry_base_s": 0.05})}
    )
    job_id = tts_job(conn)
    drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed" and row["attempts"] == 2, row["last_error"]
    assert len(evolution.sends()) == 1  # one voice note delivered
    assert len(evolution.sends(ok_only=False)) == 2  # the 500, then the send


def test_delivery_waits_for_a_campaign_holding_the_instance(
    conn: Conn, settings_for: Any, evolution: EvolutionStub
) -> None:
    tid = tenant(conn)
    conn.execute(
        "INSERT INTO instances (tenant_id, name, locked_by, locked_until) "
        "VALUES (%s, %s, 'campaign-worker', now() + interval '1 hour')",
        (tid, INSTANCE),
    )
    job_id = tts_job(conn)
    settings = settings_for(instance_wait_s=0.3)
    # The retry must not come due within the first run: the job is then pending, one attempt spent.
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"retry_base_s": 600})}
    )
    from dispara.queue.worker import run_worker

    run_worker(settings, max_seconds=2.0)
    (row,) = job_rows(conn, [job_id])
    assert (row["status"], row["attempts"]) == ("pending", 1) and "stayed busy" in row["last_error"]
    assert evolution.requests() == []  # never sent while the campaign held the number
    conn.execute("UPDATE instances SET locked_by = NULL, locked_until = NULL, next_send_at = 'infinity'")
    conn.execute("UPDATE jobs SET run_at = now() WHERE id = %s", (job_id,))
    conn.commit()
    drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert len(evolution.sends()) == 1  # campaign pacing (next_send_at) does not hold audio back
    lease = conn.execute("SELECT locked_by FROM instances WHERE name = %s", (INSTANCE,)).fetchone()
    assert lease == (None,)  # released after the send


def test_deliveries_on_one_instance_never_overlap(
    conn: Conn, settings_for: Any, evolution: EvolutionStub
) -> None:
    evolution.configure(latency_s=0.1)  # each send takes 100 ms to answer
    for _ in range(6):
        tts_job(conn)
    drain(settings_for())  # 4 sender threads, all delivering through INSTANCE
    sends = sorted(s.mono for s in evolution.sends())
    assert len(sends) == 6
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 0.095, gaps  # each send started only after the previous one was answered
    assert conn.execute("SELECT locked_by FROM instances WHERE name = %s", (INSTANCE,)).fetchone() == (None,)


def test_with_supabase_storage_the_voice_note_is_a_signed_url(
    conn: Conn, settings_for: Any, eleven: ElevenLabsStub, evolution: EvolutionStub
) -> None:
    key = "sb_secret_0123456789abcdef"
    with SupabaseStorageStub(key=key) as storage:
        settings = settings_for(signed_url_ttl_s=600)
        settings = settings.model_copy(
            update={"supabase": SupabaseConfig(url=storage.url, service_role_key=key)}
        )
        job_id = tts_job(conn)
        drain(settings)
        (row,) = job_rows(conn, [job_id])
        assert row["status"] == "completed", row["last_error"]
        stored, ctype = storage.objects[("dispara-audio", f"tts/{NUMBER}/{job_id}.ogg")]
        assert stored == eleven.audio and ctype == "audio/ogg; codecs=opus"
        (send,) = evolution.sends()
        url = send.body["audio"]
        assert url.startswith(
            f"{storage.url}/storage/v1/object/sign/dispara-audio/tts/{NUMBER}/{job_id}.ogg?token="
        )
        assert httpx.get(url).content == stored  # what Evolution fetches, without any key
        sign = next(r for r in storage.requests() if r.method == "POST" and "/sign/" in r.path)
        assert sign.body == {"expiresIn": 600}
        assert not (settings.data_dir / "storage").exists()
