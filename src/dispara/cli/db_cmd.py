"""`dispara db`: migrations, the DSN in use, and the embedded server."""

from __future__ import annotations

import click

from dispara.cli.app import App, pass_app


@click.group()
def db() -> None:
    """The database: migrate it, show where it is, stop the embedded server.

    \b
    Example:
      dispara db migrate --yes
    """


@db.command()
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--print", "print_only", is_flag=True, help="Only print the pending SQL; change nothing.")
@click.option(
    "--all", "whole", is_flag=True, help="With --print: the whole schema from scratch, no database needed."
)
@click.option(
    "--supabase",
    is_flag=True,
    help="Also install the Supabase layer: pg_net/pg_cron wake-ups, row-level security.",
)
@click.option(
    "--dispatch-url", metavar="URL", help="With --supabase: dispara serve's /dispatch, woken by inserts."
)
@click.option("--remove", is_flag=True, help="With --supabase: take the Supabase layer out again.")
@pass_app
def migrate(
    app: App, yes: bool, print_only: bool, whole: bool, supabase: bool, dispatch_url: str | None, remove: bool
) -> None:
    """Bring the database schema up to date.

    Prints the SQL it is about to run and asks first. --print is for pasting into the Supabase SQL editor.
    --supabase adds the wake-ups of `dispara serve` (an insert trigger through pg_net, a pg_cron job every
    minute) and row-level security; --supabase --remove takes them out.

    \b
    Example:
      dispara db migrate --print --all > schema.sql
      dispara db migrate --supabase --dispatch-url https://dispara.example.com/dispatch
    """
    from dispara.db import migrate as mig
    from dispara.db.connect import locate, open_connection

    if whole:
        if not print_only or supabase:
            raise click.UsageError("--all goes with --print, and without --supabase")
        click.echo(mig.bookkeeping_sql() + "\n".join(m.script() for m in mig.available()), nl=False)
        return
    if (dispatch_url or remove) and not supabase:
        raise click.UsageError("--dispatch-url and --remove go with --supabase")
    if supabase:
        _migrate_supabase(app, yes=yes, print_only=print_only, dispatch_url=dispatch_url, remove=remove)
        return
    database = locate(app.settings)
    with open_connection(database) as conn:
        todo, script = mig.preview(conn)
        conn.rollback()
        if not todo:
            click.echo(f"-- schema is up to date (version {mig.latest_version()}) in {database.shown}")
            return
        if print_only:
            click.echo(mig.bookkeeping_sql() + script, nl=False)
            return
        click.echo(script, err=True)
        if not yes and not click.confirm(f"Apply {len(todo)} migration(s) to {database.shown}?", err=True):
            raise click.Abort
        applied = mig.apply(conn)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing (another process did it)"
    click.echo(f"applied {names}; schema at version {mig.latest_version()}")


def _migrate_supabase(
    app: App, *, yes: bool, print_only: bool, dispatch_url: str | None, remove: bool
) -> None:
    """The schema and the Supabase layer (or, with remove, the layer's removal), shown, asked, applied."""
    from dispara.config import reveal
    from dispara.db import migrate as mig
    from dispara.db.connect import locate, open_connection
    from dispara.supabase import install

    if remove == bool(dispatch_url):
        raise click.UsageError("--supabase takes --dispatch-url URL, or --remove")
    database = locate(app.settings)
    with open_connection(database) as conn:
        todo, schema = ([], "") if remove else mig.preview(conn)  # existing mapped tables adopted too
        plan = install.prepare(conn, app.settings, dispatch_url, remove=remove, applying=not print_only)
        conn.rollback()
        script = schema + plan.script()
        if print_only:
            click.echo((mig.bookkeeping_sql() if todo else "") + script, nl=False)
            return
        click.echo(script, err=True)
        what = "remove the Supabase layer from" if remove else "apply the schema and the Supabase layer to"
        if not yes and not click.confirm(f"{what.capitalize()} {database.shown}?", err=True):
            raise click.Abort
        with conn.transaction():
            if not remove:
                mig.apply(conn)
            install.apply(conn, plan, reveal(app.settings.server.api_key))
    for note in plan.notes:
        click.echo(f"left out: {note}", err=True)
    click.echo(f"Supabase layer {'removed' if remove else 'installed'} in {database.shown}")


@db.command()
@pass_app
def url(app: App) -> None:
    """Print the DSN in use (starting the embedded server if needed).

    \b
    Example:
      psql "$(dispara db url)"
    """
    from dispara.db.connect import locate

    click.echo(locate(app.settings).dsn)


@db.command()
@pass_app
def status(app: App) -> None:
    """Show which database is in use and its schema version.

    \b
    Example:
      dispara db status
    """
    from dispara.db import migrate as mig
    from dispara.db.connect import locate, open_connection
    from dispara.supabase.layer import installed

    database = locate(app.settings)
    with open_connection(database) as conn:
        version = mig.current_version(conn)
        layer = installed(conn)
    kind = "embedded" if database.embedded else "external"
    state = "up to date" if version == mig.latest_version() else f"behind (latest {mig.latest_version()})"
    click.echo(f"{kind} database {database.shown}\nschema version {version}: {state}")
    if layer:
        click.echo(f"Supabase layer: {', '.join(layer)}")


@db.command()
@pass_app
def stop(app: App) -> None:
    """Stop the embedded PostgreSQL server (it starts again on the next command).

    \b
    Example:
      dispara db stop
    """
    from dispara.db import embedded

    if app.settings.database_url:
        raise click.UsageError("DATABASE_URL is set: there is no embedded server to stop")
    stopped = embedded.stop(app.settings.data_dir)
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
