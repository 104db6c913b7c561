"""A text-to-speech job: ElevenLabs -> storage -> a WhatsApp voice note to `id_sender`."""

from __future__ import annotations

import io
from typing import Any

from dispara.audio.delivery import deliver, instance_for, media_for
from dispara.audio.ogg import opus_duration
from dispara.audio.payloads import TTS, TtsData, fill_path, validate
from dispara.audio.services import JobEnv, services
from dispara.config import reveal
from dispara.providers.base import OutgoingMessage
from dispara.queue.model import ClaimedJob

_OGG_SUFFIXES = (".ogg", ".oga", ".opus")


def run(job: ClaimedJob, env: JobEnv) -> dict[str, Any]:
    data = validate(TTS, job.data)
    assert isinstance(data, TtsData)
    cfg = env.settings.elevenlabs
    # Everything that can be known wrong is checked before ElevenLabs spends a character.
    instance = instance_for(env, data.instance)
    key = env.key(reveal(cfg.api_key), "elevenlabs-apikey", "ELEVENLABS_API_KEY")
    voice = data.voice_id or env.key(cfg.voice_id, "elevenlabs-voice-id", "ELEVENLABS_VOICE_ID").value
    path = fill_path(data.output_path, id_sender=data.id_sender, job_id=job.id, now=job.started_at)
    svc = services(env.ctx)
    speech = svc.elevenlabs.synthesize(
        api_key=key.value,
        voice_id=voice,
        text=data.text_to_convert,
        model_id=cfg.model_id,
        output_format=cfg.output_format,
        language=env.settings.audio.language,
        key_name=key.source,
    )
    if speech.format == "mp3" and path.lower().endswith(_OGG_SUFFIXES):
        path = path.rpartition(".")[0] + ".mp3"
    stored = svc.storage.upload(
        data.output_bucket, path, io.BytesIO(speech.content), content_type=speech.content_type
    )
    result: dict[str, Any] = {
        "output_bucket": stored.bucket,
        "output_path": stored.path,
        "bytes": len(speech.content),
        "format": speech.format,
        "voice_id": voice,
    }
    duration = opus_duration(speech.content) if speech.format == "ogg" else None
    if duration is not None:
        result["duration_s"] = duration
    msg = OutgoingMessage(
        instance=instance,
        number=data.id_sender,
        message_type="audio",
        text=None,
        media_url=media_for(env, svc.storage, stored.bucket, stored.path),
        caption=None,
        file_name=None,
        mimetype=speech.content_type,
    )
    sent = deliver(env, job, msg)
    result.update(instance=instance, message_key=sent.key_id)
    return result
