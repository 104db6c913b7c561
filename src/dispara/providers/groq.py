"""Groq Whisper transcription over httpx: a multipart upload streamed from a file, errors classified.

Groq judges the format by the file name's extension, so the name sent is chosen here: `.oga` (Telegram,
some WhatsApp exports) goes as `.ogg`, a name without a usable extension gets one from the file's first bytes.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import BinaryIO, Final

import httpx

from dispara.errors import PermanentServiceError, ServiceError, TransientServiceError
from dispara.providers.health import groq_error
from dispara.providers.retrying import ApiClient, CallRetries, retry_after

MAX_UPLOAD_BYTES: Final = 25 * 1000 * 1000  # Groq's limit for a direct file upload, on every tier
ACCEPTED: Final = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "opus", "wav", "webm"})
_RENAMED: Final = {"oga": "ogg", "ogx": "ogg"}
_CONTENT_TYPES: Final = {
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "mpeg": "audio/mpeg",
    "mpga": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "webm": "audio/webm",
}


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    language: str | None
    duration_s: float | None


def sniff(head: bytes) -> str | None:
    """The extension Groq accepts for a file starting with `head`, if it is recognisable."""
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head[4:8] == b"ftyp":
        return "m4a"
    # MPEG audio frame sync; layer bits 00 would be AAC in ADTS, which Groq does not take.
    if head.startswith(b"ID3") or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06
    ):
        return "mp3"
    return None


def upload_name(path: str, head: bytes) -> str:
    """A file name whose extension Groq accepts; PermanentServiceError for a format it does not take."""
    base = posixpath.basename(path) or "audio"
    stem, dot, ext = base.rpartition(".")
    ext = ext.lower() if dot else ""
    stem = stem if dot else base
    if ext in ACCEPTED:
        return f"{stem}.{ext}"
    if ext in _RENAMED:
        return f"{stem}.{_RENAMED[ext]}"
    found = sniff(head)
    if found is None:
        shown = f".{ext}" if ext else "no extension"
        raise PermanentServiceError(
            f"{path}: format not accepted by Groq ({shown}); use one of {', '.join(sorted(ACCEPTED))}"
        )
    return f"{stem}.{found}"


def content_type(name: str) -> str:
    return _CONTENT_TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")


class GroqClient(ApiClient):
    """Shared between threads; the API key travels per call (it may be a tenant's own)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        retries: CallRetries | None = None,
    ) -> None:
        super().__init__("Groq", url, timeout_s=timeout_s, transport=transport, retries=retries)

    def transcribe(
        self,
        *,
        api_key: str,
        file: BinaryIO,
        size: int,
        name: str,
        model: str,
        language: str | None = None,
        key_name: str = "groq-apikey",
    ) -> Transcription:
        """Text of the audio in `file` (read from its current position); `name` as from upload_name()."""
        if size > MAX_UPLOAD_BYTES:
            raise PermanentServiceError(
                f"{name}: {size / 1e6:.1f} MB is over Groq's 25 MB upload limit: refused before upload"
            )
        start = file.tell()
        data = {"model": model, "response_format": "verbose_json", "temperature": "0"}
        if language:
            data["language"] = language

        def send() -> httpx.Response:
            file.seek(start)  # every attempt uploads the whole file again
            return self._client.post(
                "/openai/v1/audio/transcriptions",
                data=data,
                files={"file": (name, file, content_type(name))},
                headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
            )

        response = self._send(send)
        if not response.is_success:
            raise classify(response, key_name=key_name)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise TransientServiceError(f"{self.label} answered HTTP {response.status_code} without a text")
        duration = body.get("duration")
        lang = body.get("language")
        return Transcription(
            text=body["text"].strip(),
            language=lang if isinstance(lang, str) and lang else language,
            duration_s=float(duration) if isinstance(duration, int | float) else None,
        )


def classify(response: httpx.Response, *, key_name: str) -> ServiceError:
    """The error a Groq failure reply stands for: 429, 408, 409 and 5xx are transient, the rest permanent."""
    status = response.status_code
    code, message = groq_error(response)
    where = f"Groq HTTP {status}" + (f" {code}" if code else "")
    if status in (401, 403):
        text = f"transcription refused ({where}: {message}); check {key_name}"
        return PermanentServiceError(text, status=status)
    if status == 413:
        text = f"transcription refused: file too large ({where}: {message})"
        return PermanentServiceError(text, status=status)
    if status in (408, 409, 429) or status >= 500:
        return TransientServiceError(
            f"transcription: {where}: {message}", status=status, retry_after=retry_after(response)
        )
    return PermanentServiceError(f"transcription refused ({where}: {message})", status=status)
