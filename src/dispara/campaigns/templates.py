"""Message templates: `{campo}`, `{campo|padrão}`, `{{`/`}}` for literal braces.

A template is parsed once into a `str.format` pattern, so rendering millions of contacts is cheap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from dispara.campaigns.names import normalize_key
from dispara.errors import InputError

__all__ = [
    "MissingFieldError",
    "Template",
    "TemplateSyntaxError",
    "check_fields",
    "choose_variant",
    "parse",
]

_BRACE: Final = re.compile(r"[{}]")
# `{{nome}}` is valid syntax (the literal text `{nome}`) but is almost always a placeholder written
# mustache-style; sending it to a million contacts would be a disaster no test run reveals.
_MUSTACHE: Final = re.compile(r"(?<!\{)\{\{\s*[^\W\d][\w ]*(?:\|[^{}]*)?\}\}(?!\})")


class TemplateSyntaxError(ValueError):
    """The template text is malformed; the message says what and at which character (1-based)."""


class MissingFieldError(ValueError):
    """The contact has no value for a placeholder that has no default."""

    def __init__(self, field: str) -> None:
        super().__init__(f'missing field "{field}"')
        self.field = field


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template; build it with `parse`."""

    text: str
    label: str
    fields: tuple[str, ...]
    """Normalised field names used, in order of first appearance."""
    _pattern: str = field(repr=False)
    _slots: tuple[tuple[str, str | None], ...] = field(repr=False)
    """(field, default or None) per `str.format` argument."""
    _written: Mapping[str, str] = field(repr=False)

    def render(self, contact: Mapping[str, str]) -> str:
        """The text for one contact, whose keys are normalised field names."""
        if not self._slots:
            return self._pattern
        values = []
        for key, default in self._slots:
            value = contact.get(key)
            if not value:
                if default is None:
                    raise MissingFieldError(key)
                value = default
            values.append(value)
        return self._pattern.format(*values)

    def placeholder(self, key: str) -> str:
        """How the template wrote the placeholder of field `key`, for error messages."""
        return f"{{{self._written[key]}}}"


def parse(text: str, *, label: str = "template") -> Template:
    """Compile `text`; raise `TemplateSyntaxError` for unbalanced braces or an empty placeholder.

    Spaces around a field name and around a default are ignored: `{ nome | amigo }` == `{nome|amigo}`.
    """
    if mustache := _MUSTACHE.search(text):
        raise TemplateSyntaxError(
            f"{mustache[0]} at character {mustache.start() + 1} would be sent as literal braces; "
            f"placeholders take single braces, like {mustache[0][1:-1]}"
        )
    pattern: list[str] = []
    slots: list[tuple[str, str | None]] = []
    written: dict[str, str] = {}
    position = 0
    while (match := _BRACE.search(text, position)) is not None:
        start = match.start()
        pattern.append(text[position:start])
        if text.startswith("{{", start) or text.startswith("}}", start):
            pattern.append(text[start] * 2)
            position = start + 2
            continue
        if text[start] == "}":
            raise TemplateSyntaxError(
                f"'}}' at character {start + 1} closes nothing (write }}}} for a brace)"
            )
        end = _BRACE.search(text, start + 1)
        if end is None or text[end.start()] == "{":
            raise TemplateSyntaxError(
                f"'{{' at character {start + 1} is never closed (write {{{{ for a brace)"
            )
        name, bar, default = text[start + 1 : end.start()].partition("|")
        key = normalize_key(name)
        if not key:
            raise TemplateSyntaxError(f"empty placeholder at character {start + 1}")
        slot = (key, default.strip() if bar else None)
        if slot not in slots:
            slots.append(slot)
        written.setdefault(key, text[start + 1 : end.start()].strip())
        pattern.append(f"{{{slots.index(slot)}}}")
        position = end.start() + 1
    pattern.append(text[position:])
    compiled = "".join(pattern)
    fields = tuple(dict.fromkeys(key for key, _ in slots))
    # Without placeholders `render` returns the pattern as is, so its escapes are resolved now.
    return Template(text, label, fields, compiled if slots else compiled.format(), tuple(slots), written)


def check_fields(
    templates: Iterable[Template], available_fields: Collection[str], *, source: str = ""
) -> None:
    """Raise `InputError` for the first placeholder that names no column at all, default or not.

    A default does not excuse an unknown column: `{nmoe|amigo}` would greet every contact as "amigo".
    """
    available = {normalize_key(name) for name in available_fields}
    prefix = f"{source}: " if source else ""
    for template in templates:
        for key in template.fields:
            if key not in available:
                columns = ", ".join(sorted(available)) or "none"
                raise InputError(
                    f"{prefix}{template.label}: placeholder {template.placeholder(key)} matches no column "
                    f"of the contacts (columns: {columns})"
                )


def choose_variant(phone: str, template_index: int, count: int) -> int:
    """A variant index in `range(count)` that depends only on the phone and the template.

    blake2b rather than `hash()`, whose salt changes per process: a re-run must pick the same variant.
    """
    if count <= 1:
        return 0
    digest = hashlib.blake2b(f"{template_index}:{phone}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
