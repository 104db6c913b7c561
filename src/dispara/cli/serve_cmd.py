"""`dispara serve`: the HTTP endpoint QStash delivers to, plus the publish routes, /dispatch and /healthz."""

from __future__ import annotations

import click

from dispara.cli.app import App, pass_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON line per request on stderr.",
)
@click.option(
    "--all-tenants",
    is_flag=True,
    help="POST /dispatch drains every tenant's jobs (server.dispatch_all_tenants).",
)
@pass_app
def serve(app: App, host: str, port: int, log_format: str, all_tenants: bool) -> None:
    """Serve QStash deliveries, the audio publish routes, /dispatch and /healthz over HTTP.

    Needs DISPARA_API_KEY (every route but /healthz and the QStash ones asks for it as a bearer token)
    and, for QStash, QSTASH_CURRENT_SIGNING_KEY / QSTASH_NEXT_SIGNING_KEY and DISPARA_PUBLIC_URL. Put it
    behind an HTTPS proxy; SIGTERM stops it gracefully.

    \b
    Example:
      dispara serve --host 0.0.0.0 --port 8080 --log-format json
    """
    import logging

    import uvicorn

    from dispara.server.app import create_app

    settings = app.settings
    if all_tenants:
        settings.server.dispatch_all_tenants = True
    web = create_app(settings, log_format="json" if log_format == "json" else "text")
    with app.connect():  # an unreachable or old database is a one-line error here, not a server trace
        pass
    logging.getLogger("dispara.serve").setLevel(min(logging.getLogger("dispara").level, logging.INFO))
    if log_format == "json":  # the access lines alone, each a JSON object, for log collectors
        access = logging.getLogger("dispara.serve.access")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.handlers[:] = [handler]
        access.propagate = False
    click.echo(f"dispara serve: listening on http://{host}:{port} (tenant {app.settings.tenant})", err=True)
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
