"""`dispara evolution webhook setup`: point each instance's Evolution webhook at `dispara serve`."""

from __future__ import annotations

import json
import sys

import click

from dispara.cli.app import App, pass_app


@click.group()
def evolution() -> None:
    """The Evolution API server's side of dispara.

    \b
    Example:
      dispara evolution webhook setup --all
    """


@evolution.group()
def webhook() -> None:
    """The per-instance webhooks that bring receipts, replies and connection changes to `dispara serve`.

    \b
    Example:
      dispara evolution webhook setup --instance loja-01
    """


@webhook.command()
@click.option("--instance", "instances", multiple=True, metavar="NAME", help="An instance (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every instance on the Evolution server.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def setup(app: App, instances: tuple[str, ...], every: bool, yes: bool) -> None:
    """Set the webhook of instances to DISPARA_PUBLIC_URL/evolution/webhook, with the secret header.

    Shows what it will set and which instances differ, and asks first. Instances already right are
    left alone.

    \b
    Example:
      dispara evolution webhook setup --all
      dispara evolution webhook setup --instance loja-01 --yes
    """
    from dispara.config import reveal
    from dispara.errors import ConfigError, InputError
    from dispara.providers.evolution import EvolutionSender
    from dispara.receipts import setup as core

    if bool(instances) == every:
        raise click.UsageError("give --instance NAME (repeatable) or --all")
    settings = app.settings
    want = core.wanted(settings)
    api_key = reveal(settings.evolution.api_key)
    if not settings.evolution.url or not api_key:
        raise ConfigError("EVOLUTION_API_URL and EVOLUTION_API_KEY are needed to configure webhooks")
    with EvolutionSender(settings.evolution.url, api_key, typing_delay_ms=0) as sender:
        names = list(instances) if instances else sender.instance_names()
        changes = [core.Change(n, core.problem(sender.find_webhook(n), want)) for n in names]
        todo = [c for c in changes if c.problem is not None]
        click.echo("webhook: " + json.dumps(core.shown(want), ensure_ascii=False))
        for c in changes:
            click.echo(f"  {c.instance}: {c.problem or 'already set'}")
        if not todo:
            click.echo(f"{len(changes)} instance(s), every webhook already set")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise InputError(f"{len(todo)} webhook(s) to set: pass --yes to confirm")
            click.confirm(f"Set the webhook of {len(todo)} instance(s)?", abort=True, err=True)
        for c in todo:
            sender.set_webhook(c.instance, want)
            click.echo(f"  {c.instance}: set")
    click.echo(f"{len(todo)} webhook(s) set")
