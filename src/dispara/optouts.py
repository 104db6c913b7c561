"""Opt-outs: the numbers a tenant must never message again.

Numbers are normalised exactly like campaign contacts (`normalize_phone`), so `+55 (11) 99999-0001` and
`11999990001` are one row, and `campaign send` leaves them out. Plain functions over a connection and a
tenant id; the CLI (`dispara optout`) only parses and prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final
from uuid import UUID

from dispara.campaigns.contacts import ContactReader, RejectedWriter
from dispara.campaigns.phones import PhoneError, normalize_phone
from dispara.db import Connection
from dispara.db.queries import q
from dispara.db.rows import one_dict
from dispara.errors import InputError

__all__ = [
    "REASON_COLUMNS",
    "AddResult",
    "ImportReport",
    "InvalidNumber",
    "InvalidNumbersError",
    "OptOut",
    "RemoveResult",
    "add",
    "count",
    "import_csv",
    "iter_optouts",
    "normalize_numbers",
    "remove",
]

REASON_COLUMNS: Final = ("reason", "motivo")
"""Normalised header names of the optional per-row reason column of an import, first match wins."""


@dataclass(frozen=True)
class InvalidNumber:
    value: str
    """The number as given."""
    reason: str
    """Why it is not a usable phone number (`PhoneError.reason`)."""


class InvalidNumbersError(InputError):
    """Some numbers given on the command line are invalid; nothing was written."""

    def __init__(self, invalid: list[InvalidNumber], total: int) -> None:
        verb = "is" if len(invalid) == 1 else "are"
        super().__init__(f"{len(invalid)} of {total} numbers {verb} invalid: nothing written")
        self.invalid = invalid


@dataclass(frozen=True)
class OptOut:
    phone: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class AddResult:
    added: list[str]
    """Normalised numbers newly opted out, in the order given."""
    already: list[str]
    """Normalised numbers that were opted out before (their reason and date are kept)."""


@dataclass(frozen=True)
class RemoveResult:
    removed: list[str]
    not_found: list[str]
    """Normalised numbers that were not opted out."""


@dataclass
class ImportReport:
    """Every row read ends in exactly one of added, already_present, duplicates or invalid."""

    rows_read: int = 0
    added: int = 0
    already_present: int = 0
    """Numbers the tenant had opted out before this import."""
    duplicates: int = 0
    """Rows whose number an earlier row of the same file already had."""
    invalid: int = 0
    phone_column: str = ""
    reason_column: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    """Why rows were refused, as written in the rejected file."""
    rejected_path: Path | None = None
    """`<file>.rejected.csv` when some rows were refused."""


def normalize_numbers(numbers: Iterable[str], country: str = "BR") -> tuple[list[str], list[InvalidNumber]]:
    """The distinct normalised numbers in first-seen order, and the invalid ones with their reasons."""
    valid: dict[str, None] = {}
    invalid: list[InvalidNumber] = []
    for raw in numbers:
        try:
            valid.setdefault(normalize_phone(raw, country))
        except PhoneError as exc:
            invalid.append(InvalidNumber(raw, exc.reason))
    return list(valid), invalid


def _all_valid(numbers: list[str], country: str) -> list[str]:
    if not numbers:
        raise InputError("no numbers given")
    phones, invalid = normalize_numbers(numbers, country)
    if invalid:
        raise InvalidNumbersError(invalid, len(numbers))
    return phones


def add(
    conn: Connection, tenant_id: UUID, numbers: list[str], *, reason: str | None = None, country: str = "BR"
) -> AddResult:
    """Opt the numbers out; all or nothing: an invalid number raises `InvalidNumbersError`, writes nothing."""
    phones = _all_valid(numbers, country)
    params = {"tenant_id": tenant_id, "phones": phones, "reason": (reason or "").strip() or None}
    inserted = {row[0] for row in conn.execute(q("optout_add"), params)}
    return AddResult(
        added=[p for p in phones if p in inserted], already=[p for p in phones if p not in inserted]
    )


def remove(conn: Connection, tenant_id: UUID, numbers: list[str], *, country: str = "BR") -> RemoveResult:
    """Opt the numbers back in; all or nothing like `add`."""
    phones = _all_valid(numbers, country)
    deleted = {row[0] for row in conn.execute(q("optout_remove"), {"tenant_id": tenant_id, "phones": phones})}
    return RemoveResult(
        removed=[p for p in phones if p in deleted], not_found=[p for p in phones if p not in deleted]
    )


def iter_optouts(conn: Connection, tenant_id: UUID) -> Iterator[OptOut]:
    """The tenant's opt-outs, oldest first, streamed through a server-side cursor (lists can be huge)."""
    with conn.transaction(), conn.cursor(name="dispara_optout_list") as cur:
        cur.itersize = 5000
        cur.execute(q("optout_list"), {"tenant_id": tenant_id})
        for phone, reason, created_at in cur:
            yield OptOut(phone, reason, created_at)


def count(conn: Connection, tenant_id: UUID) -> int:
    row = conn.execute(q("optout_count"), {"tenant_id": tenant_id}).fetchone()
    return int(row[0]) if row else 0


def import_csv(
    conn: Connection,
    tenant_id: UUID,
    path: Path,
    *,
    reason: str | None = None,
    country: str = "BR",
    phone_column: str | None = None,
) -> ImportReport:
    """Opt out every valid number of a contacts CSV, in one transaction.

    The file is read like campaign contacts (encoding, delimiter and phone column detected); a `reason`
    (or `motivo`) column, when present, gives each row's reason, else `reason` is used. Valid rows are
    streamed by COPY into a temporary table and inserted with one `INSERT ... ON CONFLICT DO NOTHING`;
    rows with an invalid number go to `<file>.rejected.csv`. A file that breaks half-way (a malformed
    line, bad bytes) raises `InputError` and writes nothing, not even the rejected file.
    """
    report = ImportReport()
    rejected = RejectedWriter(path)
    default_reason = (reason or "").strip() or None
    succeeded = False
    try:
        with ContactReader(path, phone_column=phone_column, phone_hint="--phone-column") as reader:
            rejected.set_columns(reader.header, reader.delimiter)
            reason_field = next((name for name in REASON_COLUMNS if name in reader.fields), None)
            report.phone_column, report.reason_column = reader.phone_field, reason_field
            with conn.transaction():
                conn.execute(q("optout_import_table"))
                valid = _copy_valid(
                    conn, reader, report, rejected, country=country, default_reason=default_reason
                )
                row = one_dict(conn, q("optout_import_apply"), {"tenant_id": tenant_id})
                conn.execute(q("optout_import_drop"))
            assert row is not None
            added, distinct = int(row["added"]), int(row["distinct_phones"])
            report.added = added
            report.already_present = distinct - added
            report.duplicates = valid - distinct
        succeeded = True
    finally:
        if succeeded:
            rejected.close()
        else:
            rejected.discard()
    report.rejected_path = rejected.path if rejected.count else None
    return report


def _copy_valid(
    conn: Connection,
    reader: ContactReader,
    report: ImportReport,
    rejected: RejectedWriter,
    *,
    country: str,
    default_reason: str | None,
) -> int:
    """COPY the rows with a valid number into the import table, the others to `rejected`; how many."""
    valid = 0
    phone_field, reason_field = report.phone_column, report.reason_column
    with conn.cursor() as cur, cur.copy(q("optout_import_copy")) as copy:
        for line, contact, values in reader:
            report.rows_read += 1
            try:
                phone = normalize_phone(contact[phone_field], country)
            except PhoneError as exc:
                report.invalid += 1
                why = f"invalid phone: {exc.reason}"
                report.reasons[why] += 1
                rejected.write(line, values, why)
                continue
            row_reason = (contact.get(reason_field) or None) if reason_field else None
            copy.write_row((line, phone, row_reason or default_reason))
            valid += 1
    return valid
