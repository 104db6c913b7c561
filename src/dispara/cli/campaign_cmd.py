"""`dispara campaign`: turn a campaign file into queued messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dispara.cli.app import App, pass_app
from dispara.states import CAMPAIGN_STATUSES, MESSAGE_STATUSES

if TYPE_CHECKING:
    from dispara.campaigns.prepare import Report
    from dispara.campaigns.send import SendOutcome


@click.group()
def campaign() -> None:
    """Create and manage campaigns.

    \b
    Example:
      dispara campaign send campaigns/example.yaml
    """


@campaign.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check everything and preview 5 messages; write nothing.")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N contacts (a test send)."
)
@click.option(
    "--new", "force_new", is_flag=True, help="Create a new campaign even if this one was sent before."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation above 1,000 messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--watch", "then_watch", is_flag=True, help="Then follow the campaign live, as `dispara watch`."
)
@pass_app
def send(
    app: App,
    file: Path,
    dry_run: bool,
    limit: int | None,
    force_new: bool,
    yes: bool,
    as_json: bool,
    then_watch: bool,
) -> None:
    """Read FILE (campaign YAML + contacts CSV), render every message and queue it.

    Everything is written in one transaction: on any error nothing is. Sending the same
    file again is a no-op that shows the existing campaign.

    \b
    Example:
      dispara campaign send campaigns/black-friday.yaml --dry-run
      dispara campaign send campaigns/black-friday.yaml --limit 5 --new
      dispara campaign send campaigns/black-friday.yaml --yes --watch
    """
    from dispara.campaigns.send import Declined, send_campaign

    def confirm(report: Report) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            from dispara.errors import InputError

            raise InputError(f"{file}: {report.messages:,} messages to create: pass --yes to confirm")
        _print_report(report, err=True)
        return click.confirm(f"Create {report.messages:,} messages?", err=True)

    with app.connect() as conn:
        try:
            outcome = send_campaign(
                conn, app.tenant_id(conn), file, dry_run=dry_run, limit=limit, new=force_new, confirm=confirm
            )
        except Declined:
            raise click.Abort from None
    if as_json:
        click.echo(json.dumps(_as_json(outcome), ensure_ascii=False, indent=2, default=str))
    else:
        _print_outcome(outcome, evolution=bool(app.settings.evolution.url))
    if then_watch and outcome.record is not None and not dry_run:
        from dispara.cli.status_cmd import follow

        sys.exit(follow(app, str(outcome.record.id)))


def _report_rows(report: Report) -> list[tuple[str, int]]:
    return [
        ("rows read", report.rows_read),
        ("invalid", report.invalid),
        ("duplicates", report.duplicates),
        ("opted out", report.opted_out),
        ("contacts", report.contacts),
        ("messages", report.messages),
    ]


def _print_report(report: Report, *, err: bool = False) -> None:
    for label, value in _report_rows(report):
        click.echo(f"  {label:<11}{value:>10,}", err=err)
    for reason, count in report.reasons.most_common(5):
        click.echo(f"    {count:>6,} x {reason}", err=err)


def _print_outcome(outcome: SendOutcome, *, evolution: bool) -> None:
    c = outcome.campaign
    if outcome.record is not None and not outcome.created:
        r = outcome.record
        click.echo(
            f"campaign already exists: {r.name} ({r.id}) created {r.created_at:%Y-%m-%d %H:%M}, "
            f"status {r.status}, {r.sent_count:,} sent + {r.failed_count:,} failed of {r.total_messages:,}"
        )
        click.echo("nothing written; use --new to create another campaign from this file")
        return
    click.echo(f"{c.source}: {c.name}")
    _print_report(outcome.report)
    if outcome.rejected_path:
        click.echo(f"  refused rows and reasons: {outcome.rejected_path}")
    if outcome.dry_run:
        click.echo("dry run: nothing written. First messages:")
        for m in outcome.preview:
            body = (
                m.content
                if m.message_type == "text"
                else f"[{m.message_type} {m.media_url}] {m.content or ''}"
            )
            click.echo(f"  {m.phone} via {m.instance}: {body}")
        return
    assert outcome.record is not None
    r = outcome.record
    when = (
        f"scheduled for {outcome.scheduled_for:%Y-%m-%d %H:%M %Z}"
        if outcome.scheduled_for
        else "ready to send"
    )
    click.echo(f"created campaign {r.id}: {r.total_messages:,} messages queued, {when}")
    click.echo(f"next: `dispara worker` sends them; `dispara status {r.id.hex[:8]}` shows progress")
    if not evolution:
        click.echo(
            "note: no EVOLUTION_API_URL set: the worker will write messages to the outbox file, not WhatsApp"
        )


def _as_json(outcome: SendOutcome) -> dict[str, Any]:
    report = outcome.report
    record = outcome.record
    return {
        "file": outcome.campaign.source,
        "name": outcome.campaign.name,
        "dry_run": outcome.dry_run,
        "created": outcome.created,
        "existing": record is not None and not outcome.created,
        "campaign": None
        if record is None
        else {
            "id": str(record.id),
            "status": record.status,
            "total": record.total_messages,
            "sent": record.sent_count,
            "failed": record.failed_count,
            "created_at": record.created_at.isoformat(),
        },
        "scheduled_for": outcome.scheduled_for.isoformat() if outcome.scheduled_for else None,
        "report": {label.replace(" ", "_"): value for label, value in _report_rows(report)},
        "reasons": dict(report.reasons),
        "rejected_file": str(outcome.rejected_path) if outcome.rejected_path else None,
        "preview": [
            {"phone": m.phone, "instance": m.instance, "type": m.message_type, "content": m.content}
            for m in outcome.preview
        ],
    }


@campaign.command("list")
@click.option("--status", type=click.Choice(CAMPAIGN_STATUSES), help="Only campaigns in this status.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@pass_app
def list_(app: App, status: str | None, limit: int, as_json: bool) -> None:
    """Recent campaigns with their counters.

    \b
    Example:
      dispara campaign list --status processing
    """
    from dispara.campaigns.export import list_campaigns

    with app.connect() as conn:
        rows = list_campaigns(conn, app.tenant_id(conn), status=status, limit=limit)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"no campaigns in tenant {app.settings.tenant}")
        return
    click.echo(f"{'id':<8}  {'created':<16}  {'status':<10}  {'sent':>9}  {'failed':>7}  {'total':>9}  name")
    for r in rows:
        click.echo(
            f"{r.id.hex[:8]}  {r.created_at.astimezone():%Y-%m-%d %H:%M}  {r.status:<10}  "
            f"{r.sent:>9,}  {r.failed:>7,}  {r.total:>9,}  {r.name}"
        )


@campaign.command("export")
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--status", type=click.Choice(MESSAGE_STATUSES), help="Only messages in this status.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="FILE.csv, .json or .jsonl."
)
@pass_app
def export_(app: App, campaign_ref: str, status: str | None, output: Path | None) -> None:
    """Export the per-message log (phone, instance, status, times, Evolution key, error), streamed.

    CSV to stdout without -o; the format follows the file's extension otherwise.

    \b
    Example:
      dispara campaign export black-friday --status failed -o failed.csv
    """
    from dispara.campaigns.export import export
    from dispara.errors import InputError

    fmt = output.suffix.lower().lstrip(".") if output else "csv"
    if fmt not in {"csv", "json", "jsonl"}:
        raise InputError(f"{output}: the export format follows the extension: .csv, .json or .jsonl")
    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        if output is None:
            export(conn, campaign_id, sys.stdout, fmt=fmt, status=status)
            return
        partial = output.with_name(f".{output.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                count = export(conn, campaign_id, out, fmt=fmt, status=status)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(output)  # an interrupted export never leaves a truncated file under the real name
    click.echo(f"{count:,} messages written to {output}", err=True)


@campaign.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@pass_app
def pause(app: App, campaign_ref: str) -> None:
    """Stop sending a campaign's messages (those in flight finish); `resume` goes on.

    \b
    Example:
      dispara campaign pause black-friday
    """
    from dispara.campaigns import control

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        status = control.pause(conn, campaign_id)
    click.echo(f"campaign {campaign_id} {status}")


@campaign.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@pass_app
def resume(app: App, campaign_ref: str) -> None:
    """Resume a paused campaign (also one paused automatically after repeated failures).

    \b
    Example:
      dispara campaign resume black-friday
    """
    from dispara.campaigns import control

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        status = control.resume(conn, campaign_id)
    click.echo(f"campaign {campaign_id} {status}")


@campaign.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def cancel(app: App, campaign_ref: str, yes: bool) -> None:
    """Cancel a campaign: every unsent message is marked cancelled and its job removed from the queue.

    \b
    Example:
      dispara campaign cancel black-friday --yes
    """
    from dispara.campaigns import control
    from dispara.errors import InputError

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        if not yes:
            if not sys.stdin.isatty():
                raise InputError(f"cancelling campaign {campaign_id} cannot be undone: pass --yes to confirm")
            click.confirm(f"Cancel campaign {campaign_id}? This cannot be undone", abort=True, err=True)
        done = control.cancel(conn, campaign_id)
    click.echo(
        f"campaign {campaign_id} cancelled: {done.messages:,} messages cancelled, {done.jobs:,} jobs removed"
    )


@campaign.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--transient-only", is_flag=True, help="Only messages that failed for a temporary reason.")
@click.option("--all", "everything", is_flag=True, help="Also numbers that are not on WhatsApp.")
@pass_app
def retry(app: App, campaign_ref: str, transient_only: bool, everything: bool) -> None:
    """Requeue a campaign's failed messages, never numbers not on WhatsApp unless --all.

    \b
    Example:
      dispara campaign retry black-friday --transient-only
    """
    from dispara.campaigns import control

    if transient_only and everything:
        raise click.UsageError("--transient-only and --all exclude each other")
    scope = "transient" if transient_only else "all" if everything else "default"
    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        count = control.retry(conn, campaign_id, scope=scope)
    click.echo(f"{count:,} failed messages of campaign {campaign_id} queued again")
