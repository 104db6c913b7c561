"""The pipeline from a campaign to its messages, without a database: read, normalise, dedup, render.

One contact at a time: memory holds the phones already accepted (as ints), never the rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from dispara.campaigns.contacts import ContactReader, RejectedWriter
from dispara.campaigns.model import Campaign
from dispara.campaigns.phones import PhoneError, pick_phone
from dispara.campaigns.reasons import describe
from dispara.campaigns.templates import MissingFieldError, Template, check_fields, choose_variant
from dispara.errors import InputError

__all__ = ["Message", "Preparation", "Report", "prepare"]


class Message(NamedTuple):
    """One message to create; a tuple so that millions of them cost little."""

    seq: int
    """Position in the campaign, from 0: contact by contact, each contact's templates in order."""
    contact_index: int
    """Position of the contact among the accepted ones, from 0."""
    template_index: int
    line: int
    """Line of the contacts file the contact comes from."""
    phone: str
    """Digits with country code, no `+`: `5511999990001`."""
    instance: str
    message_type: str
    """text, image, video, document or audio."""
    content: str | None
    """The rendered text, or the rendered caption (None for media without one)."""
    media_url: str | None
    """http(s) URL, or the absolute path of a local file that still has to be uploaded."""
    file_name: str | None
    variant: int
    """Which of the template's texts (0 = the main one, n = variants[n-1]) this contact got."""
    contact: dict[str, str]
    """The contact's fields; one dict shared by all of the contact's messages, so do not mutate it."""


@dataclass
class Report:
    """Counts of one preparation; every row read ends in exactly one of invalid, duplicates,
    opted_out or contacts."""

    rows_read: int = 0
    invalid: int = 0
    """Bad phone, or a placeholder without a value and without a default."""
    duplicates: int = 0
    """Same normalised phone as an earlier accepted (or opted-out) row: the first one wins."""
    opted_out: int = 0
    contacts: int = 0
    """Contacts that get messages."""
    messages: int = 0
    limit_reached: bool = False
    """Reading stopped at `limit` contacts: the rest of the file was not read."""
    finished: bool = False
    """The iteration ran to its end (or to the limit): the counts are final."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Why rows were refused (invalid, duplicate, opted out), as written in the rejected file."""

    @property
    def valid(self) -> int:
        """Rows with a valid phone and every field their messages need (duplicates and opt-outs included)."""
        return self.rows_read - self.invalid


class Preparation:
    """The messages of a campaign, produced while iterating (once); `report` fills in as they are."""

    def __init__(
        self,
        campaign: Campaign,
        reader: ContactReader,
        is_opted_out: Callable[[str], bool],
        limit: int | None,
        rejected: RejectedWriter | None,
    ) -> None:
        self.campaign = campaign
        self.report = Report()
        self.delimiter = reader.delimiter
        self.fields = reader.fields
        self.phone_field = reader.phone_field
        self.ddd_field = reader.ddd_field
        self._reader = reader
        self._is_opted_out = is_opted_out
        self._limit = limit
        self._rejected = rejected
        self._started = False
        self._templates = [
            (spec.index, spec.message_type, spec.media_url, spec.file_name)
            for spec in campaign.message_templates
        ]
        self._choice_lists = [(spec.index, spec.choices) for spec in campaign.message_templates]

    @property
    def encoding(self) -> str:
        """The contacts file's encoding; final once iteration ends (ASCII starts may turn out cp1252)."""
        return self._reader.encoding

    @property
    def notes(self) -> list[str]:
        """What the reader decided about the file that the operator should know."""
        notes = list(self._reader.notes)
        if self._reader.mixed_lines:
            notes.append(
                f"{self._reader.mixed_lines:,} lines were in another encoding than the rest (UTF-8 and "
                "cp1252 mixed); each line was decoded on its own"
            )
        return notes

    @property
    def rejected_path(self) -> Path | None:
        """The rejected-rows file, if this run refused any row and was given a writer."""
        return self._rejected.path if self._rejected is not None and self._rejected.count else None

    def __iter__(self) -> Iterator[Message]:
        if self._started:
            raise RuntimeError("a Preparation can be iterated only once")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[Message]:
        failed = False
        try:
            yield from self._messages()
            self.report.finished = True
        except GeneratorExit:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            self._reader.close()
            if self._rejected is not None:
                # A run that broke on a bad row produced nothing; its partial list would mislead.
                if failed:
                    self._rejected.discard()
                else:
                    self._rejected.close()

    def _messages(self) -> Iterator[Message]:
        report, limit = self.report, self._limit
        if limit == 0:
            report.limit_reached = True
            return
        instances, templates = self.campaign.instances, self._templates
        admit = self._admitter()
        seq = 0
        new_message = tuple.__new__
        for line, contact, values in self._reader:
            report.rows_read += 1
            admitted = admit(line, contact, values)
            if admitted is None:
                continue
            phone, rendered = admitted
            contact_index = report.contacts
            instance = instances[contact_index % len(instances)]
            for (index, kind, media_url, file_name), (variant, content) in zip(
                templates, rendered, strict=True
            ):
                # tuple.__new__ skips NamedTuple's Python-level __new__: a third of the per-message cost.
                yield new_message(
                    Message,
                    (seq, contact_index, index, line, phone, instance, kind, content, media_url, file_name,
                     variant, contact),
                )  # fmt: skip
                seq += 1
            report.contacts += 1
            report.messages = seq
            if limit is not None and report.contacts >= limit:
                report.limit_reached = True
                return

    def _admitter(self) -> Callable[[int, dict[str, str], list[str]], _Admitted | None]:
        """The check of one contact row: its phone and rendered templates, or None once it is refused
        (counted in the report, written to the rejected file). A closure: this runs for every row."""
        report, rejected = self.report, self._rejected
        country, locale, ddd_field = self.campaign.default_country, self.campaign.locale, self.ddd_field
        duplicate, opted_out = describe("duplicate", locale), describe("opted_out", locale)
        phone_field, is_opted_out, choice_lists = self.phone_field, self._is_opted_out, self._choice_lists
        reasons = report.reasons
        seen: set[int] = set()

        def refuse(line: int, values: list[str], reason: str) -> None:
            reasons[reason] += 1
            if rejected is not None:
                rejected.write(line, values, reason)

        def admit(line: int, contact: dict[str, str], values: list[str]) -> _Admitted | None:
            try:
                phone = pick_phone(contact[phone_field], country, contact[ddd_field] if ddd_field else None)
            except PhoneError as exc:
                report.invalid += 1
                refuse(line, values, describe("invalid_phone", locale, reason=exc.text(locale)))
                return None
            key = int(phone)
            if key in seen:
                report.duplicates += 1
                refuse(line, values, duplicate)
                return None
            seen.add(key)  # an opted-out or unrenderable number's later rows are duplicates too
            if is_opted_out(phone):
                report.opted_out += 1
                refuse(line, values, opted_out)
                return None
            try:
                return phone, _render_all(choice_lists, phone, contact)
            except MissingFieldError as exc:
                seen.discard(key)
                report.invalid += 1
                refuse(line, values, describe("missing_field", locale, field=exc.field))
                return None

        return admit

    def close(self) -> None:
        """Release the contacts file and finish the rejected file when iteration stopped early."""
        self._reader.close()
        if self._rejected is not None:
            self._rejected.close()

    def __enter__(self) -> Preparation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_Admitted = tuple[str, list[tuple[int, str | None]]]


def _render_all(
    choice_lists: list[tuple[int, tuple[Template | None, ...]]], phone: str, contact: dict[str, str]
) -> list[tuple[int, str | None]]:
    """(variant, text) of every template, before any is emitted: a contact is sent all or nothing."""
    rendered: list[tuple[int, str | None]] = []
    for index, choices in choice_lists:
        variant = choose_variant(phone, index, len(choices)) if len(choices) > 1 else 0
        choice = choices[variant]
        rendered.append((variant, None if choice is None else choice.render(contact)))
    return rendered


def prepare(
    campaign: Campaign,
    *,
    optouts: Callable[[str], bool] | Container[str],
    limit: int | None = None,
    rejected: RejectedWriter | None = None,
) -> Preparation:
    """Open the contacts and check the templates against their columns now; stream messages on iteration.

    `optouts` answers for normalised phones (`5511999990001`). `limit` keeps the first N accepted
    contacts and stops reading there. Errors in the file itself (no phone column, a placeholder that
    matches no column, a row with too many fields) raise `InputError`; bad rows are refused and counted.
    """
    if limit is not None and limit < 0:
        raise InputError(f"limit must be 0 or more, not {limit}")
    reader = ContactReader(
        campaign.contacts,
        phone_column=campaign.columns.phone,
        rename=campaign.columns.rename,
        display=_display(campaign.contacts),
        ddd_column=campaign.columns.ddd,
        country=campaign.default_country,
    )
    try:
        templates = [template for spec in campaign.message_templates for template in spec.parsed]
        check_fields(templates, reader.fields, source=campaign.source)
    except BaseException:
        reader.close()
        raise
    if rejected is not None:
        rejected.set_columns(reader.header, reader.delimiter, locale=campaign.locale)
    is_opted_out = optouts if callable(optouts) else optouts.__contains__
    return Preparation(campaign, reader, is_opted_out, limit, rejected)


def _display(path: Path) -> str:
    """Relative to the working directory when inside it: shorter in error messages."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
