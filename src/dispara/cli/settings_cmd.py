"""`dispara settings`: the per-tenant settings table (API keys, voice, webhook)."""

from __future__ import annotations

import click

from dispara.cli.app import App, pass_app


@click.group()
def settings() -> None:
    """Per-tenant settings kept in the database.

    \b
    Example:
      dispara settings set elevenlabs-voice-id 21m00Tcm4TlvDq8ikWAM
    """


@settings.command("set")
@click.argument("key")
@click.argument("value")
@pass_app
def set_(app: App, key: str, value: str) -> None:
    """Set KEY to VALUE for the tenant.

    \b
    Example:
      dispara settings set JOB_WEBHOOK https://hooks.example.com/dispara
    """
    from dispara import tenant_settings

    with app.connect() as conn:
        tenant_settings.set_value(conn, app.tenant_id(conn, create=True), key, value)
    click.echo(f"{key} set for tenant {app.settings.tenant}")


@settings.command("get")
@click.argument("key")
@click.option("--reveal", is_flag=True, help="Print a secret value in full.")
@pass_app
def get(app: App, key: str, reveal: bool) -> None:
    """Print the value of KEY (secrets masked unless --reveal).

    \b
    Example:
      dispara settings get groq-apikey --reveal
    """
    from dispara import tenant_settings

    with app.connect() as conn:
        value = tenant_settings.get_value(conn, app.tenant_id(conn), key)
    click.echo(value if reveal else tenant_settings.mask_value(key, value))


@settings.command("list")
@click.option("--reveal", is_flag=True, help="Print secret values in full.")
@pass_app
def list_(app: App, reveal: bool) -> None:
    """List the tenant's settings (secrets masked unless --reveal).

    \b
    Example:
      dispara settings list
    """
    from dispara import tenant_settings

    with app.connect() as conn:
        values = tenant_settings.all_values(conn, app.tenant_id(conn))
    if not values:
        click.echo(f"no settings for tenant {app.settings.tenant}")
    for key, value in values.items():
        click.echo(f"{key}\t{value if reveal else tenant_settings.mask_value(key, value)}")


@settings.command("unset")
@click.argument("key")
@pass_app
def unset(app: App, key: str) -> None:
    """Remove KEY from the tenant's settings.

    \b
    Example:
      dispara settings unset JOB_WEBHOOK
    """
    from dispara import tenant_settings

    with app.connect() as conn:
        removed = tenant_settings.unset(conn, app.tenant_id(conn), key)
    click.echo(f"{key} removed" if removed else f"{key} was not set")
