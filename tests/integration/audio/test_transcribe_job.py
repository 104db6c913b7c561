"""Transcription jobs through a real worker: local storage -> Groq stub -> allowed column -> WhatsApp text.
Also `run_location: external`, handed to a stub external worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispara.audio.payloads import TRANSCRIBE, TTS
from dispara.config import ExternalWorkerConfig, SupabaseConfig
from dispara.queue.enqueue import enqueue
from tests.integration.audio.conftest import GROQ_KEY, INSTANCE, NUMBER, drain
from tests.integration.queue.conftest import Conn, job_rows, tenant
from tests.stubs.audio_stubs import (
    ElevenLabsStub,
    ExternalWorkerStub,
    GroqStub,
    SupabaseStorageStub,
    make_ogg,
)
from tests.stubs.evolution_stub import EvolutionStub


@pytest.fixture
def voice(settings_for: Any) -> bytes:
    """A real voice note in local storage at dispara-audio/in/voice.oga (the extension Groq refuses)."""
    audio = make_ogg(0.5)
    path = settings_for().data_dir / "storage" / "dispara-audio" / "in" / "voice.oga"
    path.parent.mkdir(parents=True)
    path.write_bytes(audio)
    return audio


@pytest.fixture
def messages(conn: Conn) -> int:
    conn.execute("CREATE TABLE messages (id bigint PRIMARY KEY, transcript text, secret text DEFAULT 's')")
    conn.execute("INSERT INTO messages (id) VALUES (42)")
    conn.commit()
    return 42


def transcribe_job(conn: Conn, **data: Any) -> int:
    body = {"audio_bucket": "dispara-audio", "audio_path": "in/voice.oga", "id_sender": NUMBER, **data}
    job_id = enqueue(conn, tenant(conn), TRANSCRIBE, body)
    conn.commit()
    return job_id


def test_transcript_is_written_to_an_allowed_column_and_sent_back(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub, voice: bytes, messages: int
) -> None:
    job_id = transcribe_job(
        conn, result_table="messages", result_row_id=messages, result_column="transcript", language="pt"
    )
    drain(settings_for(result_targets=["messages.transcript"]))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert row["result"] == {
        "text": groq.text,
        "language": "portuguese",
        "duration_s": 1.0,
        "written_to": "messages.transcript",
        "instance": INSTANCE,
        "message_key": row["result"]["message_key"],
    }
    assert conn.execute("SELECT transcript FROM messages WHERE id = 42").fetchone() == (groq.text,)
    (request,) = groq.requests()
    assert request.headers["authorization"] == f"Bearer {GROQ_KEY}"
    assert request.body == {
        "filename": "voice.ogg",  # .oga renamed: Groq judges by the extension
        "size": len(voice),
        "model": "whisper-large-v3-turbo",
        "language": "pt",
        "response_format": "verbose_json",
        "temperature": "0",
    }
    (send,) = evolution.sends()
    assert send.route == "sendText" and send.body["text"] == groq.text and send.body["number"] == NUMBER


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ('messages"; DROP TABLE messages; --', "transcript"),
        ("messages", 'transcript" = NULL, "secret'),
        ("messages", "secret"),  # a real column, just not allowed
        ("public.messages", "transcript"),  # the same table spelled differently is not on the list
        ("pg_catalog.pg_authid", "rolpassword"),
        ("Messages", "transcript"),
    ],
)
def test_result_targets_outside_the_allowlist_are_refused_before_any_call(
    conn: Conn,
    settings_for: Any,
    groq: GroqStub,
    evolution: EvolutionStub,
    voice: bytes,
    messages: int,
    table: str,
    column: str,
) -> None:
    job_id = transcribe_job(conn, result_table=table, result_row_id=messages, result_column=column)
    drain(settings_for(result_targets=["messages.transcript"]))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["error_kind"] == "permanent"
    assert row["last_error"].startswith(f"result target {table + '.' + column!r} is not allowed")
    assert groq.requests() == [] and evolution.requests() == []
    assert conn.execute("SELECT transcript, secret FROM messages").fetchall() == [(None, "s")]


def test_an_allowed_target_is_quoted_as_an_identifier(
    conn: Conn, settings_for: Any, groq: GroqStub, voice: bytes
) -> None:
    conn.execute('CREATE TABLE "Odd Table" (id text PRIMARY KEY, "Text; --" text)')
    conn.execute("""INSERT INTO "Odd Table" (id) VALUES ('a-1')""")
    conn.commit()
    job_id = transcribe_job(conn, result_table="Odd Table", result_row_id="a-1", result_column="Text; --")
    drain(settings_for(result_targets=["Odd Table.Text; --"]))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert conn.execute('SELECT "Text; --" FROM "Odd Table"').fetchone() == (groq.text,)


def test_a_row_that_does_not_exist_fails_the_job(
    conn: Conn, settings_for: Any, evolution: EvolutionStub, voice: bytes, messages: int
) -> None:
    job_id = transcribe_job(conn, result_table="messages", result_row_id=7, result_column="transcript")
    drain(settings_for(result_targets=["messages.transcript"]))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["last_error"].endswith("no row with that id")
    assert evolution.requests() == []  # nothing sent for a job that failed


def test_missing_groq_key_fails_without_a_request(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub, voice: bytes
) -> None:
    job_id = transcribe_job(conn)
    drain(settings_for(keys=False))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["last_error"].startswith("missing groq-apikey")
    assert groq.requests() == [] and evolution.requests() == []


def test_missing_audio_fails_permanently(conn: Conn, settings_for: Any, groq: GroqStub) -> None:
    job_id = transcribe_job(conn, audio_path="in/none.ogg")
    drain(settings_for())
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and "in/none.ogg not found" in row["last_error"]
    assert groq.requests() == []


def test_groq_429_is_retried_by_the_queue(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub, voice: bytes
) -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    groq.fail_next(429, error, headers={"retry-after": "0"}, times=3)  # more than the in-call retries
    settings = settings_for()
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"retry_base_s": 0.05})}
    )
    job_id = transcribe_job(conn)
    drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed" and row["attempts"] == 2, row["last_error"]
    assert len(groq.requests()) == 4 and len(evolution.sends()) == 1


def external_settings(settings_for: Any, external: ExternalWorkerStub) -> Any:
    base = settings_for()
    worker = ExternalWorkerConfig(url=external.endpoint, token="ext-token-0123456789")
    return base.model_copy(
        update={"external_worker": worker, "worker": base.worker.model_copy(update={"retry_base_s": 0.05})}
    )


def test_external_run_location_hands_the_whole_job_over(
    conn: Conn,
    settings_for: Any,
    external: ExternalWorkerStub,
    eleven: ElevenLabsStub,
    evolution: EvolutionStub,
) -> None:
    data = {"text_to_convert": "Oi", "output_bucket": "b", "output_path": "x.ogg", "id_sender": NUMBER}
    job_id = enqueue(conn, tenant(conn), TTS, data, run_location="external")
    conn.commit()
    external.fail_next(503, {"error": "warming up"})
    drain(external_settings(settings_for, external))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed" and row["attempts"] == 2, row["last_error"]
    assert row["result"] == {"ran": TTS, "by": "external-stub"}
    first, second = external.requests()
    assert second.headers["authorization"] == "Bearer ext-token-0123456789"
    assert second.body == {
        "job_id": job_id,
        "attempt": 2,
        "run_location": "external",
        "task_type": TTS,
        "data": data,
    }
    assert first.body["attempt"] == 1
    assert eleven.requests() == [] and evolution.requests() == []  # the external worker does it all


def test_external_refusal_fails_the_job(conn: Conn, settings_for: Any, external: ExternalWorkerStub) -> None:
    data = {"audio_bucket": "b", "audio_path": "a.ogg"}
    job_id = enqueue(conn, tenant(conn), TRANSCRIBE, data, run_location="external")
    conn.commit()
    external.fail_next(400, {"error": "bad job"})
    drain(external_settings(settings_for, external))
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["error_kind"] == "permanent" and row["attempts"] == 1
    assert "answered HTTP 400" in row["last_error"]


def test_external_without_url_fails(conn: Conn, settings_for: Any, tmp_path: Path) -> None:
    data = {"audio_bucket": "b", "audio_path": "a.ogg"}
    job_id = enqueue(conn, tenant(conn), TRANSCRIBE, data, run_location="external")
    conn.commit()
    drain(settings_for())
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and "EXTERNAL_WORKER_URL is not set" in row["last_error"]


def test_transcribes_from_supabase_storage(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub
) -> None:
    key = "sb_secret_0123456789abcdef"
    audio = make_ogg(0.3)
    with SupabaseStorageStub(key=key, buckets={"inbox"}) as storage:
        storage.objects[("inbox", "in/voice.oga")] = (audio, "audio/ogg")
        base = settings_for()
        settings = base.model_copy(update={"supabase": SupabaseConfig(url=storage.url, service_role_key=key)})
        job_id = transcribe_job(conn, audio_bucket="inbox")
        drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    (request,) = groq.requests()
    assert (request.body["filename"], request.body["size"]) == ("voice.ogg", len(audio))
    assert len(evolution.sends()) == 1


def test_an_empty_transcript_is_stored_and_not_sent(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub, voice: bytes
) -> None:
    groq.text = ""
    try:
        job_id = transcribe_job(conn)
        drain(settings_for())
    finally:
        groq.text = "Olá, isto é uma transcrição de teste."
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "completed", row["last_error"]
    assert row["result"]["text"] == "" and "nothing to send" in row["result"]["delivered"]
    assert evolution.requests() == []


def test_a_closed_instance_is_retried_and_never_sends(
    conn: Conn, settings_for: Any, groq: GroqStub, evolution: EvolutionStub, voice: bytes
) -> None:
    evolution.configure(closed_instances={INSTANCE})
    base = settings_for()
    settings = base.model_copy(update={"worker": base.worker.model_copy(update={"retry_base_s": 0.01})})
    job_id = transcribe_job(conn)
    drain(settings)
    (row,) = job_rows(conn, [job_id])
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "Connection Closed" in row["last_error"] and "gave up after 3 attempts" in row["last_error"]
    assert evolution.sends() == [] and len(evolution.sends(ok_only=False)) == 3
