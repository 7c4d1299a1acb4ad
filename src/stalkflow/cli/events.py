"""``stalkflow send`` and ``stalkflow cancel``: act on a run that another process started.

``send`` builds its event from a JSON envelope, ``{"type": "module.Class", "value":
{...}}``, and nothing is ever imported because the envelope names it: the class
must be one of stalkflow's events, or defined by a module named with ``-m`` or by a
registered workflow (``STALKFLOW_WORKFLOWS``).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

import click

from stalkflow.cli._app import (
    engine_options,
    module_option,
    reported,
    require_distributed,
    resolve_settings,
    wait,
)
from stalkflow.cli._loading import load_modules
from stalkflow.cli._reader import store_reader

if TYPE_CHECKING:
    from stalkflow.engine import WorkflowRegistry
    from stalkflow.events import Event


@click.command()
@click.argument("run_id")
@click.argument("event_json", metavar="EVENT_JSON")
@click.option("--step", help="Deliver to this step only.")
@module_option
@engine_options
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

    with reported():
        settings = resolve_settings(redis_url, broker_url)
        require_distributed(settings, "send")
        engine = settings.build_engine()
        loaded = load_modules(modules, engine)
        event = event_from_envelope(event_json, _event_classes(engine.registry, loaded))
        try:
            wait(lambda: engine.send_event(run_id, event, step))
        except EventCodecError as exc:
            raise click.ClickException(
                f"{exc}. Name the module of the run's workflow with -m (or set "
                "STALKFLOW_WORKFLOWS) so that its events can be read"
            ) from None
        click.echo(f"sent {type(event).__name__} to run {run_id}")


@click.command()
@click.argument("run_id")
@engine_options
def cancel(run_id: str, redis_url: str | None, broker_url: str | None) -> None:
    """Cancel a running run.

    Workers refuse its deliveries from now on; a step already executing finishes
    its body, and its commit is refused. A run that already ended exits with 1.
    """
    settings = resolve_settings(redis_url, broker_url)
    with reported(), store_reader(settings, "cancel", ()) as engine:
        record = wait(lambda: engine.get_run(run_id))
        if not record.finished and wait(lambda: engine.cancel(run_id)):
            click.echo(f"cancelled run {run_id}")
            return
        record = wait(lambda: engine.get_run(run_id))
        raise click.ClickException(
            f"Run {run_id} already ended ({record.status.value}); nothing to cancel"
        )


# --- the event of an envelope ------------------------------------------------------------


def event_from_envelope(text: str, allowed: Mapping[str, type[Event]]) -> Event:
    """The event of ``{"type": ..., "value": {...}}`` (``"-"``: read from stdin).

    Its class is looked up in ``allowed`` (qualified name to class), by qualified
    name or, when unambiguous, by class name; an unknown name is an error, never an
    import.
    """
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
