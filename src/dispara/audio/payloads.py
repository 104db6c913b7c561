"""The `data` of audio jobs, as seed 000 shapes it; `dispara serve` and the CLI validate with these models.

Keys beyond the seed's (`instance`, `voice_id`, `language`) are optional; unknown keys are kept, unused.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dispara.campaigns.phones import PhoneError, normalize_phone
from dispara.errors import InputError
from dispara.providers.storage import StoragePathError, check_location

TTS: Final = "text-to-speech"
TRANSCRIBE: Final = "transcribe-audio"
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")


def fill_path(template: str, *, id_sender: str | None, job_id: int | str, now: datetime | None = None) -> str:
    """The object path for a job: `{id_sender}`, `{job_id}` and `{date}` (YYYY-MM-DD, UTC) filled in."""
    return _fill(
        template,
        {
            "id_sender": _safe_segment(id_sender or "unknown"),
            "job_id": str(job_id),
            "date": (now or datetime.now(UTC)).strftime("%Y-%m-%d"),
        },
    )


def fill_upload_path(template: str, *, name: str, now: datetime | None = None) -> str:
    """Where a local file is uploaded: `{name}` (its file name), `{date}` and `{uuid}` filled in."""
    return _fill(
        template,
        {
            "name": _safe_segment(name),
            "date": (now or datetime.now(UTC)).strftime("%Y-%m-%d"),
            "uuid": uuid.uuid4().hex[:12],
        },
    )


def _fill(template: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join("{" + p + "}" for p in values)
            raise ValueError(f"unknown placeholder {{{name}}} in {template!r} (use {known})")
        return values[name]

    return _PLACEHOLDER.sub(one, template)


def _safe_segment(value: str) -> str:
    # A JID like 5511...@s.whatsapp.net is fine in a path; a slash or dots would not be.
    return re.sub(r"[^A-Za-z0-9@._-]", "_", value).strip(".") or "unknown"


def _number(value: str) -> str:
    """A WhatsApp number as digits with country code, or a JID (…@s.whatsapp.net, …@g.us) as given."""
    value = value.strip()
    if "@" in value:
        if not re.fullmatch(r"[0-9A-Za-z.+_-]+@(s\.whatsapp\.net|g\.us|lid)", value):
            raise ValueError(f"{value!r} is not a WhatsApp id")
        return value
    try:
        return normalize_phone(value)
    except PhoneError as exc:
        raise ValueError(f"{value!r}: {exc.reason}") from None


def _location(bucket: str, path: str) -> None:
    try:
        check_location(bucket, path)
    except StoragePathError as exc:
        raise ValueError(str(exc)) from None


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    id_sender: str | None = None
    instance: str | None = Field(None, min_length=1)

    @field_validator("id_sender", mode="after")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        return None if value is None else _number(value)


class TtsData(_Data):
    text_to_convert: str = Field(min_length=1)
    output_bucket: str
    output_path: str
    id_sender: str  # the seed requires it: the voice note goes to this number
    voice_id: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _where(self) -> TtsData:
        _location(self.output_bucket, fill_path(self.output_path, id_sender=self.id_sender, job_id=1))
        return self


class TranscribeData(_Data):
    audio_bucket: str
    audio_path: str
    result_table: str | None = Field(None, min_length=1)
    result_row_id: str | None = Field(None, min_length=1)
    result_column: str | None = Field(None, min_length=1)
    language: str | None = Field(None, min_length=2, max_length=8)

    @field_validator("result_row_id", mode="before")
    @classmethod
    def _row_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _complete(self) -> TranscribeData:
        _location(self.audio_bucket, self.audio_path)
        given = [self.result_table, self.result_row_id, self.result_column]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError("result_table, result_row_id and result_column go together: all three or none")
        return self

    @property
    def target(self) -> str | None:
        if self.result_table is None or self.result_column is None:
            return None
        return f"{self.result_table}.{self.result_column}"


MODELS: Final[dict[str, type[_Data]]] = {TTS: TtsData, TRANSCRIBE: TranscribeData}


def validate(task_type: str, data: Any) -> TtsData | TranscribeData:
    """The job data checked against its task type; InputError names the first field that is wrong."""
    model = MODELS.get(task_type)
    if model is None:
        raise InputError(f"unknown audio task type {task_type!r} (use {TTS} or {TRANSCRIBE})")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        problem = str(error["msg"]).removeprefix("Value error, ")
        raise InputError(f"{task_type} data{'.' + where if where else ''}: {problem}") from None
    assert isinstance(parsed, TtsData | TranscribeData)
    return parsed


def as_data(parsed: BaseModel) -> dict[str, Any]:
    """The job `data` to store: what was given, normalised, without empty optional keys."""
    return parsed.model_dump(exclude_none=True)
