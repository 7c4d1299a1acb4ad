"""``Workflow(verbose=True)``: a line for each step start and end, and each event added.

The lines are llama-index-workflows'::

    [tick] add: StartEvent(topic='x')
    [first:0] started from StartEvent
    [first:0] complete with Mid
    [tick] add: Mid(text='hi')
    [second:0] started from Mid
    [result] StopEvent(result='done')
    [second:0] complete with StopEvent

Each line is written by the process where its activity happens: a run's start,
an event sent from outside, a cancellation and a timeout noticed by the caller
are written by the caller; a step's lines by the process that executes it (in
distributed mode a worker, when the workflow instance it serves has
``verbose=True``). A step's lines are written after its commit: its
StopEvent, its end, then the events it sent and returned, in routing order.

Where a line goes is decided as it is written (a worker sets up logging after
importing its workflows): to the ``stalkflow.verbose`` logger at DEBUG, else at
INFO, if it would emit there; else to ``print()``. An application that
configured llama-index-workflows' ``workflows.verbose`` logger (a level or a
handler on it or on ``workflows``) gets the lines there instead, by the same rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from stalkflow.core.deliveries import Delivery
from stalkflow.events import Event, StepState, StepStateChanged, StopEvent
from stalkflow.events.summary import summarize_event

logger = logging.getLogger("stalkflow.verbose")

#: llama-index-workflows' logger for these lines, honoured when an application configured it.
UPSTREAM_LOGGER = "workflows.verbose"

CANCELLED = "[tick] cancelled"


def output() -> Callable[[str], None]:
    """Where a line goes now: a logger's DEBUG or INFO if enabled, else ``print``."""
    chosen = logging.getLogger(UPSTREAM_LOGGER) if _configured(UPSTREAM_LOGGER) else logger
    if chosen.isEnabledFor(logging.DEBUG):
        return chosen.debug
    if chosen.isEnabledFor(logging.INFO):
        return chosen.info
    return print


def say(*lines: str) -> None:
    write = output()
    for line in lines:
        write(line)


def _configured(name: str) -> bool:
    """Whether a logger from ``name`` up to (not including) the root has a level or a handler."""
    known = logging.Logger.manager.loggerDict  # looked up, not created
    while name:
        found = known.get(name)
        if isinstance(found, logging.Logger) and (found.level != logging.NOTSET or found.handlers):
            return True
        name = name.rpartition(".")[0]
    return False


# --- the lines ------------------------------------------------------------------------


def added(event: Event, step: str | None = None) -> str:
    """An event given to the run (`` -> step`` when sent to one step)."""
    target = f" -> {step}" if step else ""
    return f"[tick] add: {summarize_event(event)}{target}"


def result(stop: StopEvent) -> str:
    return f"[result] {summarize_event(stop)}"


def timed_out(timeout_s: float) -> str:
    return f"[tick] timeout: {timeout_s}s"


def waiter_timed_out(step: str, waiter_id: str) -> str:
    return f"[tick] waiter timeout: step {step} waiter {waiter_id}"


def started(step: str, worker_id: str, input_event_name: str) -> str:
    return f"[{step}:{worker_id}] started from {input_event_name}"


def notice(change: StepStateChanged) -> str | None:
    """The line for a step's state change, None for a state upstream prints nothing for."""
    if change.step_state is StepState.RUNNING:
        return started(change.name, change.worker_id, change.input_event_name)
    if change.step_state is StepState.NOT_RUNNING:
        prefix = f"[{change.name}:{change.worker_id}]"
        name = _short_name(change.output_event_name) if change.output_event_name else None
        if name and name != "NoneType":
            return f"{prefix} complete with {name}"
        return f"{prefix} complete with no result"
    if change.step_state is StepState.PREPARING:
        return enqueued(change.name)
    return None


def enqueued(step: str) -> str:
    return f"[{step}] enqueued (waiting for capacity)"


def committed(
    sent: Sequence[tuple[Event, str | None]],
    returned: Event | None,
    stream: Sequence[Event],
    routed: Sequence[Delivery],
    released: Sequence[Delivery],
) -> list[str]:
    """The lines of a committed step execution.

    ``sent``: the events the step sent (and their target step); ``returned``:
    the event it returned; ``stream``: what its commit appended to the stream
    (its end among them); ``routed`` and ``released``: the deliveries its commit
    made and those that could start at once (the others wait for capacity).

    As upstream's: its StopEvent, its end, then the events it added; these in
    the order the commit routed them (the sent ones, then the returned one),
    each followed by the steps it waits for.
    """
    started_now = {d.delivery_id for d in released}
    waiting = [d for d in routed if d.delivery_id not in started_now]
    lines: list[str] = []
    if isinstance(returned, StopEvent):
        lines.append(result(returned))
    for entry in stream:
        if isinstance(entry, StepStateChanged) and entry.step_state is StepState.NOT_RUNNING:
            line = notice(entry)
            if line is not None:
                lines.append(line)
    outputs = list(sent)
    if returned is not None and not isinstance(returned, StopEvent):
        outputs.append((returned, None))
    for event, step in outputs:
        lines.append(added(event, step))
        lines.extend(enqueued(d.step) for d in waiting if d.event is event)
    return lines


def _short_name(raw: str) -> str:
    """``Mid`` from ``"<class 'pkg.module.Mid'>"`` (how a step's end names its output)."""
    if raw.startswith("<class '") and raw.endswith("'>"):
        return raw[8:-2].rpartition(".")[2]
    return raw
