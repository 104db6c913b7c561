"""ElevenLabs text-to-speech over httpx: one request per voice note, errors classified for the queue.

Asks for Ogg/Opus (what WhatsApp plays as a voice note) and checks that the bytes are Ogg; a server that
answers anything else is asked for mp3 instead, which Evolution converts (docs/audio.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import httpx

from dispara.errors import PermanentServiceError, ServiceError, TransientServiceError
from dispara.providers.health import elevenlabs_error
from dispara.providers.retrying import ApiClient, CallRetries, retry_after

# Characters per request, per model (ElevenLabs' models page).
MODEL_LIMITS: Final[dict[str, int]] = {
    "eleven_v3": 3_000,
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_flash_v2": 30_000,
    "eleven_turbo_v2": 30_000,
    "eleven_multilingual_v2": 10_000,
}
# Only these accept language_code; others answer an error or ignore it, depending on the API version.
LANGUAGE_MODELS: Final = frozenset({"eleven_flash_v2_5", "eleven_turbo_v2_5"})
MP3_FORMAT: Final = "mp3_44100_128"
OGG_MAGIC: Final = b"OggS"
_PERMANENT_CODES: Final = {
    "invalid_api_key": "the API key is invalid",
    "quota_exceeded": "the quota is exceeded",
    "missing_permissions": "the API key lacks a permission",
    "max_character_limit_exceeded": "the text is longer than the model allows",
    "only_for_creator+": "the plan does not allow this request",
}


@dataclass(frozen=True, slots=True)
class Speech:
    content: bytes
    format: str  # "ogg" (Ogg/Opus) or "mp3"
    content_type: str
    request_id: str | None
    character_cost: int | None


def check_text(text: str, model_id: str) -> None:
    """Refuse empty text and text over the model's limit, before any request."""
    if not text.strip():
        raise PermanentServiceError("text-to-speech: the text is empty")
    limit = MODEL_LIMITS.get(model_id)
    if limit is not None and len(text) > limit:
        raise PermanentServiceError(
            f"text-to-speech: the text has {len(text):,} characters, model {model_id} takes at most {limit:,}"
        )


@dataclass(frozen=True, slots=True)
class _Ask:
    api_key: str
    voice_id: str
    text: str
    model_id: str
    language: str | None
    key_name: str


class ElevenLabsClient(ApiClient):
    """Shared between threads; the API key travels per call (it may be a tenant's own)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        retries: CallRetries | None = None,
    ) -> None:
        super().__init__("ElevenLabs", url, timeout_s=timeout_s, transport=transport, retries=retries)
        self._opus_refused = False  # learned once per process: this server does not give Ogg for opus_*

    def synthesize(
        self,
        *,
        api_key: str,
        voice_id: str,
        text: str,
        model_id: str,
        output_format: str = "opus_48000_32",
        language: str | None = None,
        key_name: str = "elevenlabs-apikey",
    ) -> Speech:
        """The whole audio file for `text`; raises Permanent/TransientServiceError per the contract."""
        check_text(text, model_id)
        ask = _Ask(api_key, voice_id, text, model_id, language, key_name)
        wants_opus = output_format.startswith("opus_") and not self._opus_refused
        fmt = output_format if wants_opus or not output_format.startswith("opus_") else MP3_FORMAT
        speech = self._convert(ask, fmt)
        if wants_opus and speech.format != "ogg":
            self._opus_refused = True  # a plain flag: two threads learning it at once is harmless
            speech = self._convert(ask, MP3_FORMAT)
        return speech

    def _convert(self, ask: _Ask, output_format: str) -> Speech:
        body: dict[str, object] = {"text": ask.text, "model_id": ask.model_id}
        if ask.language and ask.model_id in LANGUAGE_MODELS:
            body["language_code"] = ask.language
        path = f"/v1/text-to-speech/{quote(ask.voice_id, safe='')}"

        def send() -> httpx.Response:
            return self._client.post(
                path,
                params={"output_format": output_format},
                json=body,
                headers={"xi-api-key": ask.api_key, "accept": "audio/*"},
            )

        response = self._send(send)
        if not response.is_success:
            raise classify(response, voice_id=ask.voice_id, key_name=ask.key_name)
        content = response.content
        is_ogg = content[:4] == OGG_MAGIC
        if output_format.startswith("opus_") and not is_ogg:
            kind, ctype = "other", response.headers.get("content-type", "")
        else:
            kind = "ogg" if is_ogg else "mp3"
            ctype = "audio/ogg; codecs=opus" if is_ogg else "audio/mpeg"
        cost = response.headers.get("character-cost", "")
        return Speech(
            content=content,
            format=kind,
            content_type=ctype,
            request_id=response.headers.get("request-id"),
            character_cost=int(cost) if cost.isdigit() else None,
        )


def classify(response: httpx.Response, *, voice_id: str, key_name: str) -> ServiceError:
    """The error an ElevenLabs failure reply stands for: what retrying can fix is transient."""
    status = response.status_code
    code, message = elevenlabs_error(response)
    where = f"ElevenLabs HTTP {status}" + (f" {code}" if code else "")
    if code == "voice_not_found" or (status == 404 and code is None):
        return PermanentServiceError(f"voice {voice_id} not found ({where}: {message})", status=status)
    if code in _PERMANENT_CODES:
        reason = _PERMANENT_CODES[code]
        hint = f"; check {key_name}" if code in ("invalid_api_key", "missing_permissions") else ""
        text = f"text-to-speech refused: {reason} ({where}: {message}){hint}"
        return PermanentServiceError(text, status=status)
    if status == 429 or status >= 500:
        return TransientServiceError(
            f"text-to-speech: {where}: {message}", status=status, retry_after=retry_after(response)
        )
    if status in (401, 403):
        text = f"text-to-speech refused ({where}: {message}); check {key_name}"
        return PermanentServiceError(text, status=status)
    return PermanentServiceError(f"text-to-speech refused ({where}: {message})", status=status)
