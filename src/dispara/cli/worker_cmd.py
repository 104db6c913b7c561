"""`dispara worker` and `dispara redrive`: run the queue, in the foreground or from cron."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import click

from dispara import logs
from dispara.cli.app import App, pass_app

if TYPE_CHECKING:
    from dispara.metrics import MetricsServer
    from dispara.queue.leases import Left
    from dispara.queue.worker import WorkerSummary


@contextmanager
def _stop_on_signals(stop: threading.Event, notice: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM/SIGINT ask for a graceful stop; a second one gives up waiting (exit 130)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        notice(f"dispara: {signal.Signals(signum).name}: finishing in-flight sends, then stopping")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _outcomes(summary: WorkerSummary) -> str:
    parts = [f"{summary.sent} sent", f"{summary.failed} failed"]
    if summary.done:
        parts.append(f"{summary.done} other done")
    if summary.retried:
        parts.append(f"{summary.retried} to retry")
    if summary.released:
        parts.append(f"{summary.released} put back")
    if summary.instances_paused:
        parts.append(_plural(summary.instances_paused, "instance pause"))
    if summary.campaigns_completed:
        parts.append(_plural(summary.campaigns_completed, "campaign") + " completed")
    if summary.campaigns_paused:
        parts.append(_plural(summary.campaigns_paused, "campaign") + " auto-paused")
    return ", ".join(parts)


_log_format = click.option(
    "--log-format",
    type=click.Choice(logs.LOG_FORMATS),
    default="text",
    show_default=True,
    help="json: one object per line (time, level, worker, job, message, campaign, outcome), from INFO up.",
)


def _setup_logs(app: App, fmt: logs.LogFormat) -> Callable[[str], None]:
    """Logs masked with every secret of the settings; JSON logs report each job outcome (INFO).

    Returns how to tell the operator something on stderr: a log record too when logs are JSON, so
    that every line there parses.
    """
    from dispara.config import secret_values

    floor = logging.INFO if fmt == "json" else logging.WARNING
    logs.configure(fmt, logs.level_for(app.verbose, app.debug, floor), secret_values(app.settings))
    if fmt == "json":
        return logging.getLogger("dispara.cli").info
    return lambda text: click.echo(text, err=True)


@contextmanager
def _metrics(
    app: App, port: int | None, host: str, notice: Callable[[str], None]
) -> Iterator[MetricsServer | None]:
    if port is None:
        yield None
        return
    from dispara.metrics import serve

    server = serve(app.settings, port, host)
    notice(f"worker: metrics on http://{host}:{server.port}/metrics")
    try:
        yield server
    finally:
        server.close()


@click.command()
@click.option(
    "--concurrency", type=click.IntRange(1, 256), help="Sends at once (default worker.concurrency)."
)
@click.option(
    "--once", is_flag=True, help="Drain what is queued and due (waiting out pacing gaps), then exit."
)
@click.option(
    "--max-seconds", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Stop after S seconds."
)
@_log_format
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Serve Prometheus metrics on this port (0: any free one, printed at start).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics listen on.")
@click.option(
    "--all-tenants",
    is_flag=True,
    help="Serve every tenant, each with its own Evolution and webhook settings where it has them.",
)
@pass_app
def worker(
    app: App,
    concurrency: int | None,
    once: bool,
    max_seconds: float | None,
    log_format: logs.LogFormat,
    metrics_port: int | None,
    metrics_host: str,
    all_tenants: bool,
) -> None:
    """Claim queued jobs and send them, one message at a time per WhatsApp instance.

    Runs until SIGTERM or Ctrl-C: in-flight sends finish (up to worker.grace_s) and whatever did not
    start goes back to the queue. Many workers, on many hosts, may share one database.

    \b
    Example:
      dispara worker --concurrency 8
      dispara worker --log-format json --metrics-port 9464
      dispara worker --all-tenants
      dispara campaign send campaigns/example.yaml && dispara worker --once
    """
    from dispara.queue.worker import run_worker

    notice = _setup_logs(app, log_format)
    stop = threading.Event()
    with _stop_on_signals(stop, notice), _metrics(app, metrics_port, metrics_host, notice):
        summary = run_worker(
            app.settings,
            concurrency=concurrency,
            once=once,
            max_seconds=max_seconds,
            stop_event=stop,
            notice=notice,
            all_tenants=all_tenants,
        )
    click.echo(f"worker: {_outcomes(summary)} in {summary.elapsed_s:.1f}s")
    _echo_left(summary.left)


def _echo_left(left: list[Left]) -> None:
    """With --once: what is still queued and why, so an early exit is never silent."""
    for group in left:
        until = f" (until {group.until.isoformat(timespec='seconds')})" if group.until else ""
        click.echo(f"left: {_plural(group.jobs, 'job')} queued: {group.reason}{until}")


@click.command()
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    metavar="S",
    help="Stop draining after S seconds (keep it under the cron period).",
)
@_log_format
@pass_app
def redrive(app: App, max_seconds: float, log_format: logs.LogFormat) -> None:
    """Rescue stuck jobs, re-arm retryable failures, resume rested instances, then drain what is due.

    Made for cron: safe to run while workers run, and prints one summary line.

    \b
    Example:
      */1 * * * * dispara redrive --max-seconds 50
    """
    from dispara.queue.redrive import redrive as run_redrive
    from dispara.transports.qstash import republish_configured

    notice = _setup_logs(app, log_format)
    stop = threading.Event()
    with _stop_on_signals(stop, notice):
        report = run_redrive(app.settings, max_seconds=max_seconds, stop_event=stop)
    published = republish_configured(app.settings)
    if published is not None and (published.accepted or published.pending):
        click.echo(f"redrive: QStash {published.accepted:,} published, {published.pending:,} still pending")
        if published.error:
            click.echo(f"dispara: warning: {published.error}", err=True)
    click.echo(
        f"redrive: {_plural(report.leases_reset, 'lease')} reset, {_plural(report.rearmed, 'job')} re-armed, "
        f"{_plural(report.resumed, 'instance')} resumed, {_plural(report.pruned, 'old job')} pruned, "
        f"{report.summary.sent} sent, "
        f"{report.summary.failed} failed in {report.elapsed_s:.1f}s"
    )
    _echo_left(report.summary.left)
