"""`dispara jobs`: look at the queue and act on single jobs."""

from __future__ import annotations

import json

import click

from dispara.cli.app import App, pass_app
from dispara.states import JOB_STATUSES


def _when(value: object) -> str:
    from datetime import datetime

    from dispara.cli.timefmt import local

    return local(value) if isinstance(value, datetime) else "-"


def _short(text: str | None, width: int) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group()
def jobs() -> None:
    """The jobs queue: list, inspect, retry or cancel jobs.

    \b
    Example:
      dispara jobs list --status failed
    """


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this status.")
@click.option("--type", "task_type", metavar="T", help="Only jobs of this task type (e.g. send-message).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@pass_app
def list_(app: App, status: str | None, task_type: str | None, limit: int, as_json: bool) -> None:
    """List the newest jobs of the tenant.

    \b
    Example:
      dispara jobs list --status failed --type send-message --limit 20
    """
    from dispara.queue.admin import list_jobs

    with app.connect() as conn:
        found = list_jobs(conn, app.tenant_id(conn), status=status, task_type=task_type, limit=limit)
    if as_json:
        click.echo(json.dumps([j.to_json() for j in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no jobs")
        return
    click.echo(
        f"{'ID':>8}  {'STATUS':<10}  {'TYPE':<14}  {'INSTANCE':<14}  {'TRIES':>5}  {'RUN AT':<19}  ERROR"
    )
    for j in found:
        tries = f"{j.attempts}/{j.max_attempts}"
        click.echo(
            f"{j.id:>8}  {j.status:<10}  {_short(j.task_type, 14):<14}  {_short(j.instance, 14):<14}  "
            f"{tries:>5}  {_when(j.run_at):<19}  {_short(j.last_error, 60)}"
        )


@jobs.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@pass_app
def show(app: App, job_id: int, as_json: bool) -> None:
    """Show one job: payload, attempts, last error, result and times.

    \b
    Example:
      dispara jobs show 1234
    """
    from dispara.queue.admin import show_job

    with app.connect() as conn:
        job = show_job(conn, app.tenant_id(conn), job_id)
    if as_json:
        click.echo(json.dumps(job.to_json(), ensure_ascii=False, indent=2, default=str))
        return
    lines = [
        ("job", str(job.id)),
        ("status", job.status + (f" ({job.error_kind})" if job.error_kind else "")),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("instance", job.instance or "- (not paced)"),
        ("campaign", f"{job.campaign_name} ({job.campaign_id})" if job.campaign_id else "-"),
        ("message", f"{job.message_id} ({job.message_status}, to {job.phone})" if job.message_id else "-"),
        ("priority", str(job.priority)),
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("lease", f"{job.locked_by} until {_when(job.locked_until)}" if job.locked_by else "-"),
        ("last error", job.last_error or "-"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<12}{value}")
    click.echo("payload:")
    click.echo(json.dumps(job.payload, ensure_ascii=False, indent=2))
    click.echo("result:")
    click.echo(json.dumps(job.result, ensure_ascii=False, indent=2) if job.result is not None else "-")
    click.echo("webhooks:" + ("" if job.webhooks else " -"))
    for hook in job.webhooks:
        when = f"delivered {_when(hook['delivered_at'])}" if hook["delivered_at"] else hook["status"]
        error = f": {hook['last_error']}" if hook["last_error"] else ""
        click.echo(f"  {hook['event']:<11} {when}, {hook['attempts']} attempt(s){error}")


@jobs.command()
@click.argument("job_id", type=int)
@pass_app
def retry(app: App, job_id: int) -> None:
    """Run a failed job again now, with its attempts reset.

    Its message is queued again and leaves the campaign's failed count.

    \b
    Example:
      dispara jobs retry 1234
    """
    from dispara.queue.admin import retry_job

    with app.connect() as conn:
        done = retry_job(conn, app.tenant_id(conn), job_id)
    note = ""
    if done.campaign and done.campaign_status not in (None, "processing"):
        note = f"; campaign {done.campaign} is {done.campaign_status}, it sends again once resumed"
    click.echo(f"job {job_id} queued again{note}")


@jobs.command()
@click.argument("job_id", type=int)
@pass_app
def cancel(app: App, job_id: int) -> None:
    """Cancel a pending job; its message is marked cancelled and never sent.

    \b
    Example:
      dispara jobs cancel 1234
    """
    from dispara.queue.admin import cancel_job

    with app.connect() as conn:
        done = cancel_job(conn, app.tenant_id(conn), job_id)
    extra = (
        f"; campaign {done.campaign_completed} has nothing left and is completed"
        if done.campaign_completed
        else ""
    )
    click.echo(f"job {job_id} cancelled{extra}")
