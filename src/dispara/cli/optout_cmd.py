"""`dispara optout`: the tenant's do-not-message list (add, remove, list, import a CSV)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dispara.cli.app import App, pass_app

if TYPE_CHECKING:
    from dispara.optouts import InvalidNumbersError

_COUNTRY = click.option(
    "--country",
    default="BR",
    show_default=True,
    metavar="CC",
    help="Country of numbers written without + or country code (ISO code, as in campaign files).",
)


@click.group()
def optout() -> None:
    """Numbers that must never get messages again (per tenant).

    Numbers are normalised like campaign contacts, so `+55 (11) 99999-0001` and `11999990001` are
    the same entry. `dispara campaign send` leaves opted-out numbers out.

    \b
    Example:
      dispara optout add 11999990001 --reason "pediu para sair"
    """


def _report_invalid(exc: InvalidNumbersError) -> None:
    for item in exc.invalid:
        click.echo(f"invalid number {item.value!r}: {item.reason}", err=True)


@optout.command()
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", metavar="TEXT", help="Why these numbers opted out (kept with each entry).")
@_COUNTRY
@pass_app
def add(app: App, numbers: tuple[str, ...], reason: str | None, country: str) -> None:
    """Opt NUMBERS out.

    All or nothing: if any number is invalid, each invalid one is reported with its reason, nothing
    is written and the exit code is 4. A number already opted out keeps its first reason and date.

    \b
    Example:
      dispara optout add "+55 (11) 99999-0001" 21988880002 --reason SAIR
    """
    from dispara import optouts

    with app.connect() as conn:
        try:
            result = optouts.add(
                conn, app.tenant_id(conn, create=True), list(numbers), reason=reason, country=country.upper()
            )
        except optouts.InvalidNumbersError as exc:
            _report_invalid(exc)
            raise
    for phone in result.added:
        click.echo(f"{phone}\topted out")
    for phone in result.already:
        click.echo(f"{phone}\talready opted out")
    click.echo(
        f"{len(result.added)} added, {len(result.already)} already opted out (tenant {app.settings.tenant})"
    )


@optout.command()
@click.argument("numbers", nargs=-1, required=True)
@_COUNTRY
@pass_app
def remove(app: App, numbers: tuple[str, ...], country: str) -> None:
    """Take NUMBERS off the opt-out list.

    Campaigns sent afterwards may message them again.

    All or nothing like `add`: an invalid number (exit code 4) removes nothing.

    \b
    Example:
      dispara optout remove 11999990001
    """
    from dispara import optouts

    with app.connect() as conn:
        try:
            result = optouts.remove(conn, app.tenant_id(conn), list(numbers), country=country.upper())
        except optouts.InvalidNumbersError as exc:
            _report_invalid(exc)
            raise
    for phone in result.removed:
        click.echo(f"{phone}\tremoved")
    for phone in result.not_found:
        click.echo(f"{phone}\twas not opted out")
    click.echo(f"{len(result.removed)} removed, {len(result.not_found)} were not opted out")


@optout.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {phone, reason, created_at}.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List the tenant's opt-outs: phone, date, reason (oldest first).

    \b
    Example:
      dispara optout list --json > optouts.json
    """
    from dispara import optouts

    with app.connect() as conn:
        entries = optouts.iter_optouts(conn, app.tenant_id(conn))
        if as_json:
            # Streamed item by item: the list may hold millions of numbers.
            first = True
            for entry in entries:
                item = {
                    "phone": entry.phone,
                    "reason": entry.reason,
                    "created_at": entry.created_at.isoformat(),
                }
                click.echo(("[" if first else ",") + json.dumps(item, ensure_ascii=False))
                first = False
            click.echo("[]" if first else "]")
            return
        shown = 0
        for entry in entries:
            click.echo(f"{entry.phone}\t{entry.created_at:%Y-%m-%d %H:%M}\t{entry.reason or ''}")
            shown += 1
    if not shown:
        click.echo(f"no opt-outs for tenant {app.settings.tenant}")


@optout.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--reason", metavar="TEXT", help="Reason for rows without a value in a reason/motivo column.")
@click.option(
    "--phone-column",
    metavar="NAME",
    help="The column holding the numbers (default: found like for campaigns).",
)
@_COUNTRY
@pass_app
def import_(app: App, file: Path, reason: str | None, phone_column: str | None, country: str) -> None:
    """Opt out every number of a CSV file, in one transaction.

    FILE is read like campaign contacts: encoding, delimiter and phone column are detected; an
    optional `reason` (or `motivo`) column gives each row's reason. Rows with an invalid number are
    skipped and written to FILE.rejected.csv with the reason (the import still succeeds, exit 0). A
    malformed file (exit code 4) writes nothing.

    \b
    Example:
      dispara optout import sair.csv --reason "respondeu SAIR"
    """
    from dispara import optouts

    with app.connect() as conn:
        report = optouts.import_csv(
            conn,
            app.tenant_id(conn, create=True),
            file,
            reason=reason,
            country=country.upper(),
            phone_column=phone_column,
        )
    click.echo(f"{file}: phone column {report.phone_column!r}, reason column {report.reason_column or '-'}")
    rows = [
        ("rows read", report.rows_read),
        ("added", report.added),
        ("already opted out", report.already_present),
        ("duplicates in file", report.duplicates),
        ("invalid", report.invalid),
    ]
    for label, value in rows:
        click.echo(f"  {label:<19}{value:>10,}")
    for why, n in report.reasons.most_common(5):
        click.echo(f"    {n:>6,} x {why}")
    if report.rejected_path is not None:
        click.echo(f"  refused rows and reasons: {report.rejected_path}")
