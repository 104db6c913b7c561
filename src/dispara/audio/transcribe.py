"""A transcription job: storage -> Groq Whisper -> an allowed table column and/or a WhatsApp text."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dispara.audio.delivery import deliver, instance_for
from dispara.audio.payloads import TRANSCRIBE, TranscribeData, validate
from dispara.audio.services import JobEnv, services
from dispara.config import reveal
from dispara.db.queries import q
from dispara.errors import PermanentServiceError, TransientServiceError
from dispara.providers.base import OutgoingMessage
from dispara.providers.evolution_errors import one_line
from dispara.providers.groq import MAX_UPLOAD_BYTES, upload_name
from dispara.queue.model import ClaimedJob


def allowed_target(data: TranscribeData, allowed: list[str]) -> tuple[list[str], str] | None:
    """(table parts, column) if the job names a result target listed in audio.result_targets.

    Matching is exact text against the configured list, so no name the list does not hold, however it
    is quoted or spelled, ever reaches SQL.
    """
    target = data.target
    if target is None:
        return None
    if target not in allowed:
        shown = ", ".join(allowed) or "none configured"
        raise PermanentServiceError(
            f"result target {target!r} is not allowed (audio.result_targets: {shown}); no request was made"
        )
    *table, column = target.split(".")
    return table, column


def write_result(env: JobEnv, target: tuple[list[str], str], row_id: str, text: str) -> None:
    table, column = target
    statement = sql.SQL(q("audio_result_write")).format(
        table=sql.Identifier(*table), column=sql.Identifier(column)
    )
    where = f"{'.'.join(table)}.{column} (id {row_id})"
    try:
        cur = env.conn().execute(statement, {"text": text, "row_id": row_id})
    except psycopg.OperationalError as exc:
        raise TransientServiceError(f"writing the transcript to {where}: {one_line(str(exc), 200)}") from None
    except psycopg.Error as exc:  # no such table or column, a row id of the wrong type, a constraint
        raise PermanentServiceError(f"writing the transcript to {where}: {one_line(str(exc), 200)}") from None
    if cur.rowcount == 0:
        raise PermanentServiceError(f"writing the transcript to {where}: no row with that id")


def run(job: ClaimedJob, env: JobEnv) -> dict[str, Any]:
    data = validate(TRANSCRIBE, job.data)
    assert isinstance(data, TranscribeData)
    audio = env.settings.audio
    target = allowed_target(data, audio.result_targets)
    instance = instance_for(env, data.instance) if data.id_sender else None
    key = env.key(reveal(env.settings.groq.api_key), "groq-apikey", "GROQ_API_KEY")
    svc = services(env.ctx)
    with svc.storage.download(data.audio_bucket, data.audio_path, max_bytes=MAX_UPLOAD_BYTES) as blob:
        name = upload_name(data.audio_path, blob.file.read(16))
        blob.file.seek(0)
        heard = svc.groq.transcribe(
            api_key=key.value,
            file=blob.file,
            size=blob.size,
            name=name,
            model=env.settings.groq.model,
            language=data.language or audio.language,
            key_name=key.source,
        )
    result: dict[str, Any] = {"text": heard.text, "language": heard.language, "duration_s": heard.duration_s}
    if target is not None:
        assert data.result_row_id is not None
        write_result(env, target, data.result_row_id, heard.text)
        result["written_to"] = data.target
    if instance is not None and data.id_sender is not None:
        if not heard.text:
            result["delivered"] = "nothing to send: the transcript is empty"
            return result
        msg = OutgoingMessage(
            instance=instance,
            number=data.id_sender,
            message_type="text",
            text=heard.text,
            media_url=None,
            caption=None,
            file_name=None,
        )
        sent = deliver(env, job, msg)
        result.update(instance=instance, message_key=sent.key_id)
    return result
