"""A workflow compiled for execution: its steps, routing table and error handlers.

:func:`compile_plan` builds the :class:`Plan` of a workflow instance from its
steps' configs; ``Workflow._plan`` caches it until ``add_step`` changes the
steps.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from stalkflow.context.state_store import infer_state_type
from stalkflow.core.names import qualified_name
from stalkflow.core.routing import RoutingTable
from stalkflow.decorators import StepConfig, step_config
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
)
from stalkflow.representation.validate import catch_error_handler_for

if TYPE_CHECKING:
    from stalkflow.workflow import Workflow

#: Events any workflow's runs may carry, whatever its steps accept and return.
BUILTIN_EVENTS: tuple[type[Event], ...] = (
    StartEvent,
    StopEvent,
    InputRequiredEvent,
    HumanResponseEvent,
    StepFailedEvent,
    WorkflowTimedOutEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything an executor needs to run any delivery of one workflow."""

    version: int
    name: str
    steps: Mapping[str, Callable[..., Any]]
    configs: Mapping[str, StepConfig]
    routing: RoutingTable
    start_event: type[StartEvent]
    stop_event: type[StopEvent]
    catch_handlers: Mapping[str, str]
    hitl: bool
    event_types: Mapping[str, type[Event]]
    state_type: type[BaseModel]

    @property
    def caps(self) -> dict[str, int]:
        return {name: config.num_workers for name, config in self.configs.items()}


def compile_plan(workflow: Workflow) -> Plan:
    """The plan of ``workflow`` as its steps are now (``version``: its class's step set)."""
    steps = workflow._get_steps()
    configs = {name: step_config(func) for name, func in steps.items()}
    accepted = {name: config.accepted_events for name, config in configs.items() if config}
    types: dict[str, type[Event]] = {}
    for kind in [*BUILTIN_EVENTS, *workflow.events]:
        types[qualified_name(kind)] = kind
    handlers = {}
    for name, config in configs.items():
        if config is not None and config.role == "step":
            handler = catch_error_handler_for(name, configs)  # type: ignore[arg-type]
            if handler is not None:
                handlers[name] = handler
    return Plan(
        version=type(workflow)._step_functions_version,
        name=workflow.workflow_name,
        steps=steps,
        configs=configs,  # type: ignore[arg-type]
        routing=RoutingTable(accepted),
        start_event=workflow._start_event_class,
        stop_event=workflow._stop_event_class,
        catch_handlers=handlers,
        hitl=_uses_human_input(configs.values()),
        event_types=types,
        state_type=infer_state_type(workflow),
    )


def _uses_human_input(configs: Iterable[Any]) -> bool:
    for config in configs:
        kinds = [*config.accepted_events, *config.return_types]
        for kind in kinds:
            if inspect.isclass(kind) and issubclass(kind, (InputRequiredEvent, HumanResponseEvent)):
                return True
    return False
