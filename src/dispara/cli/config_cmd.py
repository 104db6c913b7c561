"""`dispara config`: show the effective configuration and where each value came from."""

from __future__ import annotations

import json

import click

from dispara.cli.app import App, pass_app


@click.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Example:
      dispara config show
    """


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: key -> {value, source}.")
@pass_app
def show(app: App, as_json: bool) -> None:
    """Print every setting, secrets masked, with its source (default, file, env, flag).

    \b
    Example:
      dispara --config prod.yaml config show
    """
    from dispara.config import mask

    cfg = app.config
    rows = [(key, mask(key, value), source) for key, value, source in cfg.items()]
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    click.echo(f"# config file: {cfg.file or 'none'}")
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        click.echo(f"{key:<{width}}  {value}  ({source})")
