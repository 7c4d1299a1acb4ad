"""``stalkflow runs list`` and ``runs show``: the runs of the shared store, as text or JSON.

They need the distributed engine (the embedded engine's runs live only in the
process that started them) and read the store through
:func:`~stalkflow.cli._reader.store_reader`, so they import nothing the store names.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from stalkflow.cli._app import engine_options, module_option, reported, resolve_settings, wait
from stalkflow.cli._display import describe_event, json_or_text, jsonable, one_line, short_type
from stalkflow.cli._reader import store_reader

if TYPE_CHECKING:
    from stalkflow.core.deliveries import Waiter
    from stalkflow.core.runs import RunRecord
    from stalkflow.events import Event
    from stalkflow.ports import StreamEntry


@click.group()
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
@module_option
@engine_options
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

    settings = resolve_settings(redis_url, broker_url)
    with reported(), store_reader(settings, "runs list", modules) as engine:
        wanted = None if status is None else RunStatus(status)
        records = [
            record
            for record in wait(lambda: engine.store.list_runs(status=wanted))
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
@module_option
@engine_options
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
    settings = resolve_settings(redis_url, broker_url)
    with reported(), store_reader(settings, "runs show", modules) as engine:
        record = wait(lambda: engine.get_run(run_id))
        state = wait(lambda: engine.store.load_state(run_id))
        waiters = wait(lambda: engine.store.waiters(run_id))
        entries = wait(lambda: engine.store.read_stream(run_id, -1, 0))
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


# --- a run as text -----------------------------------------------------------------------


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
        lines.append(f"result    {one_line(_result_value(record.result))}")
    if record.error is not None:
        where = f" (step {record.error.step})" if record.error.step else ""
        lines.append(
            f"error     {short_type(record.error.type_name)}: {record.error.message}{where}"
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _duration(record: RunRecord) -> str:
    text = f"{_elapsed(record):.3f} s"
    return text if record.finished else f"{text} (running)"


def _local_time(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


# --- a run as JSON -----------------------------------------------------------------------


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
        "result": None if record.result is None else jsonable(_result_value(record.result)),
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
        "data": jsonable(event_to_payload(entry.event)),
    }


def _iso_time(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).isoformat()


# --- shared by both ----------------------------------------------------------------------


def _workflow_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.rpartition(".")[2] == wanted


def _elapsed(record: RunRecord) -> float:
    end = record.updated_at if record.finished else time.time()
    return max(0.0, end - record.created_at)


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
        return {key: _unwrap(json_or_text(item)) for key, item in value.items()}
    return value


def _unwrap(value: Any) -> Any:
    """A serializer's envelope of a pydantic value, as its plain value."""
    if isinstance(value, dict) and value.get("__is_pydantic") and "value" in value:
        return value["value"]
    return value
