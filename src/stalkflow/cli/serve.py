"""``stalkflow worker`` and ``stalkflow serve``: the long-running processes.

``worker`` is a Celery worker executing the steps of the registered workflows;
``serve`` is the HTTP API (and its web pages) over the workflows of some modules,
which needs the ``[server]`` extra.
"""

from __future__ import annotations

import os

import click

from stalkflow.cli._app import engine_options, module_option, reported, resolve_settings
from stalkflow.cli._loading import cwd_on_path


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--workflows",
    "-w",
    envvar="STALKFLOW_WORKFLOWS",
    help="Comma-separated modules defining the workflows to serve (STALKFLOW_WORKFLOWS).",
)
@click.pass_context
def worker(ctx: click.Context, workflows: str | None) -> None:
    """Start a Celery worker serving every registered workflow.

    Extra arguments go to ``celery worker`` (``--concurrency 4 -Q gpu``...).
    """
    if workflows:
        os.environ["STALKFLOW_WORKFLOWS"] = workflows
    from stalkflow.distributed import worker_app

    app = worker_app()
    app.worker_main(["worker", *ctx.args])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="The port to bind.")
@click.option(
    "--api-key",
    envvar="STALKFLOW_API_KEY",
    metavar="KEY",
    help="Required of clients (STALKFLOW_API_KEY).",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
@module_option
@engine_options
def serve(
    host: str,
    port: int,
    api_key: str | None,
    log_level: str,
    modules: tuple[str, ...],
    redis_url: str | None,
    broker_url: str | None,
) -> None:
    """Serve the workflows of some modules over HTTP (needs the [server] extra).

    The modules are those named with -m, else STALKFLOW_WORKFLOWS.
    """
    with reported():
        try:
            from stalkflow.server import run_server
        except ImportError as exc:
            raise click.ClickException(
                f"`stalkflow serve` needs the [server] extra: pip install 'stalkflow[server]' "
                f"({exc})"
            ) from None
        settings = resolve_settings(redis_url, broker_url)
        engine = settings.build_engine() if settings.distributed else None
        cwd_on_path()
        run_server(
            host,
            port,
            list(modules) or None,
            api_key,
            engine=engine,
            log_level=log_level,
        )
