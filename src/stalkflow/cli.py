"""The ``stalkflow`` command."""

from __future__ import annotations

import os
import sys

import click


@click.group()
@click.version_option(package_name="stalkflow")
def main() -> None:
    """Run, watch and operate stalkflow workflows."""


@main.command(
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
