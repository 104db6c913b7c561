"""`dispara doctor`: check the database and every configured service, one line each."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from dispara.cli.app import App, pass_app

if TYPE_CHECKING:
    from dispara.doctor import CheckResult


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, status, detail, hint}.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.5, max=120),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Time allowed for each check.",
)
@pass_app
def doctor(app: App, as_json: bool, timeout: float) -> None:
    """Check the database and every configured service, one line each.

    \b
    ✓ healthy   ✗ failed, with a hint   - not configured (skipped, not a failure)

    Checks the database (reachable, migrated), Evolution (server, key, and that each instance
    used by the tenant's campaigns of the last 30 days is connected), QStash, ElevenLabs, Groq,
    Supabase Storage and the job webhook (one signed `ping` event is POSTed to it). Checks run
    concurrently with a short timeout each; no secret is printed.

    Exit code 0 when everything configured is healthy; 5 when the database check fails (it wins:
    nothing works without it); else 6 when any service check fails.

    \b
    Example:
      dispara doctor
      dispara --tenant loja-2 doctor --json | jq '.[] | select(.status == "fail")'
    """
    from dispara.doctor import failure, run_checks

    results = run_checks(app.settings, timeout=timeout)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        marks = _marks()
        for result in results:
            _print(result, marks)
    error = failure(results)
    if error is not None:
        raise error


def _marks() -> dict[str, str]:
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):  # a legacy Windows code page, say
        return {"ok": "+", "fail": "x", "skipped": "-"}
    return {"ok": "✓", "fail": "✗", "skipped": "-"}


def _print(result: CheckResult, marks: dict[str, str]) -> None:
    mark = marks[result.status]
    if result.status == "skipped":
        click.echo(f"{mark} {result.detail}")
        return
    click.echo(f"{mark} {result.name}: {result.detail}")
    if result.status == "fail" and result.hint:
        click.echo(f"    hint: {result.hint}")
