"""``@step`` and ``@catch_error``: how a function declares itself a workflow step.

The decorator reads the signature once (:mod:`stalkflow.step_signature`): the
one parameter annotated with an Event type (or a union of them) is the step's
input, the return annotation lists what it may emit, a ``Context`` /
``Context[Model]`` parameter receives the context, and ``Annotated[T,
Resource(...)]`` parameters receive resources.

Beyond upstream, ``@step`` takes Celery options (``queue``, ``priority``,
``rate_limit``, ``time_limit``, ``soft_time_limit``) so that steps can be routed
to different worker pools; the embedded engine ignores them, except
``soft_time_limit``, which every engine enforces: a body still running after it
is cancelled and the step fails with ``StepTimeoutError`` (retry policy and
``@catch_error`` apply).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

from stalkflow.errors import WorkflowValidationError
from stalkflow.events import StepFailedEvent
from stalkflow.resource import ResourceDefinition
from stalkflow.retry_policy import RetryPolicy
from stalkflow.step_signature import inspect_signature, is_free_function, validate_step_signature

if TYPE_CHECKING:
    from stalkflow.workflow import Workflow

WorkflowGraphCheck = Literal["reachability", "terminal_event", "dead_end"]
StepGraphCheck = Literal["reachability", "dead_end"]
StepRole = Literal["step", "catch_error"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class CeleryOptions:
    """Per-step Celery task options; ``None`` leaves Celery's default."""

    queue: str | None = None
    priority: int | None = None
    rate_limit: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None


@dataclasses.dataclass
class StepConfig:
    """What the decorator learned about a step from its signature and arguments."""

    accepted_events: list[Any]
    event_name: str
    return_types: list[Any]
    context_parameter: str | None
    num_workers: int
    retry_policy: RetryPolicy | None
    resources: list[ResourceDefinition]
    context_state_type: type[BaseModel] | None = None
    skip_graph_checks: list[StepGraphCheck] = dataclasses.field(default_factory=list)
    role: StepRole = "step"
    catch_error_for_steps: list[str] | None = None
    catch_error_max_recoveries: int = 1
    celery: CeleryOptions = dataclasses.field(default_factory=CeleryOptions)
    is_async: bool = True


def _caller_namespace(depth: int) -> dict[str, Any]:
    """Locals of the frame that applied the decorator, to resolve postponed annotations."""
    frame = sys._getframe(depth + 1)
    namespace: dict[str, Any] = {}
    try:
        if frame.f_back is not None:
            namespace.update(frame.f_back.f_locals)
        namespace.update(frame.f_locals)
    finally:
        del frame
    return namespace


def inspect_step(
    func: Callable[..., Any], localns: dict[str, Any] | None, **options: Any
) -> StepConfig:
    """Build a ``StepConfig`` from a function's signature; raise on an invalid one."""
    spec = inspect_signature(func, localns)
    validate_step_signature(spec)
    event_name, accepted = next(iter(spec.accepted_events.items()))
    return StepConfig(
        accepted_events=list(accepted),
        event_name=event_name,
        return_types=spec.return_types,
        context_parameter=spec.context_parameter,
        context_state_type=spec.context_state_type,
        resources=spec.resources,
        is_async=inspect.iscoroutinefunction(func),
        **options,
    )


def step(
    func: Callable[..., Any] | None = None,
    *,
    workflow: type[Workflow] | None = None,
    num_workers: int = 4,
    retry_policy: RetryPolicy | None = None,
    skip_graph_checks: list[StepGraphCheck] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    rate_limit: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
) -> Any:
    """Declare a function or method a workflow step.

    Usable bare (``@step``) or with arguments (``@step(num_workers=8)``). A free
    function needs ``workflow=TheWorkflow``. ``num_workers`` caps how many
    executions of this step one run may have at once (default 4).

    Example::

        class Flow(Workflow):
            @step(retry_policy=retry_policy(stop=stop_after_attempt(5)), queue="gpu")
            async def embed(self, ctx: Context, ev: StartEvent) -> StopEvent:
                return StopEvent(result="done")
    """
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers <= 0:
        raise WorkflowValidationError("num_workers must be an integer greater than 0")
    celery = CeleryOptions(queue, priority, rate_limit, time_limit, soft_time_limit)

    def apply(target: F, localns: dict[str, Any]) -> F:
        config = inspect_step(
            target,
            localns,
            num_workers=num_workers,
            retry_policy=retry_policy,
            skip_graph_checks=list(skip_graph_checks or []),
            celery=celery,
        )
        target._step_config = config  # type: ignore[attr-defined]
        if is_free_function(target.__qualname__):
            if workflow is None:
                raise WorkflowValidationError(
                    f"To decorate {target.__name__} please pass a workflow class to the "
                    "@step decorator."
                )
            workflow.add_step(target)
        return target

    if func is not None:
        return apply(func, _caller_namespace(1))

    namespace = _caller_namespace(1)

    def decorator(target: F) -> F:
        return apply(target, {**namespace, **_caller_namespace(1)})

    return decorator


def catch_error(
    func: Callable[..., Any] | None = None,
    *,
    for_steps: list[str] | None = None,
    max_recoveries: int = 1,
) -> Any:
    """Declare a handler for steps that failed after exhausting their retries.

    The handler accepts a ``StepFailedEvent``. ``for_steps`` scopes it to named
    steps; ``None`` (the default) covers every step no scoped handler claims.
    ``max_recoveries`` bounds how often it runs for one lineage of events.
    """
    if (
        not isinstance(max_recoveries, int)
        or isinstance(max_recoveries, bool)
        or max_recoveries < 1
    ):
        raise WorkflowValidationError("@catch_error max_recoveries must be an integer >= 1")
    if for_steps is not None and (
        not isinstance(for_steps, list) or not all(isinstance(s, str) for s in for_steps)
    ):
        raise WorkflowValidationError(
            "@catch_error for_steps must be None or a list of step name strings"
        )

    def apply(target: F, localns: dict[str, Any]) -> F:
        config = inspect_step(target, localns, num_workers=1, retry_policy=None)
        if config.accepted_events != [StepFailedEvent]:
            raise WorkflowValidationError(
                f"@catch_error handler '{target.__name__}' must accept StepFailedEvent "
                "as its event parameter."
            )
        config.role = "catch_error"
        config.catch_error_for_steps = list(for_steps) if for_steps is not None else None
        config.catch_error_max_recoveries = max_recoveries
        target._step_config = config  # type: ignore[attr-defined]
        return target

    if func is not None:
        return apply(func, _caller_namespace(1))

    namespace = _caller_namespace(1)

    def decorator(target: F) -> F:
        return apply(target, {**namespace, **_caller_namespace(1)})

    return decorator


def step_config(func: Any) -> StepConfig | None:
    """The ``StepConfig`` of a decorated function or bound method, if any."""
    return getattr(func, "_step_config", None)


def get_steps_from_class(_class: object) -> dict[str, Callable[..., Any]]:
    """Name to function of the ``@step`` / ``@catch_error`` methods of a class.

    Inherited methods count; free-function steps attached with
    ``@step(workflow=...)`` do not (the workflow keeps those apart).
    """
    return {
        name: member
        for name, member in inspect.getmembers(_class, predicate=inspect.isfunction)
        if step_config(member) is not None
    }


def get_steps_from_instance(workflow: object) -> dict[str, Callable[..., Any]]:
    """Name to bound method of the ``@step`` / ``@catch_error`` methods of an instance.

    The steps are found on the class, then bound: unlike a scan of the instance,
    this never evaluates the instance's properties.
    """
    found: dict[str, Callable[..., Any]] = {}
    for name in get_steps_from_class(type(workflow)):
        bound = getattr(workflow, name)
        if inspect.ismethod(bound):
            found[name] = bound
    return found
