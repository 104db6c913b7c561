"""The campaign YAML as pydantic models, its defaults, and `load_campaign` with one-line errors.

Every error names the file and the key: `campaigns/bf.yaml: templates[1].media: required for type image`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from dispara.campaigns.names import normalize_key
from dispara.campaigns.templates import Template, TemplateSyntaxError, parse
from dispara.errors import InputError
from dispara.states import MessageType, Transport
from dispara.yamlfile import read_yaml

__all__ = [
    "DEFAULT_TIMEZONE",
    "WEEKDAYS",
    "Campaign",
    "Columns",
    "Delay",
    "MessageTemplate",
    "Schedule",
    "TemplateSpec",
    "Window",
    "load_campaign",
]

DEFAULT_TIMEZONE: Final = "America/Sao_Paulo"
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES: Final = {
    **{day: day for day in WEEKDAYS},
    # Portuguese, as the operators write them (`sáb` loses its accent in normalize_key).
    "seg": "mon",
    "ter": "tue",
    "qua": "wed",
    "qui": "thu",
    "sex": "fri",
    "sab": "sat",
    "dom": "sun",
}
_HHMM: Final = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_URL: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_KEYED: Final = "dispara_keyed"

NonEmpty = Annotated[str, Field(min_length=1)]


def _keyed(key: str, message: str) -> PydanticCustomError:
    """An error about `key` below the object being validated (`"media"`, `"[2]"`, `"templates[0].text"`)."""
    return PydanticCustomError(_KEYED, "{dispara_message}", {"dispara_key": key, "dispara_message": message})


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, coerce_numbers_to_str=True
    )


class Columns(_Model):
    """Which CSV column holds the phone (and its area code), and columns to rename into template fields."""

    phone: NonEmpty | None = None
    ddd: NonEmpty | None = None
    rename: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)

    @field_validator("rename")
    @classmethod
    def _names_survive_normalisation(cls, rename: dict[str, str]) -> dict[str, str]:
        for source, target in rename.items():
            if not normalize_key(target):
                raise _keyed(source, "must be a field name")
        return rename


class Delay(_Model):
    """Seconds between two messages of one instance: a random gap in [min, max] (3 to 8 by default)."""

    min: float = Field(3.0, ge=0, allow_inf_nan=False)
    max: float = Field(8.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            default = "" if "min" in self.model_fields_set else " (the default)"
            raise _keyed("min", f"{self.min:g}{default} must not be greater than delay.max {self.max:g}")
        return self


class Window(_Model):
    """Hours and days when messages may go out, in `timezone`; an end before the start runs overnight."""

    start: time
    end: time
    days: tuple[str, ...] = WEEKDAYS
    timezone: str = DEFAULT_TIMEZONE

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> object:
        if isinstance(value, time):
            return value
        if isinstance(value, str) and (match := _HHMM.fullmatch(value.strip())):
            return time(int(match[1]), int(match[2]))
        raise ValueError("must be a time as HH:MM (24-hour), like 08:30")

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value
        if not value:
            raise ValueError("must not be empty (leave it out for every day)")
        days = set()
        for index, day in enumerate(value):
            canonical = _DAY_ALIASES.get(normalize_key(day)) if isinstance(day, str) else None
            if canonical is None:
                raise _keyed(f"[{index}]", f"{day!r} is not a day; use {', '.join(WEEKDAYS)}")
            days.add(canonical)
        return tuple(day for day in WEEKDAYS if day in days)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like {DEFAULT_TIMEZONE}"
            ) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise _keyed("end", "must differ from window.start (leave the window out to send at any hour)")
        return self

    @field_serializer("start", "end")
    def _as_hhmm(self, value: time) -> str:
        return value.strftime("%H:%M")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def weekdays(self) -> frozenset[int]:
        """The days as `date.weekday()` numbers, Monday = 0."""
        return frozenset(WEEKDAYS.index(day) for day in self.days)


class Schedule(_Model):
    """When to start (`at`), when sending is allowed (`window`) and how many messages a day (`daily_cap`)."""

    # Before `at`, whose validator reads the window's timezone.
    window: Window | None = None
    at: datetime | None = None
    """The first send; `now` (or no `at`) starts at once. A time in the past is refused when sending."""
    daily_cap: int | None = Field(None, gt=0)

    @field_validator("at", mode="before")
    @classmethod
    def _now(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("now", "agora") else value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        window = info.data.get("window")
        zone = window.zone if isinstance(window, Window) else ZoneInfo(DEFAULT_TIMEZONE)
        return value.replace(tzinfo=zone)


class TemplateSpec(_Model):
    """One message per contact: a text, or a media file with an optional caption.

    `variants` are alternatives to `text` (or to `caption`); each contact gets one, chosen by its phone.
    """

    type: MessageType
    text: str | None = None
    media: str | None = None
    caption: str | None = None
    file_name: NonEmpty | None = None
    variants: tuple[str, ...] = ()

    @field_validator("media")
    @classmethod
    def _url_or_file(cls, media: str | None, info: ValidationInfo) -> str | None:
        if media is None or info.data.get("type") in (None, "text"):
            return media  # a text template with media is refused below, with a clearer message
        if _URL.match(media):
            if urlsplit(media).scheme.lower() not in ("http", "https"):
                raise ValueError("must be an http(s) URL or a file path")
            return media
        file = (_base_dir(info) / Path(media).expanduser()).resolve()
        if not file.is_file():
            raise ValueError(f"file not found: {file}")
        return str(file)

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        kind = self.type
        if kind == "text":
            if not self.text:
                raise _keyed("text", "required for type text")
            for key in ("media", "caption", "file_name"):
                if getattr(self, key) is not None:
                    raise _keyed(key, "not allowed for type text")
        else:
            if not self.media:
                raise _keyed("media", f"required for type {kind}")
            if self.text is not None:
                raise _keyed(
                    "text", f"not allowed for type {kind}; the text of a media message is its caption"
                )
            if kind == "audio" and (self.caption is not None or self.variants):
                key = "caption" if self.caption is not None else "variants"
                raise _keyed(key, "not allowed for type audio: WhatsApp shows no caption on audio")
        for index, variant in enumerate(self.variants):
            if not variant:
                raise _keyed(f"variants[{index}]", "must not be empty")
        return self

    def sources(self) -> Iterator[tuple[str, str]]:
        """(key, text) of every text or caption to parse, the main one first."""
        main = self.text if self.type == "text" else self.caption
        if main:
            yield ("text" if self.type == "text" else "caption"), main
        for index, variant in enumerate(self.variants):
            yield f"variants[{index}]", variant


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


@dataclass(frozen=True)
class MessageTemplate:
    """A template ready for the pipeline: its parsed texts and what each message carries besides."""

    index: int
    message_type: MessageType
    choices: tuple[Template | None, ...]
    """Text variants, or caption variants; `(None,)` for media without a caption."""
    media_url: str | None
    file_name: str | None

    @property
    def parsed(self) -> tuple[Template, ...]:
        return tuple(choice for choice in self.choices if choice is not None)


class Campaign(_Model):
    """A campaign file. Defaults: country BR, delay 3-8 s, transport jobs, 2 retries, no schedule."""

    name: NonEmpty
    id: NonEmpty | None = None
    """Idempotency key: sending the same id twice creates the campaign once."""
    target_audience: str | None = None
    creative: str | None = None
    contacts: Path
    columns: Columns = Field(default_factory=Columns)
    default_country: str = "BR"
    locale: Literal["pt-BR", "en"] = "pt-BR"
    """Language of the reasons in reports and in the rejected file."""
    instances: tuple[NonEmpty, ...] = Field(min_length=1)
    delay: Delay = Field(default_factory=Delay)
    schedule: Schedule | None = None
    transport: Transport = "jobs"
    retries: int = Field(2, ge=0)
    templates: tuple[TemplateSpec, ...] = Field(min_length=1)

    _source: str = PrivateAttr("")
    _message_templates: tuple[MessageTemplate, ...] = PrivateAttr(())

    @field_validator("contacts")
    @classmethod
    def _existing_csv(cls, value: Path, info: ValidationInfo) -> Path:
        path = (_base_dir(info) / value.expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @field_validator("default_country", mode="before")
    @classmethod
    def _known_country(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a country code (ISO 3166 alpha-2, like BR)")
        return code

    @field_validator("instances")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, name in enumerate(value):
            if name in value[:index]:
                raise _keyed(f"[{index}]", f"{name!r} is listed twice")
        return value

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> Self:
        compiled = []
        for index, spec in enumerate(self.templates):
            choices: list[Template | None] = []
            for key, text in spec.sources():
                label = f"templates[{index}].{key}"
                try:
                    choices.append(parse(text, label=label))
                except TemplateSyntaxError as exc:
                    raise _keyed(label, str(exc)) from None
            media = spec.media
            compiled.append(
                MessageTemplate(index, spec.type, tuple(choices) or (None,), media, _file_name(spec))
            )
        self._message_templates = tuple(compiled)
        context = info.context if isinstance(info.context, dict) else {}
        self._source = str(context.get("source", ""))
        return self

    @property
    def source(self) -> str:
        """The campaign file as the user named it ("" when not loaded from a file)."""
        return self._source

    @property
    def message_templates(self) -> tuple[MessageTemplate, ...]:
        return self._message_templates

    def resolved_document(self) -> dict[str, Any]:
        """The campaign with every default filled in and paths absolute, as JSON-able data.

        Stable for equal input, so it can be fingerprinted (`json.dumps(..., sort_keys=True)`) and stored.
        """
        return self.model_dump(mode="json")


def _file_name(spec: TemplateSpec) -> str | None:
    # Evolution names files itself when fileName is missing, badly for URLs without a path: send one.
    if spec.type == "text" or spec.media is None:
        return None
    if spec.file_name:
        return spec.file_name
    if _URL.match(spec.media):
        return unquote(PurePosixPath(urlsplit(spec.media).path).name) or None
    return Path(spec.media).name


def load_campaign(path: Path) -> Campaign:
    """Read and validate a campaign file; raise `InputError` with one line naming file, key and problem.

    Relative paths inside (contacts, media files) are relative to the file's folder.
    """
    display = str(path)
    data = read_yaml(path, display)
    if data is None:
        raise InputError(f"{display}: empty campaign file")
    if not isinstance(data, dict):
        raise InputError(f"{display}: must be a mapping of keys (name, contacts, instances, templates, ...)")
    try:
        return Campaign.model_validate(data, context={"base_dir": path.absolute().parent, "source": display})
    except ValidationError as exc:
        raise InputError(format_validation_error(display, exc)) from None


def format_validation_error(display: str, exc: ValidationError) -> str:
    """The first error as `file: key.path: problem`, noting how many more there are."""
    errors = exc.errors(include_url=False)
    # A list whose only item is wrong is also reported "too short" (it is empty after validation).
    errors = [error for error in errors if not _consequence(error, errors)] or errors
    key, problem = _describe(errors[0])
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{display}: {key}: {problem}{more}" if key else f"{display}: {problem}{more}"


def _consequence(error: ErrorDetails, errors: list[ErrorDetails]) -> bool:
    loc = error["loc"]
    return error["type"] == "too_short" and any(
        len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
    )


_PLAIN: Final = {
    "missing": "required",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "path_type": "must be a file path",
    "datetime_type": "must be a date and time like 2025-11-28 09:00 (ISO 8601)",
    "datetime_parsing": "must be a date and time like 2025-11-28 09:00 (ISO 8601)",
    "datetime_from_date_parsing": "must be a date and time like 2025-11-28 09:00 (ISO 8601)",
}
_MODELS_AT: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): Campaign,
    ("columns",): Columns,
    ("delay",): Delay,
    ("schedule",): Schedule,
    ("schedule", "window"): Window,
    ("templates",): TemplateSpec,
}


def _describe(error: ErrorDetails) -> tuple[str, str]:
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == _KEYED:
        key, problem = str(ctx["dispara_key"]), str(ctx["dispara_message"])
        path = _key_path(loc)
        return (f"{path}{key}" if key.startswith("[") or not path else f"{path}.{key}"), problem
    if kind == "extra_forbidden":
        return _key_path(loc), _unknown_key(loc)
    if kind == "literal_error":
        return _key_path(loc), f"must be {ctx['expected']}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return _key_path(
            loc
        ), f"must be {'at least' if kind == 'greater_than_equal' else 'more than'} {bound:g}"
    if kind.endswith("_type") and error.get("input", "") is None:
        return _key_path(loc), "has no value"  # `name:` with nothing after it reads as null
    if kind == "value_error":
        return _key_path(loc), str(error["msg"]).removeprefix("Value error, ")
    message = _PLAIN.get(kind) or str(error["msg"])
    return _key_path(loc), message[:1].lower() + message[1:]


def _key_path(loc: list[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _unknown_key(loc: list[int | str]) -> str:
    parent = tuple(str(part) for part in loc[:-1] if not isinstance(part, int))
    model = _MODELS_AT.get(parent)
    if model is not None:
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
    return "unknown key"
