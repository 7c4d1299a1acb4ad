"""``@step`` and ``@catch_error``: how a function declares itself a workflow step.

The decorator reads the signature once: the one parameter annotated with an
Event type (or a union of them) is the step's input, the return annotation lists
what it may emit, a ``Context`` / ``Context[Model]`` parameter receives the
context, and ``Annotated[T, Resource(...)]`` parameters receive resources.

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
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

from stalkflow.errors import WorkflowValidationError
from stalkflow.events import Event, StepFailedEvent
from stalkflow.resource import ResourceDefinition, ResourceDescriptor
from stalkflow.retry_policy import RetryPolicy

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


def _type_hints(func: Callable[..., Any], localns: dict[str, Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, localns=localns, include_extras=True)
    except NameError as exc:
        missing = getattr(exc, "name", None)
        detail = f" Missing name: {missing}." if missing else ""
        raise WorkflowValidationError(
            f"Failed to resolve type annotations for {func.__qualname__}.{detail} "
            "If you are using 'from __future__ import annotations' or string annotations, "
            "ensure referenced names are available in module scope or in the scope where "
            "the @step decorator is applied."
        ) from exc


def _union_members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for member in get_args(annotation) if member is not type(None)]
    return [annotation]


def _is_context(annotation: Any) -> bool:
    target = get_origin(annotation) or annotation
    return getattr(target, "__name__", None) == "Context"


def _is_event_type(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, Event)


def inspect_step(func: Callable[..., Any], localns: dict[str, Any], **options: Any) -> StepConfig:
    """Build a ``StepConfig`` from a function's signature; raise on an invalid one."""
    hints = _type_hints(func, localns)
    signature = inspect.signature(func)
    events: dict[str, list[Any]] = {}
    context_parameter = None
    state_type = None
    resources: list[ResourceDefinition] = []
    for name, parameter in signature.parameters.items():
        if name in ("self", "cls"):
            continue
        annotation = hints.get(name, parameter.annotation)
        if _is_context(annotation):
            context_parameter = name
            args = get_args(annotation)
            state_type = args[0] if args else None
            continue
        if get_origin(annotation) is Annotated:
            base, *metadata = get_args(annotation)
            descriptors = [m for m in metadata if isinstance(m, ResourceDescriptor)]
            if descriptors:
                descriptors[0].set_localns(localns)
                resources.append(
                    ResourceDefinition(name=name, resource=descriptors[0], type_annotation=base)
                )
                continue
            annotation = base
        members = _union_members(annotation)
        if members and all(_is_event_type(m) for m in members):
            events[name] = members
    if not events:
        raise WorkflowValidationError(
            "Step signature must have at least one parameter annotated as type Event"
        )
    if len(events) > 1:
        raise WorkflowValidationError(
            "Step signature must contain exactly one parameter of type Event but found "
            f"{len(events)}."
        )
    returns = hints.get("return")
    if returns is None and "return" not in hints:
        raise WorkflowValidationError(
            "Return types of workflows step functions must be annotated with their type."
        )
    event_name, accepted = next(iter(events.items()))
    return StepConfig(
        accepted_events=accepted,
        event_name=event_name,
        return_types=_union_members(returns) if returns is not None else [type(None)],
        context_parameter=context_parameter,
        context_state_type=state_type,
        resources=resources,
        is_async=inspect.iscoroutinefunction(func),
        **options,
    )


def _is_free_function(qualname: str) -> bool:
    parts = qualname.split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


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
        if _is_free_function(target.__qualname__):
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
