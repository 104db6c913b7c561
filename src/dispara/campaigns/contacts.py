"""Contacts CSV, streamed in constant memory: encoding and delimiter detected on a sample.

`RejectedWriter` writes refused rows to `<input>.rejected.csv`, in dry runs too: it touches no
database and shows the operator what to fix before the real run.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple, TextIO

from dispara.campaigns.columns import choose_ddd_column, choose_phone_column
from dispara.campaigns.names import normalize_key
from dispara.campaigns.reasons import REJECTED_HEADER
from dispara.errors import InputError
from dispara.files import cannot_open

if TYPE_CHECKING:
    from _csv import Reader, Writer

__all__ = [
    "ContactReader",
    "ContactRow",
    "RejectedWriter",
    "rejected_path",
]

SAMPLE_BYTES: Final = 64 * 1024
SAMPLE_ROWS: Final = 50
_DELIMITERS: Final = (";", "\t", ",")
_EXCEL_SEP_LINE: Final = re.compile(r"sep=(.)\s*")
_LOOKS_LIKE_PHONE: Final = re.compile(r"[+(]?\d[\d\s().\-]{6,}\d")
_LATIN1: Final = "dispara-latin1"
_LONE_CR: Final = re.compile(r"(?<=\r)(?!\n)")


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    # cp1252 leaves 5 bytes undefined; Latin-1 maps them, so an Excel export always decodes.
    if isinstance(exc, UnicodeDecodeError):
        return exc.object[exc.start : exc.end].decode("latin-1"), exc.end
    raise exc


codecs.register_error(_LATIN1, _latin1_fallback)


class ContactRow(NamedTuple):
    line: int
    """1-based line of the file where the row starts (the header is line 1 in a plain file)."""
    contact: dict[str, str]
    """Normalised field name -> value with surrounding spaces removed."""
    values: list[str]
    """The row as read, one value per header column, for the rejected file."""


class ContactReader:
    """Opens the CSV and reads its header at once (so errors come early); iterating streams the rows."""

    def __init__(
        self,
        path: Path,
        *,
        phone_column: str | None = None,
        rename: Mapping[str, str] | None = None,
        display: str | None = None,
        phone_hint: str = "columns.phone in the campaign file",
        ddd_column: str | None = None,
        country: str = "BR",
    ) -> None:
        self.path = path
        self.display = str(path) if display is None else display
        self._phone_hint = phone_hint  # how the caller lets the operator name the phone column
        self._ddd_column = ddd_column
        self._country = country
        self.notes: list[str] = []
        """What the reader decided that the operator should know (which phone column, mixed encodings)."""
        self.mixed_lines = 0
        """Lines decoded as UTF-8 in a cp1252 file, or the other way round."""
        try:
            self._file: BinaryIO = path.open("rb")
        except OSError as exc:
            raise InputError(cannot_open(exc, self.display, "CSV file")) from None
        try:
            self._open(phone_column, rename or {})
        except BaseException:
            self._file.close()
            raise

    encoding: str
    """`utf-8`, `utf-8-sig`, `utf-16` or `cp1252`; a pure-ASCII start may turn `utf-8` into `cp1252` later."""
    delimiter: str
    header: list[str]
    """The header as written (spaces trimmed), one entry per column."""
    fields: tuple[str, ...]
    """Field names of the contacts: normalised, renamed, unnamed columns left out."""
    phone_field: str
    ddd_field: str | None
    """The field holding a separate area code (DDD), if there is one."""

    def _open(self, phone_column: str | None, rename: Mapping[str, str]) -> None:
        sample = self._file.read(SAMPLE_BYTES)
        self._file.seek(0)
        self.encoding, self._may_fall_back = _detect_encoding(sample, self.display)
        sample_text = sample.decode(self.encoding, errors="replace")
        sample_lines = [line for line in sample_text.splitlines() if line.strip()]
        if not sample_lines:
            raise InputError(f"{self.display}: empty file (expected a header line such as nome;telefone)")
        excel_sep = _EXCEL_SEP_LINE.fullmatch(sample_lines[0])
        if excel_sep:
            self.delimiter = excel_sep[1]
        else:
            self.delimiter = _sniff_delimiter(sample_lines[0], sample_lines[1:20])
        # Excel for Mac can end lines with a lone CR, which splitting on b"\n" would not see.
        self._cr_only = b"\n" not in sample and b"\r" in sample
        self._reader: Reader = csv.reader(self._lines(), delimiter=self.delimiter, strict=True)
        self._previous_line = 0
        header_values = self._first_record(skip=1 if excel_sep else 0)
        if header_values is None:
            raise InputError(f"{self.display}: empty file (expected a header line such as nome;telefone)")
        self.header_line, values = header_values
        self.header = [value.strip() for value in values]
        self._sample_rows = _sample_rows(sample_lines[1 + (1 if excel_sep else 0) :], self.delimiter)
        self._setup_columns(phone_column, rename)

    def _first_record(self, *, skip: int) -> tuple[int, list[str]] | None:
        for line, values in self._records():
            if skip:
                skip -= 1
                continue
            return line, values
        return None

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """Non-blank records with the line they start on."""
        reader = self._reader
        try:
            for values in reader:
                line = self._previous_line + 1
                self._previous_line = reader.line_num
                if values and (values[0].strip() or any(value.strip() for value in values)):
                    yield line, values
        except csv.Error as exc:
            raise self._csv_error(exc) from None

    def _csv_error(self, exc: csv.Error) -> InputError:
        """A csv module error in our words, at the line where the broken record starts."""
        start, now = self._previous_line + 1, self._reader.line_num
        text = str(exc)
        if "unexpected end of data" in text or (now > start and "expected after" not in text):
            problem = f'line {start}: a quote (") opened here is never closed'
        elif "expected after" in text:
            problem = f'line {now}: a quote inside a value must be doubled ("") or the whole value quoted'
        elif "field larger than field limit" in text:
            problem = f"line {start}: a value longer than 128 KB (an unclosed quote?)"
        else:
            problem = f"line {now}: not readable as CSV"
        return InputError(f"{self.display}: {problem}")

    def _setup_columns(self, phone_column: str | None, rename: Mapping[str, str]) -> None:
        names = [normalize_key(value) for value in self.header]
        found = ", ".join(value for value in self.header if value) or "none"
        for value in self.header:
            if _LOOKS_LIKE_PHONE.fullmatch(value):
                raise InputError(
                    f"{self.display}: line {self.header_line} looks like data ({value!r}); the first line "
                    "must be a header naming the columns, such as nome;telefone"
                )
        first_of: dict[str, str] = {}
        for name, value in zip(names, self.header, strict=True):
            if name and name in first_of:
                raise InputError(
                    f"{self.display}: columns {first_of[name]!r} and {value!r} have the same name"
                )
            first_of.setdefault(name, value)

        phone_index = self._phone_index(names, phone_column, found)
        ddd_index = self._ddd_index(names, phone_index, found)
        final = list(names)
        for source, target in rename.items():
            if normalize_key(source) not in names:
                raise InputError(
                    f"{self.display}: column {source!r} named in columns.rename is not in the header "
                    f"(columns: {found})"
                )
            final[names.index(normalize_key(source))] = normalize_key(target)
        named = [name for name in final if name]
        if len(set(named)) != len(named):
            twice = next(name for name in named if named.count(name) > 1)
            raise InputError(f"{self.display}: after columns.rename two columns are called {twice!r}")

        self.fields = tuple(named)
        self.phone_field = final[phone_index]
        self.ddd_field = final[ddd_index] if ddd_index is not None else None
        self._keys = tuple(final)
        self._named = None if len(named) == len(final) else tuple(i for i, name in enumerate(final) if name)

    def _phone_index(self, names: list[str], phone_column: str | None, found: str) -> int:
        if phone_column is not None:
            if normalize_key(phone_column) not in names:
                raise InputError(
                    f"{self.display}: column {phone_column!r} named in columns.phone is not in the header "
                    f"(columns: {found})"
                )
            return names.index(normalize_key(phone_column))
        choice = choose_phone_column(self.header, self._sample_rows, self._country)
        if choice is None:
            raise InputError(
                f"{self.display}: no phone column (columns: {found}; none reads as a phone, WhatsApp or "
                f"mobile column); name it with {self._phone_hint}"
            )
        if choice.others:
            others = ", ".join(repr(self.header[i]) for i in choice.others)
            self.notes.append(
                f"phone column: {self.header[choice.index]!r} (also plausible: {others}); "
                f"choose another with {self._phone_hint}"
            )
        return choice.index

    def _ddd_index(self, names: list[str], phone_index: int, found: str) -> int | None:
        if self._ddd_column is None:
            index = choose_ddd_column(self.header, phone_index)
            if index is not None:
                self.notes.append(
                    f"area code (DDD) column: {self.header[index]!r}, joined to phones written without one"
                )
            return index
        if normalize_key(self._ddd_column) not in names:
            raise InputError(
                f"{self.display}: column {self._ddd_column!r} named in columns.ddd is not in the header "
                f"(columns: {found})"
            )
        return names.index(normalize_key(self._ddd_column))

    def __iter__(self) -> Iterator[ContactRow]:
        # One generator for the whole row path (no `_records` layer): this runs millions of times.
        keys, named, width, reader = self._keys, self._named, len(self._keys), self._reader
        new_row = tuple.__new__
        try:
            for values in reader:
                line = self._previous_line + 1
                self._previous_line = reader.line_num
                if not values or not (values[0].strip() or any(value.strip() for value in values)):
                    continue
                if len(values) != width:
                    self._fit(values, line, width)
                if named is None:
                    contact = dict(zip(keys, map(str.strip, values), strict=True))
                else:
                    contact = {keys[i]: values[i].strip() for i in named}
                yield new_row(ContactRow, (line, contact, values))
        except csv.Error as exc:
            raise self._csv_error(exc) from None

    def _fit(self, values: list[str], line: int, width: int) -> None:
        """Pad a short row; trim a long one whose extra cells are empty, else refuse the file."""
        if len(values) < width:
            values.extend([""] * (width - len(values)))
        elif any(value.strip() for value in values[width:]):
            raise InputError(
                f"{self.display}: line {line}: {len(values)} fields but the header has {width} "
                f"(a value with an unquoted {self.delimiter!r}?)"
            )
        else:
            # Trailing empty cells are what Excel leaves after a deleted column.
            del values[width:]

    def _lines(self) -> Iterator[str]:
        if self.encoding == "utf-16" or self._cr_only:
            yield from self._text_lines()
            return
        utf8 = self.encoding != "cp1252"
        for raw in self._file:
            # Files pasted together from several exports mix UTF-8 and cp1252 lines: each line is decoded
            # on its own, UTF-8 first (cp1252 text is almost never valid UTF-8), so neither turns to mojibake.
            try:
                line = raw.decode(self.encoding if utf8 else "utf-8")
                if not utf8 and not raw.isascii():
                    self.mixed_lines += 1
            except UnicodeDecodeError:
                line = raw.decode("cp1252", _LATIN1)
                if utf8 and not self._may_fall_back:
                    self.mixed_lines += 1
                elif utf8:
                    # The sample was plain ASCII, so nothing said UTF-8: an Excel export is likelier.
                    self.encoding, utf8 = "cp1252", False
            if line.find("\r", 0, len(line) - 2) >= 0:
                # Mixed line endings: a lone CR ends a line too (csv would call it a "new-line in field").
                yield from _LONE_CR.split(line)
            else:
                yield line

    def _text_lines(self) -> Iterator[str]:
        errors = _LATIN1 if self.encoding == "cp1252" else "strict"
        text = io.TextIOWrapper(self._file, encoding=self.encoding, errors=errors, newline="")
        try:
            yield from text
        except UnicodeDecodeError:
            where = f"near line {self._reader.line_num + 1}"
            raise InputError(f"{self.display}: {where}: bytes that are not {self.encoding.upper()}") from None
        finally:
            text.detach()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ContactReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _sample_rows(lines: Sequence[str], delimiter: str) -> list[list[str]]:
    """The first rows of the sample, leniently parsed: only to judge which column holds phones."""
    try:
        return list(csv.reader(lines[:SAMPLE_ROWS], delimiter=delimiter))
    except csv.Error:
        return []


def _detect_encoding(sample: bytes, display: str) -> tuple[str, bool]:
    """The encoding, and whether a later non-UTF-8 line may switch it to cp1252."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", False
    if sample.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise InputError(f"{display}: is an Excel workbook, not a CSV; save it as CSV first")
    if b"\x00" in sample:
        raise InputError(f"{display}: contains NUL bytes, so it is not a text CSV")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "cp1252", False
    return "utf-8", sample.isascii()


def _count_outside_quotes(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def _sniff_delimiter(header: str, following: Sequence[str]) -> str:
    """The candidate most frequent in the header; ties go to the one whose count the rows repeat."""
    counts = {delimiter: _count_outside_quotes(header, delimiter) for delimiter in _DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return ","
    tied = [delimiter for delimiter in _DELIMITERS if counts[delimiter] == best]
    return max(tied, key=lambda d: sum(_count_outside_quotes(line, d) == best for line in following))


def rejected_path(input_path: Path) -> Path:
    """`contacts.csv` -> `contacts.rejected.csv`, in the same folder."""
    return input_path.with_name(f"{input_path.stem}.rejected.csv")


class RejectedWriter:
    """Refused rows with their original columns plus `line` and `reason`, in UTF-8 with BOM for Excel.

    The file is created at the first refused row. Closing without any refused row removes a file left
    by an earlier run, so what lies beside the input always describes the latest run.
    """

    def __init__(self, input_path: Path) -> None:
        self.path = rejected_path(input_path)
        self.count = 0
        self._columns: list[str] = []
        self._delimiter = ","
        self._added: tuple[str, str] = REJECTED_HEADER["en"]
        self._file: TextIO | None = None
        self._writer: Writer | None = None

    def set_columns(self, header: Sequence[str], delimiter: str = ",", *, locale: str = "en") -> None:
        """The input's header and delimiter, so the rejected file opens like the input did."""
        self._columns = list(header)
        self._delimiter = delimiter
        self._added = REJECTED_HEADER.get(locale, REJECTED_HEADER["en"])

    def write(self, line: int, values: Sequence[str], reason: str) -> None:
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file, delimiter=self._delimiter)
            self._writer.writerow([*self._columns, *self._added])
        width = len(self._columns)
        padded = list(values[:width]) + [""] * (width - len(values))
        self._writer.writerow([*padded, line, reason])
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self.count == 0:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Close and delete the file, e.g. when the run it belongs to failed."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.count = 0

    def __enter__(self) -> RejectedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
