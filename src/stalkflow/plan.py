"""A workflow compiled for execution: its steps, routing table and error handlers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from stalkflow.core.routing import RoutingTable
from stalkflow.decorators import StepConfig
from stalkflow.events import Event, StartEvent, StopEvent


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
