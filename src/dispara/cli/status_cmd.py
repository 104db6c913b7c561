"""`dispara status` and `dispara watch`: a campaign's progress, once or live."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from dispara.cli.app import App, pass_app

if TYPE_CHECKING:
    from rich.console import RenderableType

    from dispara.status import Snapshot


@click.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with stable keys, for scripts.")
@pass_app
def status(app: App, campaign_ref: str, as_json: bool) -> None:
    """Show a campaign's progress. CAMPAIGN is an id, a unique id prefix, or a name.

    \b
    Example:
      dispara status black-friday
      dispara status 3f2a9c --json | jq .eta_seconds
    """
    from dispara import status as core

    with app.connect() as conn:
        snap = core.snapshot(conn, app.tenant_id(conn), app.campaign_id(conn, campaign_ref))
    if as_json:
        click.echo(json.dumps(snap.as_json(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    Console(highlight=False).print(render(snap, []))
    if not snap.counters_agree:
        click.echo(_disagreement(snap), err=True)


@click.command()
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between polls when no progress notification arrives.")  # fmt: skip
@pass_app
def watch(app: App, campaign_ref: str, interval: float) -> None:
    """Follow a campaign live until it completes (exit 0; 1 if any message failed) or Ctrl-C (130).

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
    return 1 if final.counts["failed"] else 0


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
    eta = _duration(snap.eta_seconds) if snap.eta_seconds is not None else "-"
    return (
        f"{snap.now:%Y-%m-%dT%H:%M:%S} {snap.name}: {snap.status} {snap.done}/{snap.total} "
        f"({snap.percent:.1f}%) sent {snap.counts['sent']} failed {snap.counts['failed']} "
        f"pending {snap.counts['queued'] + snap.counts['sending'] + snap.counts['pending']} "
        f"delivered {snap.receipts.delivered} read {snap.receipts.read} replied {snap.receipts.replied} "
        f"rate {snap.rate_per_min:.0f}/min eta {eta}"
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _clock(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _disagreement(snap: Snapshot) -> str:
    return (
        f"warning: campaign counters ({snap.counter_sent} sent, {snap.counter_failed} failed) disagree with "
        f"message_logs ({snap.counts['sent']} sent, {snap.counts['failed']} failed)"
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
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    c = snap.counts
    reason = f" ({snap.status_reason})" if snap.status_reason else ""
    head = Text.assemble((snap.name, "bold"), f"  {snap.id}  ", (snap.status, "bold cyan"), reason)
    times = Text(
        f"transport {snap.transport}  created {_clock(snap.created_at)}  started {_clock(snap.started_at)}  "
        f"completed {_clock(snap.completed_at)}"
        + (
            f"  scheduled for {_clock(snap.scheduled_for)}"
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
        + f"; ETA {_duration(snap.eta_seconds)}"
    )
    parts: list[RenderableType] = [head, times, bar, counts, _receipts_line(snap), rates]
    if snap.instances:
        table = Table(
            "instance", "sent", "failed", "pending", "next send", "paused", "delivered/read/replied",
            box=None, pad_edge=False,
        )  # fmt: skip
        for i in snap.instances:
            paused = f"until {_clock(i.paused_until)}: {i.pause_reason}" if i.paused else "-"
            r = i.receipts
            table.add_row(
                i.name, str(i.sent), str(i.failed), str(i.pending), _clock(i.next_send_at), paused,
                f"{r.delivered}/{r.read}/{r.replied}",
            )  # fmt: skip
        parts.append(table)
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
    if not snap.counters_agree:
        parts.append(Text(_disagreement(snap), style="bold red"))
    return Group(*parts)
