"""How the commands show events, values and errors: one line each, never a traceback.

``stalkflow run`` prints a line per stream event as the run goes; ``runs show``
prints the same lines for a stored run's log. Values (results, payloads) are
shown as JSON, with anything JSON cannot hold as its ``repr``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalkflow.events import Event

#: How much of an event's payload a progress line shows.
PAYLOAD_CHARS = 160

_CLASS_REPR = re.compile(r"<class '([^']+)'>")


def describe_event(event: Event) -> str:
    """One line about a stream event, as ``stalkflow run`` and ``runs show`` print it."""
    from stalkflow import events as ev

    if isinstance(event, ev.StepStateChanged):
        if event.step_state is ev.StepState.RUNNING:
            return f"step {event.name} started ({short_type(event.input_event_name)})"
        if event.step_state is ev.StepState.PREPARING:
            return f"step {event.name} queued ({short_type(event.input_event_name)})"
        output = short_type(event.output_event_name)
        return f"step {event.name} finished" + (f" -> {output}" if output else "")
    if isinstance(event, ev.WorkflowFailedEvent):
        return f"failed: step {event.step_name} raised {error_text(event.exception)}"
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
    text = one_line(payload)
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 3] + "..."


def short_type(name: str | None) -> str:
    """``"<class 'a.b.Chunk'>"`` or ``"a.b.Chunk"`` as ``"Chunk"``."""
    if not name:
        return ""
    match = _CLASS_REPR.fullmatch(name.strip())
    return (match.group(1) if match else name).rpartition(".")[2]


def error_text(exc: BaseException) -> str:
    """``"ValueError: message"``; a worker's exception under its original class name."""
    name = type(exc).__name__
    original = getattr(exc, "original_type", None)  # an UnreconstructedException's
    if isinstance(original, str) and original:
        name = original.rpartition(".")[2]
    message = str(exc).strip()
    return f"{name}: {message}" if message else name


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: a pydantic model as its fields, the unknown as repr."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


def one_line(value: Any) -> str:
    """``value`` as JSON on one line."""
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(", ", ": "))


def json_or_text(text: str) -> Any:
    """``text`` read as JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
