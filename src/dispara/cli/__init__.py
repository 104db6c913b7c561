"""The `dispara` command line: a thin layer that parses, calls one core function, and renders.

Every error that reaches `main()` becomes one line on stderr and the exit code of `dispara.errors`.
"""

from __future__ import annotations

import sys
import traceback
from importlib import import_module
from typing import Any

import click

from dispara import __version__, logs
from dispara.cli.app import App
from dispara.errors import DisparaError, ExitCode, exit_code_for

# name -> (module, attribute); modules are imported only when their command runs or help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "audio": ("dispara.cli.audio_cmd", "audio"),
    "campaign": ("dispara.cli.campaign_cmd", "campaign"),
    "config": ("dispara.cli.config_cmd", "config"),
    "db": ("dispara.cli.db_cmd", "db"),
    "doctor": ("dispara.cli.doctor_cmd", "doctor"),
    "evolution": ("dispara.cli.evolution_cmd", "evolution"),
    "jobs": ("dispara.cli.jobs_cmd", "jobs"),
    "optout": ("dispara.cli.optout_cmd", "optout"),
    "redrive": ("dispara.cli.worker_cmd", "redrive"),
    "serve": ("dispara.cli.serve_cmd", "serve"),
    "settings": ("dispara.cli.settings_cmd", "settings"),
    "status": ("dispara.cli.status_cmd", "status"),
    "watch": ("dispara.cli.status_cmd", "watch"),
    "worker": ("dispara.cli.worker_cmd", "worker"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name]
            command: click.Command = getattr(import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


class _Flags:
    """Root options that `main()` needs after click has returned."""

    debug = False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_file", metavar="PATH", help="YAML config file (else $DISPARA_CONFIG, ./dispara.yaml)."
)
@click.option("--tenant", metavar="NAME", help="Tenant whose data to use (else $DISPARA_TENANT, 'default').")
@click.option("-v", "--verbose", count=True, help="More output: -v one line per step, -vv debug.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="dispara")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, tenant: str | None, verbose: int, debug: bool) -> None:
    """Send WhatsApp campaigns and audio jobs through a Postgres queue.

    \b
    Example:
      dispara campaign send campaigns/example.yaml
    """
    _Flags.debug = debug
    logs.configure("text", logs.level_for(verbose, debug))
    ctx.obj = App(config_file=config_file, tenant=tenant, verbose=verbose, debug=debug)


def _report(exc: BaseException) -> int:
    code = exit_code_for(exc)
    if _Flags.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt):
        click.echo("dispara: interrupted", err=True)
    elif isinstance(exc, DisparaError):
        click.echo(f"dispara: error: {exc}", err=True)
    else:
        hint = "" if _Flags.debug else " (run with --debug for the traceback)"
        click.echo(f"dispara: unexpected error: {type(exc).__name__}: {exc}{hint}", err=True)
    return int(code)


def main(args: list[str] | None = None) -> Any:
    """Console-script entry point."""
    try:
        result = cli.main(args=args, prog_name="dispara", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dispara: aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BaseException as exc:  # every other error ends here, and only here
        if isinstance(exc, SystemExit):
            raise
        sys.exit(_report(exc))
    sys.exit(result if isinstance(result, int) else 0)
