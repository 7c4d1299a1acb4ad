"""``stalkflow run``: start a run, follow its events on stderr, print its result.

Embedded with no configuration (the whole run happens in this process);
distributed with ``STALKFLOW_REDIS_URL`` (or ``--redis-url``): the workers execute
the steps and this process follows the run's stream.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from stalkflow.cli._app import engine_options, reported, resolve_settings, store_location
from stalkflow.cli._display import describe_event, error_text, json_or_text, jsonable
from stalkflow.cli._loading import load_workflow

if TYPE_CHECKING:
    from stalkflow.events import Event
    from stalkflow.settings import Settings
    from stalkflow.submit import RunHandle
    from stalkflow.workflow import Workflow


@click.command()
@click.argument("workflow", metavar="MODULE:WORKFLOW")
@click.option(
    "--kw",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A start keyword (repeatable); VALUE is read as JSON when it parses, else as text.",
)
@click.option(
    "--json-kw",
    "documents",
    multiple=True,
    metavar="JSON",
    help="Start keywords as one JSON object (repeatable; --kw wins).",
)
@click.option(
    "--input/--no-input",
    "ask",
    default=None,
    help="Answer InputRequiredEvents from stdin (default: when stdin is a terminal).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print the result only, no progress.")
@click.option("--verbose", "-v", is_flag=True, help="Also print stalkflow's and Celery's logs.")
@engine_options
def run(
    workflow: str,
    pairs: tuple[str, ...],
    documents: tuple[str, ...],
    ask: bool | None,
    quiet: bool,
    verbose: bool,
    redis_url: str | None,
    broker_url: str | None,
) -> None:
    """Run a workflow, show its progress, print its result.

    MODULE:WORKFLOW names a Workflow instance or class (made with no arguments; a
    module's own instance of that class is preferred). Progress goes to stderr, the
    result to stdout: a string as is, anything else as JSON. A failed, cancelled or
    timed-out run exits with status 1 and its error.

    \b
    stalkflow run myapp.flows:Research --kw topic=pirates --kw depth=2
    stalkflow run myapp.flows:Research --json-kw '{"topics": ["a", "b"]}'
    """
    _log_to_stderr(verbose)
    with reported():
        settings = resolve_settings(redis_url, broker_url)
        if settings.distributed:
            from stalkflow.engine import set_engine

            set_engine(settings.build_engine())
        target = load_workflow(workflow)
        kwargs = _start_kwargs(pairs, documents)
        if ask is None:
            ask = sys.stdin.isatty()
        progress = _Progress(quiet)
        handle = _submit(target, kwargs)
        mode = f"distributed, {_redis_display(settings)}" if settings.distributed else "embedded"
        progress.say(f"run {handle.run_id} of {target.workflow_name} ({mode})")
        try:
            _follow(handle, progress, ask=ask, distributed=settings.distributed)
            value = handle.get()
        except KeyboardInterrupt:
            if settings.distributed:
                progress.say(
                    f"interrupted; the run goes on: `stalkflow runs show {handle.run_id}`, "
                    f"`stalkflow cancel {handle.run_id}`",
                    force=True,
                )
            else:
                progress.say("interrupted; the embedded run ends with this process", force=True)
            sys.exit(130)
        except (click.ClickException, click.Abort):
            raise
        except Exception as exc:
            progress.summary(ok=False)
            raise click.ClickException(progress.failure(exc)) from None
        progress.summary(ok=True)
        click.echo(_render_result(value))


def _log_to_stderr(verbose: bool) -> None:
    """Warnings (everything with ``-v``) on stderr; step failures are the display's job."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("stalkflow.execution").setLevel(logging.ERROR)


def _redis_display(settings: Settings) -> str:
    from stalkflow._urls import redact_url

    return f"{redact_url(store_location(settings))}, prefix {settings.prefix!r}"


def _start_kwargs(pairs: Sequence[str], documents: Sequence[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for document in documents:
        try:
            value = json.loads(document)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--json-kw") from None
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--json-kw")
        kwargs.update(value)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--kw")
        kwargs[key] = json_or_text(text)
    return kwargs


def _submit(workflow: Workflow, kwargs: Mapping[str, Any]) -> RunHandle:
    from pydantic import ValidationError

    try:
        return workflow.submit(**kwargs)
    except ValidationError as exc:
        raise click.ClickException(
            f"Invalid start keywords for {workflow.workflow_name}: {exc}"
        ) from None


def _follow(handle: RunHandle, progress: _Progress, *, ask: bool, distributed: bool) -> None:
    """Show each event of the run; answer its InputRequiredEvents, or say how to."""
    from stalkflow.events import HumanResponseEvent, InputRequiredEvent

    for event in handle.events(expose_internal=True):
        progress.event(event)
        if not isinstance(event, InputRequiredEvent):
            continue
        if ask:
            answer = click.prompt(str(event.get("prefix") or "Your answer"), err=True)
            handle.send_event(HumanResponseEvent(response=answer))
        elif distributed:
            envelope = json.dumps({"type": "HumanResponseEvent", "value": {"response": "..."}})
            progress.say(f"  answer with: stalkflow send {handle.run_id} '{envelope}'", force=True)
        else:
            progress.say(
                "  the embedded run waits for an answer from this process: rerun with --input",
                force=True,
            )


def _render_result(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


class _Progress:
    """Progress lines on stderr, each with the seconds since the run was submitted."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()
        self.steps_started = 0
        self.steps_finished = 0
        self.events = 0
        self.terminal: Event | None = None

    def say(self, text: str, *, force: bool = False) -> None:
        if self.quiet and not force:
            return
        click.echo(f"{time.monotonic() - self.started:8.3f}s  {text}", err=True)

    def event(self, event: Event) -> None:
        from stalkflow.events import StepState, StepStateChanged, StopEvent

        self.events += 1
        if isinstance(event, StepStateChanged):
            if event.step_state is StepState.RUNNING:
                self.steps_started += 1
            elif event.step_state is StepState.NOT_RUNNING:
                self.steps_finished += 1
        if isinstance(event, StopEvent):
            self.terminal = event
        self.say(describe_event(event))

    def summary(self, *, ok: bool) -> None:
        outcome = "done" if ok else "ended"
        self.say(
            f"{outcome} in {time.monotonic() - self.started:.3f} s: "
            f"{self.steps_started} step execution(s), {self.events} event(s)"
        )

    def failure(self, exc: BaseException) -> str:
        from stalkflow.errors import WorkflowCancelledByUser, WorkflowTimeoutError
        from stalkflow.events import WorkflowFailedEvent

        if isinstance(exc, WorkflowCancelledByUser):
            return "the run was cancelled"
        if isinstance(exc, WorkflowTimeoutError):
            return f"the run timed out: {exc}"
        where = ""
        if isinstance(self.terminal, WorkflowFailedEvent):
            where = f"step {self.terminal.step_name} failed: "
        return f"{where}{error_text(exc)}"
