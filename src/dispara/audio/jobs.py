"""Creating audio jobs from what an operator typed: validated data, a local file uploaded, checks made early.

The CLI calls these; `dispara serve` can validate with `payloads` and call `queue.enqueue.enqueue` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from dispara.audio.payloads import TRANSCRIBE, TTS, TranscribeData, as_data, fill_upload_path, validate
from dispara.audio.services import storage_for
from dispara.audio.transcribe import allowed_target
from dispara.config import Settings
from dispara.db import Connection
from dispara.errors import InputError, PermanentServiceError
from dispara.providers.groq import MAX_UPLOAD_BYTES, content_type, upload_name
from dispara.providers.storage import StoredObject
from dispara.queue.enqueue import enqueue


def tts_data(settings: Settings, text: str, **given: str | None) -> dict[str, Any]:
    """Job data for text-to-speech; `given`: id_sender, output_bucket, output_path, voice_id, instance."""
    data = {
        "text_to_convert": text,
        "output_bucket": given.pop("output_bucket", None) or settings.supabase.bucket,
        "output_path": given.pop("output_path", None) or settings.audio.tts_path,
        **{k: v for k, v in given.items() if v is not None},
    }
    parsed = validate(TTS, data)
    _check_instance(settings, parsed.instance, parsed.id_sender)
    return as_data(parsed)


def transcribe_data(settings: Settings, **given: str | None) -> dict[str, Any]:
    """Job data for a transcription of an object already in storage; refused early like the worker would."""
    parsed = validate(TRANSCRIBE, {k: v for k, v in given.items() if v is not None})
    assert isinstance(parsed, TranscribeData)
    try:
        allowed_target(parsed, settings.audio.result_targets)
    except PermanentServiceError as exc:
        raise InputError(str(exc)) from None
    _check_instance(settings, parsed.instance, parsed.id_sender)
    return as_data(parsed)


def upload_file(settings: Settings, file: Path, *, bucket: str, path: str | None) -> StoredObject:
    """Put a local audio file in storage (at `path`, else audio.upload_path) for a transcription job."""
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"{file}: {size / 1e6:.1f} MB is over Groq's 25 MB limit")
    try:
        name = upload_name(file.name, head)
        target = path or fill_upload_path(settings.audio.upload_path, name=name)
    except (PermanentServiceError, ValueError) as exc:
        raise InputError(f"{file}: {exc}") from None
    storage = storage_for(settings)
    try:
        with file.open("rb") as handle:
            return storage.upload(bucket, target, handle, content_type=content_type(name))
    finally:
        storage.close()


def submit(
    conn: Connection,
    tenant_id: UUID,
    settings: Settings,
    task_type: str,
    data: dict[str, Any],
    *,
    run_location: str = "supabase",
) -> int:
    """Enqueue the job (committed by the caller) with audio.max_attempts."""
    return enqueue(
        conn, tenant_id, task_type, data, run_location=run_location, max_attempts=settings.audio.max_attempts
    )


def _check_instance(settings: Settings, instance: str | None, id_sender: str | None) -> None:
    if id_sender and settings.evolution.url and not (instance or settings.audio.instance):
        raise InputError("no WhatsApp instance for the delivery: give --instance or set audio.instance")
