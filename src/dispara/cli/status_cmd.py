"""`dispara status` and `dispara watch`: a campaign's progress, once or live."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from dispara.cli.app import App, pass_app
from dispara.cli.timefmt import duration, local
from dispara.errors import ExitCode

if TYPE_CHECKING:
    from rich.console import RenderableType

    from dispara.status import Snapshot


@click.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with stable keys, for scripts.")
@click.option("--verify", is_flag=True, help="Also count message_logs and compare (exit 8 if they differ).")
@pass_app
def status(app: App, campaign_ref: str, as_json: bool, verify: bool) -> None:
    """Show a campaign's progress. CAMPAIGN is an id, a unique id prefix, or a name.

    Counts come from the campaign's summary, kept as messages change; `--verify` counts message_logs too.

    \b
    Example:
      dispara status black-friday
      dispara status 3f2a9c --json | jq .eta_seconds
    """
    from dispara import status as core
    from dispara import summary

    with app.connect() as conn:
        snap = core.snapshot(conn, app.tenant_id(conn), app.campaign_id(conn, campaign_ref))
        conn.commit()  # the full count takes a snapshot of its own, consistent while workers send
        differences = summary.verify(conn, snap.id) if verify else []
    if as_json:
        shown = snap.as_json() | (
            {"verify": {"agrees": not differences, "differences": differences}} if verify else {}
        )
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
    else:
        from rich.console import Console

        Console(highlight=False).print(render(snap, []))
        if not snap.counters_agree:
            click.echo(_disagreement(snap), err=True)
        if verify and not differences:
            click.echo("summary verified: it agrees with a count of message_logs")
    for difference in differences:
        click.echo(f"summary disagrees with message_logs: {difference}", err=True)
    if differences:
        sys.exit(ExitCode.COUNTS_DISAGREE)


@click.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between polls when no progress notification arrives.")  # fmt: skip
@pass_app
def watch(app: App, campaign_ref: str, interval: float) -> None:
    """Follow a campaign live until it completes (exit 0; 7 if any message failed) or Ctrl-C (130).

    Redraws on progress notifications from the workers, polling as a fallback. Without a terminal it
    prints one line per change instead.

    \b
    Example:
      dispara watch black-friday
    """
    code = follow(app, campaign_ref, interval=interval)
    sys.exit(code)


def follow(app: App, campaign_ref: str, *, interval: float = 2.0) -> int:
    """Follow until the campaign finishes; the exit code `watch` uses."""
    from dispara.watching import watch_campaign

    with app.connect(autocommit=True) as conn:
        tenant = app.tenant_id(conn)
        campaign_id = app.campaign_id(conn, campaign_ref)
        if sys.stdout.isatty():
            final = _follow_live(app, tenant, campaign_id, interval)
        else:
            final = None
            for snap in watch_campaign(conn, tenant, campaign_id, poll_s=interval):
                click.echo(line(snap))
                final = snap
    assert final is not None
    return int(ExitCode.FAILED_MESSAGES if final.counts["failed"] else ExitCode.OK)


def _follow_live(app: App, tenant: object, campaign_id: object, interval: float) -> Snapshot:
    from uuid import UUID

    from rich.console import Console
    from rich.live import Live

    from dispara import status as core
    from dispara.watching import watch_campaign

    assert isinstance(tenant, UUID) and isinstance(campaign_id, UUID)
    final: Snapshot | None = None
    console = Console(highlight=False)
    with (
        app.connect(autocommit=True) as conn,
        app.connect(autocommit=True) as reader,
        Live(console=console, auto_refresh=False, screen=False, transient=False) as live,
    ):
        for snap in watch_campaign(conn, tenant, campaign_id, poll_s=interval, min_redraw_s=0.25):
            failures = core.latest_failures(reader, campaign_id)
            live.update(render(snap, failures), refresh=True)
            final = snap
    assert final is not None
    return final


def line(snap: Snapshot) -> str:
    """One line per change, for logs and pipes."""
    stalled = _stalled(snap)
    eta = "none (nothing is sending)" if stalled else duration(snap.eta_seconds)
    return (
        f"{snap.now.astimezone(ZoneInfo(snap.zone)).isoformat(timespec='seconds')} {snap.name}: "
        f"{snap.status} {snap.done}/{snap.total} "
        f"({snap.percent:.1f}%) sent {snap.counts['sent']} failed {snap.counts['failed']} "
        f"pending {snap.counts['queued'] + snap.counts['sending'] + snap.counts['pending']} "
        f"delivered {snap.receipts.delivered} read {snap.receipts.read} replied {snap.receipts.replied} "
        f"rate {snap.rate_per_min:.0f}/min eta {eta}"
    )


def _stalled(snap: Snapshot) -> str | None:
    """The plain sentence for "nothing is sending", or None while something is."""
    if snap.stalled_since is None:
        return None
    zone = ZoneInfo(snap.zone)
    last = f"last send {local(snap.last_sent_at, zone)}" if snap.last_sent_at else "nothing sent yet"
    return (
        f"nothing is sending: {snap.due:,} messages due and no worker has taken one since "
        f"{local(snap.stalled_since, zone)} ({last}); start `dispara worker` or cron `dispara redrive`"
    )


def _disagreement(snap: Snapshot) -> str:
    return (
        f"warning: campaign counters ({snap.counter_sent} sent, {snap.counter_failed} failed) disagree with "
        f"its summary ({snap.counts['sent']} sent, {snap.counts['failed']} failed); "
        "`--verify` counts message_logs"
    )


def _percent(n: int, of: int) -> str:
    return f" ({100 * n / of:.1f}%)" if of else ""


def _receipts_line(snap: Snapshot) -> str:
    """Delivered, read and replied, as shares of the messages sent."""
    r, sent = snap.receipts, snap.counts["sent"]
    return (
        f"delivered {r.delivered}{_percent(r.delivered, sent)}  read {r.read}{_percent(r.read, sent)}  "
        f"replied {r.replied}{_percent(r.replied, sent)}"
    )


def render(snap: Snapshot, failures: list[tuple[str, str, str, datetime]]) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    zone = ZoneInfo(snap.zone)
    parts = _summary(snap, zone)
    stalled = _stalled(snap)
    if stalled:
        parts.append(Text(stalled, style="bold yellow"))
    if snap.instances:
        parts.append(_instances(snap, zone))
    parts += _errors(snap, failures)
    if not snap.counters_agree:
        parts.append(Text(_disagreement(snap), style="bold red"))
    return Group(*parts)


def _summary(snap: Snapshot, zone: ZoneInfo) -> list[RenderableType]:
    """Name and status, times, the progress bar, counts, receipts and rates."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    c = snap.counts
    reason = f" ({snap.status_reason})" if snap.status_reason else ""
    head = Text.assemble((snap.name, "bold"), f"  {snap.id}  ", (snap.status, "bold cyan"), reason)
    times = Text(
        f"transport {snap.transport}  created {local(snap.created_at, zone)}  "
        f"started {local(snap.started_at, zone)}  completed {local(snap.completed_at, zone)}"
        + (
            f"  scheduled for {local(snap.scheduled_for, zone)}"
            if snap.scheduled_for and not snap.started_at
            else ""
        )
    )
    bar = Table.grid(padding=(0, 1))
    progress = ProgressBar(total=max(snap.total, 1), completed=snap.done, width=40)
    bar.add_row(progress, f"{snap.done}/{snap.total}", f"{snap.percent:.1f}%")
    counts = Text(
        f"sent {c['sent']}  failed {c['failed']}  cancelled {c['cancelled']}  "
        f"queued {c['queued']}  sending {c['sending']}  pending {c['pending']}"
    )
    since = snap.rate_since_start_per_min
    rates = Text(
        f"rate {snap.rate_per_min:.0f}/min (last minute)"
        + (f", {since:.1f}/min since start" if since is not None else "")
        + f"; ETA {duration(snap.eta_seconds)}"
    )
    return [head, times, bar, counts, _receipts_line(snap), rates]


def _instances(snap: Snapshot, zone: ZoneInfo) -> RenderableType:
    from rich.table import Table

    table = Table(
        "instance", "sent", "failed", "pending", "next send", "paused", "delivered/read/replied",
        box=None, pad_edge=False,
    )  # fmt: skip
    for i in snap.instances:
        paused = f"until {local(i.paused_until, zone)}: {i.pause_reason}" if i.paused else "-"
        next_send = "-" if snap.finished or not i.pending else local(i.next_send_at, zone)
        r = i.receipts
        table.add_row(
            i.name, str(i.sent), str(i.failed), str(i.pending), next_send, paused,
            f"{r.delivered}/{r.read}/{r.replied}",
        )  # fmt: skip
    return table


def _errors(snap: Snapshot, failures: list[tuple[str, str, str, datetime]]) -> list[RenderableType]:
    from rich.table import Table

    parts: list[RenderableType] = []
    if snap.errors:
        errors = Table("count", "top errors", box=None, pad_edge=False)
        for message, count in snap.errors:
            errors.add_row(str(count), message)
        parts.append(errors)
    if failures:
        latest = Table("latest failures", "instance", "error", box=None, pad_edge=False)
        for phone, instance, error, _ in failures:
            latest.add_row(phone, instance, error)
        parts.append(latest)
    return parts
