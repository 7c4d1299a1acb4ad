"""The ``stalkflow`` group, the options its commands share, and how they pick an engine.

Every command that may reach the distributed engine takes ``--redis-url`` and
``--broker-url`` (``@engine_options``); ``resolve_settings`` merges them over the
``STALKFLOW_*`` environment, read here, in the entry point, never at import.
Settings with no URL mean the embedded engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from stalkflow.cli._display import error_text
from stalkflow.cli._loading import cwd_on_path

if TYPE_CHECKING:
    from stalkflow.settings import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Printed by the commands that need a store shared across processes.
NEEDS_DISTRIBUTED = (
    "`stalkflow {command}` needs the distributed engine: runs of the embedded engine live "
    "only in the process that started them. Set STALKFLOW_REDIS_URL (or pass --redis-url) "
    "to the Redis your workers use."
)


@click.group()
@click.version_option(package_name="stalkflow")
def main() -> None:
    """Run, watch and operate stalkflow workflows.

    Embedded by default; distributed when STALKFLOW_REDIS_URL (or --redis-url) is set.
    """
    cwd_on_path()


# --- shared options ----------------------------------------------------------------------


def engine_options(func: F) -> F:
    """``--redis-url`` and ``--broker-url``, passed as ``redis_url`` and ``broker_url``."""
    func = click.option(
        "--broker-url",
        envvar="STALKFLOW_BROKER_URL",
        metavar="URL",
        help="The Celery broker, when not the Redis store (STALKFLOW_BROKER_URL).",
    )(func)
    func = click.option(
        "--redis-url",
        envvar="STALKFLOW_REDIS_URL",
        metavar="URL",
        help="The Redis of the distributed engine (STALKFLOW_REDIS_URL); unset: embedded.",
    )(func)
    return func


def module_option(func: F) -> F:
    """``--module/-m``, repeatable, passed as ``modules``."""
    return click.option(
        "--module",
        "-m",
        "modules",
        multiple=True,
        metavar="MODULE",
        help="A module whose workflows and event classes to load (repeatable); "
        "STALKFLOW_WORKFLOWS adds more.",
    )(func)


# --- the engine --------------------------------------------------------------------------


def resolve_settings(redis_url: str | None, broker_url: str | None) -> Settings:
    """The ``STALKFLOW_*`` settings, with the command line's URLs over the environment's."""
    from stalkflow.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(f"Invalid STALKFLOW_* setting: {exc}") from None
    return dataclasses.replace(
        settings,
        redis_url=redis_url or settings.redis_url,
        broker_url=broker_url or settings.broker_url,
    )


def require_distributed(settings: Settings, command: str) -> None:
    """Stop ``command`` unless the settings name a distributed engine (a shared store)."""
    if not settings.distributed:
        raise click.ClickException(NEEDS_DISTRIBUTED.format(command=command))


def store_location(settings: Settings) -> str:
    """The URL of the Redis that keeps the runs: ``redis_url``, else the broker's."""
    return settings.redis_url or settings.broker_url or ""


# --- running a command -------------------------------------------------------------------


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """stalkflow's errors as one line and exit status 1, not a traceback."""
    from stalkflow.errors import StalkflowError

    try:
        yield
    except StalkflowError as exc:
        raise click.ClickException(error_text(exc)) from None


def wait(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the process's background loop (where runs are driven)."""
    from stalkflow.submit import background_loop

    async def call() -> T:
        return await factory()

    return asyncio.run_coroutine_threadsafe(call(), background_loop()).result()
