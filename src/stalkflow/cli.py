"""The ``stalkflow`` command: run, watch, answer, cancel and draw workflows.

::

    stalkflow run myapp.flows:Research --kw topic=pirates
    stalkflow runs list --status running
    stalkflow runs show RUN_ID
    stalkflow send RUN_ID '{"type": "HumanResponseEvent", "value": {"response": "yes"}}'
    stalkflow cancel RUN_ID
    stalkflow draw myapp.flows:Research --format html -o research.html
    stalkflow worker -w myapp.flows --concurrency 4
    stalkflow serve -m myapp.flows --port 8080

With no configuration ``run`` uses the embedded engine: the whole run happens in
this process. With ``STALKFLOW_REDIS_URL`` (or ``--redis-url``) it submits to the
distributed engine, whose workers execute the steps, and follows the run from
here. ``runs``, ``send`` and ``cancel`` reach runs that other processes started,
so they need the distributed engine: its store is shared, the embedded one is not.

Nothing is ever imported because a message or the store names it: events given to
``send`` are built only from classes of the modules you name (``-m``), of the
registered workflows (``STALKFLOW_WORKFLOWS``) or of stalkflow itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from stalkflow.core.deliveries import Waiter
    from stalkflow.core.runs import RunRecord
    from stalkflow.engine import Engine, WorkflowRegistry
    from stalkflow.events import Event
    from stalkflow.ports import Executor, StreamEntry
    from stalkflow.settings import Settings
    from stalkflow.submit import RunHandle
    from stalkflow.workflow import Workflow

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Printed by the commands that need a store shared across processes.
NEEDS_DISTRIBUTED = (
    "`stalkflow {command}` needs the distributed engine: runs of the embedded engine live "
    "only in the process that started them. Set STALKFLOW_REDIS_URL (or pass --redis-url) "
    "to the Redis your workers use."
)
#: How much of an event's payload a progress line shows.
PAYLOAD_CHARS = 160


# --- the group -------------------------------------------------------------------------


@click.group()
@click.version_option(package_name="stalkflow")
def main() -> None:
    """Run, watch and operate stalkflow workflows.

    Embedded by default; distributed when STALKFLOW_REDIS_URL (or --redis-url) is set.
    """
    # Modules named on the command line (-m, -w, module:Workflow) are found from
    # the working directory, as ``celery -A`` and ``python -m`` find them.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _engine_options(func: F) -> F:
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


def _module_option(func: F) -> F:
    return click.option(
        "--module",
        "-m",
        "modules",
        multiple=True,
        metavar="MODULE",
        help="A module whose workflows and event classes to load (repeatable); "
        "STALKFLOW_WORKFLOWS adds more.",
    )(func)


# --- run -------------------------------------------------------------------------------


@main.command()
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
@_engine_options
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
    with _reported():
        settings = _settings(redis_url, broker_url)
        if settings.distributed:
            from stalkflow.engine import set_engine

            set_engine(settings.build_engine())
        target = _load_workflow(workflow)
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
            progress.summary(handle.run_id, ok=False)
            raise click.ClickException(progress.failure(exc)) from None
        progress.summary(handle.run_id, ok=True)
        click.echo(_render_result(value))


def _log_to_stderr(verbose: bool) -> None:
    """Warnings (everything with ``-v``) on stderr; step failures are the display's job."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("stalkflow.execution").setLevel(logging.ERROR)


def _submit(workflow: Workflow, kwargs: Mapping[str, Any]) -> RunHandle:
    from pydantic import ValidationError

    try:
        return workflow.submit(**kwargs)
    except ValidationError as exc:
        raise click.ClickException(
            f"Invalid start keywords for {workflow.workflow_name}: {exc}"
        ) from None


def _follow(handle: RunHandle, progress: _Progress, *, ask: bool, distributed: bool) -> None:
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
        kwargs[key] = _scalar(text)
    return kwargs


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _render_result(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(_jsonable(value), indent=2, ensure_ascii=False)


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

    def summary(self, run_id: str, *, ok: bool) -> None:
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
        return f"{where}{_error_text(exc)}"


def _error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    original = getattr(exc, "original_type", None)  # an UnreconstructedException's
    if isinstance(original, str) and original:
        name = original.rpartition(".")[2]
    message = str(exc).strip()
    return f"{name}: {message}" if message else name


# --- runs list / show ------------------------------------------------------------------


@main.group()
def runs() -> None:
    """List and inspect runs (distributed engine)."""


@runs.command("list")
@click.option(
    "--status",
    type=click.Choice(["running", "completed", "failed", "cancelled", "timed_out"]),
    help="Only runs with this status.",
)
@click.option(
    "--workflow", "-w", metavar="NAME", help="Only runs of this workflow (full or class name)."
)
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_module_option
@_engine_options
def runs_list(
    status: str | None,
    workflow: str | None,
    limit: int,
    as_json: bool,
    modules: tuple[str, ...],
    redis_url: str | None,
    broker_url: str | None,
) -> None:
    """List the runs in the store, newest first."""
    from stalkflow.core.runs import RunStatus

    with _reported(), _reader(_settings(redis_url, broker_url), "runs list", modules) as engine:
        wanted = None if status is None else RunStatus(status)
        records = [
            record
            for record in _wait(lambda: engine.store.list_runs(status=wanted))
            if workflow is None or _workflow_matches(record.workflow, workflow)
        ]
        records.sort(key=lambda record: record.created_at, reverse=True)
        records = records[: max(0, limit)]
        if as_json:
            click.echo(json.dumps([_run_summary(record) for record in records], indent=2))
            return
        if not records:
            click.echo("no runs", err=True)
            return
        rows = [
            (
                record.run_id,
                record.status.value,
                record.workflow,
                _local_time(record.created_at),
                _duration(record),
            )
            for record in records
        ]
        click.echo(_table(("RUN ID", "STATUS", "WORKFLOW", "STARTED", "DURATION"), rows))


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--traceback", "with_traceback", is_flag=True, help="Show a failed step's traceback.")
@_module_option
@_engine_options
def runs_show(
    run_id: str,
    as_json: bool,
    with_traceback: bool,
    modules: tuple[str, ...],
    redis_url: str | None,
    broker_url: str | None,
) -> None:
    """Show a run: status, timings, result or error, state, waiters and its event log.

    The event log lists the run's stream in sequence order, engine events (step
    starts and ends) included.
    """
    with _reported(), _reader(_settings(redis_url, broker_url), "runs show", modules) as engine:
        record = _wait(lambda: engine.get_run(run_id))
        state = _wait(lambda: engine.store.load_state(run_id))
        waiters = _wait(lambda: engine.store.waiters(run_id))
        entries = _wait(lambda: engine.store.read_stream(run_id, -1, 0))
        if as_json:
            document = {
                **_run_summary(record),
                "state_version": state.version,
                "state": _state_value(state.blob),
                "waiting": [_waiter_summary(waiter) for waiter in waiters],
                "events": [_entry_summary(entry) for entry in entries],
            }
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
            return
        click.echo(_describe_run(record, state.version, state.blob, waiters, with_traceback))
        click.echo(f"events ({len(entries)})")
        for entry in entries:
            click.echo(f"  {entry.sequence:>4}  {describe_event(entry.event)}")


def _describe_run(
    record: RunRecord,
    version: int,
    blob: str | None,
    waiters: Sequence[Waiter],
    with_traceback: bool,
) -> str:
    lines = [
        f"run       {record.run_id}",
        f"workflow  {record.workflow}",
        f"status    {record.status.value}",
        f"started   {_local_time(record.created_at)}",
        f"updated   {_local_time(record.updated_at)}",
        f"duration  {_duration(record)}",
    ]
    if record.deadline is not None:
        lines.append(f"deadline  {_local_time(record.deadline)} (timeout {record.timeout_s:g} s)")
    if record.result is not None:
        lines.append(f"result    {_one_line(_result_value(record.result))}")
    if record.error is not None:
        where = f" (step {record.error.step})" if record.error.step else ""
        lines.append(
            f"error     {_short_type(record.error.type_name)}: {record.error.message}{where}"
        )
        if with_traceback and record.error.traceback:
            lines.append(record.error.traceback.rstrip())
    for waiter in waiters:
        timeout = "" if waiter.timeout_s is None else f", timeout {waiter.timeout_s:g} s"
        lines.append(
            f"waiting   step {waiter.delivery.step} for {waiter.event_type.__name__}{timeout}"
        )
    state = _state_value(blob)
    lines.append(f"state     (version {version})")
    rendered = json.dumps(state, indent=2, ensure_ascii=False, sort_keys=True)
    lines.extend(f"  {line}" for line in rendered.splitlines())
    return "\n".join(lines)


def _run_summary(record: RunRecord) -> dict[str, Any]:
    error = None
    if record.error is not None:
        error = {
            "type": record.error.type_name,
            "message": record.error.message,
            "step": record.error.step,
        }
    return {
        "run_id": record.run_id,
        "workflow": record.workflow,
        "status": record.status.value,
        "created_at": _iso_time(record.created_at),
        "updated_at": _iso_time(record.updated_at),
        "duration_s": round(_elapsed(record), 6),
        "deadline": None if record.deadline is None else _iso_time(record.deadline),
        "result": None if record.result is None else _jsonable(_result_value(record.result)),
        "error": error,
    }


def _waiter_summary(waiter: Waiter) -> dict[str, Any]:
    return {
        "step": waiter.delivery.step,
        "event_type": waiter.event_type.__name__,
        "timeout_s": waiter.timeout_s,
    }


def _entry_summary(entry: StreamEntry) -> dict[str, Any]:
    from stalkflow.core.codec import type_name
    from stalkflow.events import event_to_payload

    return {
        "sequence": entry.sequence,
        "type": type_name(type(entry.event)),
        "description": describe_event(entry.event),
        "data": _jsonable(event_to_payload(entry.event)),
    }


def _result_value(event: Event) -> Any:
    from stalkflow.events import StopEvent, event_to_payload

    if type(event) is StopEvent:
        return event.result
    return event_to_payload(event)


def _state_value(blob: str | None) -> Any:
    """A stored state for display: typed state's JSON, or untyped state key by key."""
    if blob is None:
        return {}
    try:
        value = json.loads(blob)
    except ValueError:
        return blob
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        # untyped state: each value is its own serialized document
        return {key: _unwrap(_scalar(item)) for key, item in value.items()}
    return value


def _unwrap(value: Any) -> Any:
    """A serializer's envelope of a pydantic value, as its plain value."""
    if isinstance(value, dict) and value.get("__is_pydantic") and "value" in value:
        return value["value"]
    return value


# --- send / cancel ---------------------------------------------------------------------


@main.command()
@click.argument("run_id")
@click.argument("event_json", metavar="EVENT_JSON")
@click.option("--step", help="Deliver to this step only.")
@_module_option
@_engine_options
def send(
    run_id: str,
    event_json: str,
    step: str | None,
    modules: tuple[str, ...],
    redis_url: str | None,
    broker_url: str | None,
) -> None:
    """Send an event into a running run (a human's answer, a signal).

    EVENT_JSON is {"type": "module.Class", "value": {...}} (or "qualified_name" for
    "type"; "-" reads it from stdin). The class must be one of stalkflow's events, or
    defined by a module named with -m or by a registered workflow
    (STALKFLOW_WORKFLOWS); a bare class name works when it is unambiguous. Nothing is
    imported because the JSON names it.

    \b
    stalkflow send RUN_ID '{"type": "HumanResponseEvent", "value": {"response": "yes"}}'
    stalkflow send RUN_ID -m myapp.flows '{"type": "myapp.flows.Approve", "value": {}}'
    """
    from stalkflow.errors import EventCodecError

    with _reported():
        settings = _settings(redis_url, broker_url)
        _require_distributed(settings, "send")
        engine = settings.build_engine()
        loaded = _load_modules(modules, engine)
        event = _event_from_envelope(event_json, _event_classes(engine.registry, loaded))
        try:
            _wait(lambda: engine.send_event(run_id, event, step))
        except EventCodecError as exc:
            raise click.ClickException(
                f"{exc}. Name the module of the run's workflow with -m (or set "
                "STALKFLOW_WORKFLOWS) so that its events can be read"
            ) from None
        click.echo(f"sent {type(event).__name__} to run {run_id}")


@main.command()
@click.argument("run_id")
@_engine_options
def cancel(run_id: str, redis_url: str | None, broker_url: str | None) -> None:
    """Cancel a running run.

    Workers refuse its deliveries from now on; a step already executing finishes
    its body, and its commit is refused. A run that already ended exits with 1.
    """
    with _reported(), _reader(_settings(redis_url, broker_url), "cancel", ()) as engine:
        record = _wait(lambda: engine.get_run(run_id))
        if not record.finished and _wait(lambda: engine.cancel(run_id)):
            click.echo(f"cancelled run {run_id}")
            return
        record = _wait(lambda: engine.get_run(run_id))
        raise click.ClickException(
            f"Run {run_id} already ended ({record.status.value}); nothing to cancel"
        )


def _event_from_envelope(text: str, allowed: Mapping[str, type[Event]]) -> Event:
    from pydantic import ValidationError

    if text == "-":
        text = sys.stdin.read()
    try:
        envelope = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="EVENT_JSON") from None
    if not isinstance(envelope, dict):
        raise click.BadParameter("must be a JSON object", param_hint="EVENT_JSON")
    name = envelope.get("type", envelope.get("qualified_name"))
    if not isinstance(name, str) or not name:
        raise click.BadParameter(
            'needs "type" (or "qualified_name"): the event class, e.g. "HumanResponseEvent"',
            param_hint="EVENT_JSON",
        )
    value = envelope.get("value", envelope.get("data", {}))
    if not isinstance(value, dict):
        raise click.BadParameter('"value" must be a JSON object', param_hint="EVENT_JSON")
    cls = _resolve_event_class(name, allowed)
    try:
        return cls(**value)
    except ValidationError as exc:
        raise click.ClickException(f"Invalid {cls.__name__}: {exc}") from None


def _resolve_event_class(name: str, allowed: Mapping[str, type[Event]]) -> type[Event]:
    found = allowed.get(name)
    if found is not None:
        return found
    matches = {
        cls for qualified, cls in allowed.items() if name in (cls.__name__, cls.__qualname__)
    }
    if len(matches) == 1:
        return matches.pop()
    if len(matches) > 1:
        names = ", ".join(sorted(qualified for qualified, cls in allowed.items() if cls in matches))
        raise click.ClickException(f"Event type {name!r} is ambiguous: {names}")
    raise click.ClickException(
        f"Unknown event type {name!r}: event classes come from stalkflow.events, the modules "
        "named with -m and the registered workflows (STALKFLOW_WORKFLOWS); nothing is "
        "imported because the JSON names it"
    )


def _event_classes(
    registry: WorkflowRegistry, modules: Iterable[ModuleType]
) -> dict[str, type[Event]]:
    """The event classes ``send`` may build: stalkflow's, the modules', the workflows'."""
    import stalkflow.events as framework
    from stalkflow.core.codec import type_name
    from stalkflow.distributed import event_types_of

    classes: dict[str, type[Event]] = {}
    for module in (framework, *modules):
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, framework.Event):
                classes[type_name(value)] = value
    lookup = event_types_of(registry)
    for name in registry.names():
        classes.update(lookup(name))
    return classes


# --- draw ------------------------------------------------------------------------------


@main.command()
@click.argument("workflow", metavar="MODULE:WORKFLOW")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "html"]),
    help="Mermaid text, or an HTML page that renders it (default: from -o's suffix, else mermaid).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
def draw(workflow: str, fmt: str | None, output: Path | None) -> None:
    """Draw a workflow's steps and events as a Mermaid flowchart or an HTML page."""
    from stalkflow.representation import get_workflow_representation, to_html, to_mermaid

    with _reported():
        target = _load_target(workflow)
        if fmt is None:
            html_suffix = output is not None and output.suffix.lower() in (".html", ".htm")
            fmt = "html" if html_suffix else "mermaid"
        mermaid = to_mermaid(get_workflow_representation(target))
        name = target.__name__ if isinstance(target, type) else type(target).__name__
        text = to_html(mermaid, title=f"{name} (stalkflow)") if fmt == "html" else mermaid
        if output is None:
            click.echo(text, nl=not text.endswith("\n"))
            return
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"wrote {output} ({fmt})", err=True)


# --- worker / serve --------------------------------------------------------------------


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="The port to bind.")
@click.option(
    "--api-key",
    envvar="STALKFLOW_API_KEY",
    metavar="KEY",
    help="Required of clients (STALKFLOW_API_KEY).",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
@_module_option
@_engine_options
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
    with _reported():
        try:
            from stalkflow.server import run_server
        except ImportError as exc:
            raise click.ClickException(
                f"`stalkflow serve` needs the [server] extra: pip install 'stalkflow[server]' "
                f"({exc})"
            ) from None
        settings = _settings(redis_url, broker_url)
        engine = settings.build_engine() if settings.distributed else None
        _cwd_on_path()
        run_server(
            host,
            port,
            list(modules) or None,
            api_key,
            engine=engine,
            log_level=log_level,
        )


# --- engines and modules ---------------------------------------------------------------


def _settings(redis_url: str | None, broker_url: str | None) -> Settings:
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


def _require_distributed(settings: Settings, command: str) -> None:
    if not settings.distributed:
        raise click.ClickException(NEEDS_DISTRIBUTED.format(command=command))


def _store_url(settings: Settings) -> str:
    url = settings.redis_url or settings.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise click.ClickException(
            "The distributed engine keeps runs in Redis: set STALKFLOW_REDIS_URL (or "
            "--redis-url); a non-Redis broker cannot be the store"
        )
    return url


def _redis_display(settings: Settings) -> str:
    from stalkflow._urls import redact_url

    url = settings.redis_url or settings.broker_url or ""
    return f"{redact_url(url)}, prefix {settings.prefix!r}"


@contextlib.contextmanager
def _reader(settings: Settings, command: str, modules: Sequence[str]) -> Iterator[Engine]:
    """An engine that reads and cancels runs of the shared store; it dispatches nothing.

    Its codec reads every stored event: a class this process knows (stalkflow's, the
    registered workflows', the modules') decodes as itself, any other as a stand-in
    ``Event`` of the same name carrying the stored data. Nothing is imported.
    """
    _require_distributed(settings, command)
    url = _store_url(settings)
    from stalkflow.adapters.redis_store import RedisStore
    from stalkflow.core.codec import EventCodec
    from stalkflow.distributed import event_types_of, register, workflows_in
    from stalkflow.engine import Engine, WorkflowRegistry

    registry = WorkflowRegistry()
    known = event_types_of(registry)

    def lookup(workflow: str) -> Mapping[str, type[Event]]:
        try:
            types = known(workflow)
        except LookupError:
            types = {}
        return _AnyEventTypes(types)

    store = RedisStore.from_url(
        url, prefix=settings.prefix, codec=EventCodec(lookup), finished_ttl_s=settings.result_ttl_s
    )
    engine = Engine(store, _NoDispatch(), registry=registry)
    for module in _import_all(modules):
        register(*workflows_in(module), engine=engine)
    try:
        yield engine
    finally:
        with contextlib.suppress(Exception):
            _wait(store.aclose)


class _NoDispatch:
    """The transport of an engine that only reads and cancels runs."""

    def start(self, execute: Executor) -> None:
        pass

    async def dispatch(self, deliveries: Sequence[Any], delay_s: float = 0.0) -> None:
        raise RuntimeError("this engine only reads and cancels runs")

    def run_finished(self, run_id: str) -> None:
        pass


_stand_ins: dict[str, type[Any]] = {}


class _AnyEventTypes(Mapping[str, "type[Event]"]):
    """Known event classes by name; any other name gets a stand-in class (for display)."""

    def __init__(self, known: Mapping[str, type[Event]]) -> None:
        self._known = known

    def __getitem__(self, name: str) -> type[Event]:
        found = self._known.get(name)
        if found is not None:
            return found
        stand_in = _stand_ins.get(name)
        if stand_in is None:
            from stalkflow.events import Event

            module, _, qualname = name.rpartition(".")
            stand_in = type(
                qualname or name,
                (Event,),
                {"__module__": module or "<unknown>", "__qualname__": qualname or name},
            )
            _stand_ins[name] = stand_in
        return stand_in

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


def _module_names(modules: Sequence[str]) -> list[str]:
    """The named modules, then those of STALKFLOW_WORKFLOWS, each once."""
    names = [*modules, *os.environ.get("STALKFLOW_WORKFLOWS", "").split(",")]
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def _import_all(modules: Sequence[str]) -> list[ModuleType]:
    return [_import(name) for name in _module_names(modules)]


def _load_modules(modules: Sequence[str], engine: Engine) -> list[ModuleType]:
    """Import the modules and register their workflows with ``engine``."""
    from stalkflow.distributed import register, workflows_in

    loaded = _import_all(modules)
    for module in loaded:
        register(*workflows_in(module), engine=engine)
    return loaded


def _cwd_on_path() -> None:
    """Modules named on the command line are found from the working directory."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _import(name: str) -> ModuleType:
    _cwd_on_path()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise click.ClickException(f"Cannot import module {name!r}: {exc}") from None


def _load_target(reference: str) -> Workflow | type[Workflow]:
    """``module:attr`` as a Workflow instance or class; ``module`` alone if it has one."""
    from stalkflow.distributed import workflows_in
    from stalkflow.workflow import Workflow

    module_name, _, attribute = reference.partition(":")
    if not module_name:
        raise click.BadParameter(f"{reference!r} is not MODULE:WORKFLOW", param_hint="WORKFLOW")
    module = _import(module_name)
    if not attribute:
        found = workflows_in(module)
        if len(found) != 1:
            names = ", ".join(type(workflow).__name__ for workflow in found) or "none"
            raise click.ClickException(
                f"Module {module_name} defines {len(found)} workflows ({names}): "
                f"name one as {module_name}:<NAME>"
            )
        return found[0]
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.ClickException(
                f"Module {module_name} has no attribute {attribute!r}"
            ) from None
    if isinstance(target, Workflow) or (inspect.isclass(target) and issubclass(target, Workflow)):
        return target
    raise click.ClickException(f"{reference} is not a Workflow class or instance")


def _load_workflow(reference: str) -> Workflow:
    """A Workflow instance: the named one, the module's one instance of the named class,
    or that class made with no arguments."""
    target = _load_target(reference)
    if not isinstance(target, type):
        return target
    module = sys.modules[target.__module__]
    instances = [value for value in vars(module).values() if type(value) is target]
    if len(instances) == 1:
        return instances[0]
    try:
        return target()
    except Exception as exc:
        raise click.ClickException(
            f"Cannot make a {target.__name__} with no arguments ({exc}); define an instance "
            "in its module and name that"
        ) from None


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """stalkflow's errors as one line and exit status 1, not a traceback."""
    from stalkflow.errors import StalkflowError

    try:
        yield
    except StalkflowError as exc:
        raise click.ClickException(_error_text(exc)) from None


def _wait(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the process's background loop (where runs are driven)."""
    from stalkflow.submit import background_loop

    async def call() -> T:
        return await factory()

    return asyncio.run_coroutine_threadsafe(call(), background_loop()).result()


# --- describing events and runs --------------------------------------------------------

_CLASS_REPR = re.compile(r"<class '([^']+)'>")


def _short_type(name: str | None) -> str:
    """``"<class 'a.b.Chunk'>"`` or ``"a.b.Chunk"`` as ``"Chunk"``."""
    if not name:
        return ""
    match = _CLASS_REPR.fullmatch(name.strip())
    return (match.group(1) if match else name).rpartition(".")[2]


def describe_event(event: Event) -> str:
    """One line about a stream event, as ``stalkflow run`` and ``runs show`` print it."""
    from stalkflow import events as ev

    if isinstance(event, ev.StepStateChanged):
        if event.step_state is ev.StepState.RUNNING:
            return f"step {event.name} started ({_short_type(event.input_event_name)})"
        if event.step_state is ev.StepState.PREPARING:
            return f"step {event.name} queued ({_short_type(event.input_event_name)})"
        output = _short_type(event.output_event_name)
        return f"step {event.name} finished" + (f" -> {output}" if output else "")
    if isinstance(event, ev.WorkflowFailedEvent):
        return f"failed: step {event.step_name} raised {_error_text(event.exception)}"
    if isinstance(event, ev.WorkflowCancelledEvent):
        return "cancelled"
    if isinstance(event, ev.WorkflowTimedOutEvent):
        active = ", ".join(event.active_steps) or "none"
        return f"timed out after {event.timeout:g} s (active steps: {active})"
    if isinstance(event, ev.StopEvent):
        kind = type(event).__name__
        return "stop" if kind == "StopEvent" else f"stop {kind}"
    if isinstance(event, ev.InputRequiredEvent):
        prefix = event.get("prefix")
        return f"input required: {prefix}" if prefix else "input required"
    if isinstance(event, ev.UnhandledEvent):
        return f"unhandled {event.event_type}: no step accepts it"
    if isinstance(event, ev.InternalDispatchEvent):
        return type(event).__name__
    return f"event {type(event).__name__} {_payload_text(event)}"


def _payload_text(event: Event) -> str:
    from stalkflow.events import event_to_payload

    try:
        payload: Any = event_to_payload(event)
    except Exception:
        return "<unencodable>"
    if isinstance(payload, dict) and set(payload) == {"_data"}:
        payload = payload["_data"]
    text = _one_line(payload)
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 3] + "..."


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


def _one_line(value: Any) -> str:
    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(", ", ": "))


def _workflow_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.rpartition(".")[2] == wanted


def _elapsed(record: RunRecord) -> float:
    end = record.updated_at if record.finished else time.time()
    return max(0.0, end - record.created_at)


def _duration(record: RunRecord) -> str:
    text = f"{_elapsed(record):.3f} s"
    return text if record.finished else f"{text} (running)"


def _local_time(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _iso_time(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).isoformat()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="stalkflow")
