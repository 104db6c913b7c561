"""`dispara campaign`: turn a campaign file into queued messages."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dispara.cli.app import App, pass_app
from dispara.cli.timefmt import local
from dispara.states import CAMPAIGN_STATUSES, MESSAGE_STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from dispara.campaigns.prepare import Report
    from dispara.campaigns.send import SendOutcome
    from dispara.config import Settings
    from dispara.db import Connection
    from dispara.transports.qstash import PublishReport


@click.group()
def campaign() -> None:
    """Create and manage campaigns.

    \b
    Example:
      dispara campaign send campaigns/example.yaml
    """


@campaign.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--dry-run", is_flag=True, help="Check everything, show the plan and --preview messages; write nothing."
)
@click.option(
    "--preview", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
    help="How many rendered messages to show.",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N contacts.")
@click.option(
    "--test-to", "test_to", multiple=True, metavar="NUMBER[,NUMBER]",
    help="Send the first contacts' messages to these numbers instead (a new campaign marked test).",
)  # fmt: skip
@click.option("--now", "start_now", is_flag=True, help="Start at once, even if schedule.at is in the past.")
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
    preview: int,
    limit: int | None,
    test_to: tuple[str, ...],
    start_now: bool,
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
      dispara campaign send campaigns/black-friday.yaml --dry-run --preview 10
      dispara campaign send campaigns/black-friday.yaml --test-to 5511999990001
      dispara campaign send campaigns/black-friday.yaml --yes --watch
    """
    from dispara.campaigns.send import Declined, send_campaign

    confirm = _confirmer(file, yes)
    with app.connect() as conn:
        tenant = app.tenant_id(conn, create=not dry_run)
        try:
            outcome = send_campaign(
                conn, tenant, file, dry_run=dry_run, limit=limit, new=force_new, confirm=confirm,
                preview=preview, start_now=start_now, test_to=test_to,
                publish=_QStashPublisher(app.settings),
            )  # fmt: skip
        except Declined:
            raise click.Abort from None
    if as_json:
        click.echo(json.dumps(_as_json(outcome), ensure_ascii=False, indent=2, default=str))
    else:
        _print_outcome(outcome, evolution=bool(app.settings.evolution.url))
    if then_watch and outcome.record is not None and not dry_run:
        from dispara.cli.status_cmd import follow

        sys.exit(follow(app, str(outcome.record.id)))


@dataclass(frozen=True)
class _QStashPublisher:
    """The QStash transport's publisher, imported (httpx, the QStash SDK) only for a QStash campaign."""

    settings: Settings

    def check(self, where: str) -> None:
        from dispara.transports.qstash import CampaignPublisher

        CampaignPublisher(self.settings).check(where)

    def publish(self, conn: Connection, campaign_id: UUID) -> Any:
        from dispara.transports.qstash import CampaignPublisher

        return CampaignPublisher(self.settings).publish(conn, campaign_id)


def _confirmer(file: Path, yes: bool) -> Callable[[SendOutcome], bool]:
    """Asks before messages are created: --yes, else a prompt on a terminal, else an error."""

    def confirm(outcome: SendOutcome) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            from dispara.errors import InputError

            raise InputError(f"{file}: {outcome.report.messages:,} messages to create: pass --yes to confirm")
        _print_report(outcome.report, err=True)
        _print_plan(outcome, err=True)
        return click.confirm(f"Create {outcome.report.messages:,} messages?", err=True)

    return confirm


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


def _print_plan(outcome: SendOutcome, *, err: bool = False) -> None:
    """Schedule, window, cap and the estimate from the pacing."""
    from dispara.cli.timefmt import duration

    c = outcome.campaign
    zone = outcome.window.tz if outcome.window else None
    start = f"at {local(outcome.scheduled_for, zone)}" if outcome.scheduled_for else "at once"
    click.echo(f"  {'starts':<11}{start}", err=err)
    click.echo(f"  {'window':<11}{outcome.window.describe() if outcome.window else 'any hour'}", err=err)
    cap = c.schedule.daily_cap if c.schedule and not outcome.test_to else None
    click.echo(f"  {'daily cap':<11}{f'{cap:,} per instance' if cap else 'none'}", err=err)
    click.echo(
        f"  {'pacing':<11}{len(c.instances)} instance(s), {c.delay.min:g}-{c.delay.max:g} s between "
        "two messages of one instance",
        err=err,
    )
    if outcome.estimate is not None and outcome.report.messages:
        e = outcome.estimate
        days = f" over {e.days} days" if e.days > 1 else ""
        click.echo(
            f"  {'estimate':<11}about {duration(e.duration.total_seconds())} of sending{days}, "
            f"last message around {local(e.finish, zone)}",
            err=err,
        )


def _print_outcome(outcome: SendOutcome, *, evolution: bool) -> None:
    c = outcome.campaign
    if outcome.record is not None and not outcome.created:
        r = outcome.record
        click.echo(
            f"campaign already exists: {r.name} ({r.id}) created {local(r.created_at)}, "
            f"status {r.status}, {r.sent_count:,} sent + {r.failed_count:,} failed of {r.total_messages:,}"
        )
        click.echo("nothing written; use --new to create another campaign from this file")
        return
    click.echo(f"{c.source}: {c.name}")
    for note in outcome.notes:
        click.echo(f"  note: {note}")
    _print_report(outcome.report)
    _print_plan(outcome)
    if outcome.rejected_path:
        click.echo(f"  refused rows and reasons: {outcome.rejected_path}")
    if outcome.dry_run:
        _print_dry_run(outcome)
        return
    assert outcome.record is not None
    r = outcome.record
    when = (
        f"scheduled for {local(outcome.scheduled_for, outcome.window.tz if outcome.window else None)}"
        if outcome.scheduled_for
        else "ready to send"
    )
    if outcome.published is not None:
        _print_published(r.id, outcome.published)
        return
    kind = f"test campaign (to {', '.join(outcome.test_to)})" if outcome.test_to else "campaign"
    click.echo(f"created {kind} {r.id}: {r.total_messages:,} messages queued, {when}")
    click.echo(f"next: `dispara worker` sends them; `dispara status {r.id.hex[:8]}` shows progress")
    if not evolution:
        click.echo(
            "note: no EVOLUTION_API_URL set: the worker will write messages to the outbox file, not WhatsApp"
        )


def _print_dry_run(outcome: SendOutcome) -> None:
    if outcome.existing is not None:
        r = outcome.existing
        click.echo(
            f"note: this file was already sent as campaign {r.id.hex[:8]} ({r.status}): a real send "
            "would only show it (use --new for another campaign)"
        )
    click.echo("dry run: nothing written" + (". First messages:" if outcome.preview else ""))
    for m in outcome.preview:
        body = (
            m.content if m.message_type == "text" else f"[{m.message_type} {m.media_url}] {m.content or ''}"
        )
        click.echo(f"  {m.phone} via {m.instance}: {body}")


def _print_published(campaign_id: UUID, published: PublishReport) -> None:
    finish = (
        f", the last one released {published.finish_at.astimezone():%Y-%m-%d %H:%M %Z}"
        if (published.finish_at)
        else ""
    )
    click.echo(
        f"created campaign {campaign_id}: {published.accepted:,} messages handed to QStash in "
        f"{published.batches:,} batch(es){finish}"
    )
    if published.pending:
        click.echo(
            f"dispara: warning: {published.pending:,} messages not accepted by QStash "
            f"({published.error or 'see the log'}): `dispara redrive` publishes them again",
            err=True,
        )
    click.echo(f"next: `dispara serve` receives them; `dispara status {campaign_id.hex[:8]}` shows progress")


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
        "estimate": None
        if outcome.estimate is None
        else {
            "start": outcome.estimate.start.isoformat(),
            "finish": outcome.estimate.finish.isoformat(),
            "seconds": round(outcome.estimate.duration.total_seconds()),
            "days": outcome.estimate.days,
        },
        "test_to": list(outcome.test_to),
        "notes": outcome.notes,
        "already_sent_as": str(outcome.existing.id) if outcome.existing else None,
        "qstash": _published_json(outcome.published),
        "report": {label.replace(" ", "_"): value for label, value in _report_rows(report)},
        "reasons": dict(report.reasons),
        "rejected_file": str(outcome.rejected_path) if outcome.rejected_path else None,
        "preview": [
            {"phone": m.phone, "instance": m.instance, "type": m.message_type, "content": m.content}
            for m in outcome.preview
        ],
    }


def _published_json(published: PublishReport | None) -> dict[str, Any] | None:
    if published is None:
        return None
    return {
        "accepted": published.accepted,
        "pending": published.pending,
        "batches": published.batches,
        "finish_at": published.finish_at.isoformat() if published.finish_at else None,
        "error": published.error,
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
    click.echo(f"{'id':<8}  {'created':<23}  {'status':<10}  {'sent':>9}  {'failed':>7}  {'total':>9}  name")
    for r in rows:
        click.echo(
            f"{r.id.hex[:8]}  {local(r.created_at):<23}  {r.status:<10}  "
            f"{r.sent:>9,}  {r.failed:>7,}  {r.total:>9,}  {r.name}"
        )


@campaign.command("export")
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--status", type=click.Choice(MESSAGE_STATUSES), help="Only messages in this status.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="FILE.csv, .json or .jsonl."
)
@click.option(
    "--columns",
    metavar="A,B,...",
    help="Only these columns, in this order (default: contact's, then message's).",
)
@pass_app
def export_(
    app: App, campaign_ref: str, status: str | None, output: Path | None, columns: str | None
) -> None:
    """Export each message with its contact's columns, phone, status, error and times, streamed.

    CSV to stdout without -o; the format follows the file's extension otherwise. CSV files start with
    a BOM, so that Excel shows accents.

    \b
    Example:
      dispara campaign export black-friday --status failed -o failed.csv
      dispara campaign export black-friday --columns nome,phone,status,error
    """
    from dispara.campaigns.export import export
    from dispara.errors import InputError

    fmt = output.suffix.lower().lstrip(".") if output else "csv"
    if fmt not in {"csv", "json", "jsonl"}:
        raise InputError(f"{output}: the export format follows the extension: .csv, .json or .jsonl")
    chosen = [name.strip() for name in columns.split(",") if name.strip()] if columns else None
    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        if output is None:
            export(conn, campaign_id, sys.stdout, fmt=fmt, status=status, columns=chosen)
            return
        partial = output.with_name(f".{output.name}.partial")
        encoding = "utf-8-sig" if fmt == "csv" else "utf-8"
        try:
            with partial.open("w", encoding=encoding, newline="") as out:
                count = export(conn, campaign_id, out, fmt=fmt, status=status, columns=chosen)
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
    click.echo(
        f"campaign {campaign_id} {status}" if status.changed else f"campaign {campaign_id} is already paused"
    )


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
    from dispara.transports import qstash

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        status = control.resume(conn, campaign_id)
        published = qstash.resume(conn, app.settings, campaign_id) if status.changed else None
    click.echo(
        f"campaign {campaign_id} {status}"
        if status.changed
        else f"campaign {campaign_id} is not paused ({status}): nothing to resume"
    )
    if published is not None and (published.accepted or published.pending):
        click.echo(f"{published.accepted:,} held messages handed to QStash again")
        if published.pending:
            click.echo(f"dispara: warning: {published.pending:,} still pending: {published.error}", err=True)


def _confirm_for_good(yes: bool, what: str, question: str) -> None:
    """An action that cannot be undone: asked at a terminal, else only with --yes."""
    from dispara.errors import InputError

    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(f"{what} cannot be undone: pass --yes to confirm")
    click.confirm(f"{question} This cannot be undone", abort=True, err=True)


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

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        _confirm_for_good(yes, f"cancelling campaign {campaign_id}", f"Cancel campaign {campaign_id}?")
        done = control.cancel(conn, campaign_id)
    click.echo(
        f"campaign {campaign_id} cancelled: {done.messages:,} messages cancelled, {done.jobs:,} jobs removed"
    )


@campaign.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app: App, campaign_ref: str, yes: bool) -> None:
    """Delete a campaign with its messages and jobs; refused while it is sending (cancel or pause it first).

    \b
    Example:
      dispara campaign delete black-friday --yes
    """
    from dispara.campaigns import control

    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        _confirm_for_good(
            yes, f"deleting campaign {campaign_id}", f"Delete campaign {campaign_id} and its messages?"
        )
        done = control.delete(conn, campaign_id)
    click.echo(f"campaign {campaign_id} deleted with {done.messages:,} messages and {done.jobs:,} jobs")


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
    from dispara.transports import qstash

    if transient_only and everything:
        raise click.UsageError("--transient-only and --all exclude each other")
    scope = "transient" if transient_only else "all" if everything else "default"
    with app.connect() as conn:
        campaign_id = app.campaign_id(conn, campaign_ref)
        count = control.retry(conn, campaign_id, scope=scope)
        again = qstash.retry(conn, app.settings, campaign_id, control.RETRY_KINDS[scope])
    if again is not None:
        count, published = again
        if published.pending:
            click.echo(f"dispara: warning: {published.pending:,} still pending: {published.error}", err=True)
    click.echo(f"{count:,} failed messages of campaign {campaign_id} queued again")
