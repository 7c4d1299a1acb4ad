"""``Workflow``: a class whose ``@step`` methods form an event-driven graph.

The class holds a workflow's steps, its validation and its cached plan, and
starts runs. What it delegates: compiling the plan (:mod:`stalkflow.plan`),
building a run's StartEvent and seed (:mod:`stalkflow.run_start`), the
structural checks (:mod:`stalkflow.representation.validate`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from stalkflow.context.context import Context
from stalkflow.context.state_store import infer_state_type
from stalkflow.core.ids import new_run_id
from stalkflow.core.names import qualified_name
from stalkflow.decorators import (
    StepConfig,
    WorkflowGraphCheck,
    get_steps_from_class,
    step_config,
)
from stalkflow.errors import ContextStateError, WorkflowValidationError
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.handler import WorkflowHandler
from stalkflow.observability import verbose as verbose_lines
from stalkflow.plan import Plan, compile_plan
from stalkflow.ports import RunSeed
from stalkflow.representation.validate import (
    find_start_event,
    find_stop_event,
    unknown_graph_checks,
    validate_workflow,
)
from stalkflow.resource import ResourceManager
from stalkflow.run_start import seed_run, start_event_for, with_state

if TYPE_CHECKING:
    from stalkflow.core.runs import RunRecord
    from stalkflow.engine import Engine
    from stalkflow.submit import RunHandle


class _WorkflowMeta(type):
    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        # Free-function steps belong to exactly this class, never to subclasses.
        cls._step_functions: dict[str, Any] = {}
        cls._step_functions_version = 0  # bumped by add_step; invalidates cached plans


class Workflow(metaclass=_WorkflowMeta):
    """An event-driven workflow: ``@step`` methods that accept and emit events.

    Example::

        class Hello(Workflow):
            @step
            async def greet(self, ev: StartEvent) -> StopEvent:
                return StopEvent(result=f"hello {ev.name}")

        result = await Hello(timeout=10).run(name="world")

    ``timeout`` is the run's limit in seconds (``None``: no limit).
    ``num_concurrent_runs`` bounds how many runs of this instance execute at once.
    ``engine`` picks where runs execute; by default the configured engine, or
    the embedded one. ``verbose=True`` writes a line for each step start and
    end and each event added, as llama-index-workflows does
    (:mod:`stalkflow.observability.verbose`).
    """

    _step_functions: ClassVar[dict[str, Any]]
    _step_functions_version: ClassVar[int]

    def __init__(
        self,
        timeout: float | None = 45.0,
        disable_validation: bool = False,
        verbose: bool = False,
        resource_manager: ResourceManager | None = None,
        num_concurrent_runs: int | None = None,
        runtime: Any = None,
        workflow_name: str | None = None,
        skip_graph_checks: set[WorkflowGraphCheck] | None = None,
        *,
        engine: Engine | None = None,
    ) -> None:
        self._timeout = timeout
        self._disable_validation = disable_validation
        self._verbose = verbose
        self._resource_manager = resource_manager or ResourceManager()
        self._num_concurrent_runs = num_concurrent_runs
        self._semaphore: asyncio.Semaphore | None = None
        self._workflow_name = workflow_name
        self._engine = engine if engine is not None else _engine_from(runtime)
        configs = self.step_configs()
        self._start_event_class = find_start_event(type(self).__name__, configs)
        self._stop_event_class = find_stop_event(type(self).__name__, configs)
        if skip_graph_checks:
            unknown_graph_checks(skip_graph_checks)
        self._skip_graph_checks = frozenset(skip_graph_checks or ())
        self._validation_result: bool | None = None
        self._validated_version = -1
        self._cached_plan: Plan | None = None
        self._plan_lock = threading.Lock()

    # --- steps ------------------------------------------------------------------------

    @classmethod
    def add_step(cls, func: Any) -> None:
        """Attach a free-function step to this workflow class."""
        if step_config(func) is None:
            raise WorkflowValidationError(
                f"Step function {func.__name__} is missing the `@step` decorator."
            )
        name = func.__name__
        if name in cls._step_functions or name in get_steps_from_class(cls):
            raise WorkflowValidationError(
                f"A step {name} is already part of this workflow, please choose another name."
            )
        cls._step_functions[name] = func
        cls._step_functions_version += 1

    def _get_steps(self) -> dict[str, Any]:
        """Step name to callable: bound methods, plus this class's free functions.

        Cached per instance; ``add_step`` (the only way steps change after the
        class is built) invalidates it.
        """
        version = type(self)._step_functions_version
        cached = self.__dict__.get("_steps_cache")
        if cached is not None and cached[0] == version:
            return dict(cached[1])
        steps: dict[str, Any] = {n: getattr(self, n) for n in get_steps_from_class(type(self))}
        steps.update(type(self)._step_functions)
        self.__dict__["_steps_cache"] = (version, steps)
        return dict(steps)

    def step_configs(self) -> dict[str, StepConfig]:
        configs = {}
        for name, func in self._get_steps().items():
            config = step_config(func)
            assert config is not None
            configs[name] = config
        return configs

    # --- properties -------------------------------------------------------------------

    @property
    def workflow_name(self) -> str:
        if self._workflow_name:
            return self._workflow_name
        return qualified_name(type(self))

    @property
    def start_event_class(self) -> type[StartEvent]:
        return self._start_event_class

    @property
    def stop_event_class(self) -> type[StopEvent]:
        return self._stop_event_class

    @property
    def events(self) -> list[type[Event]]:
        """Every event type that a step accepts or returns."""
        seen: list[type[Event]] = []
        for config in self.step_configs().values():
            for kind in [*config.accepted_events, *config.return_types]:
                if inspect.isclass(kind) and issubclass(kind, Event) and kind not in seen:
                    seen.append(kind)
        return seen

    @property
    def resource_manager(self) -> ResourceManager:
        return self._resource_manager

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from stalkflow.engine import get_engine

            return get_engine()
        return self._engine

    # --- validation and planning ----------------------------------------------------------

    def validate(
        self, *, validate_resource_configs: bool = True, validate_resources: bool = False
    ) -> bool:
        """Check the event graph; True if the workflow takes human input (HITL)."""
        hitl = validate_workflow(
            type(self).__name__,
            self.step_configs(),
            self._skip_graph_checks,
            validate_resource_configs=validate_resource_configs,
        )
        if validate_resources:
            self._check_resources()
        return hitl

    def _check_resources(self) -> None:
        """Resolve every resource once, as the steps will; report each failure by step."""
        from stalkflow._sync import run_blocking
        from stalkflow.resource import resolve_resources

        async def resolve_all() -> list[str]:
            errors = []
            for name, config in self.step_configs().items():
                for definition in config.resources:
                    try:
                        await resolve_resources(self._resource_manager, [definition])
                    except Exception as exc:
                        errors.append(f"In step '{name}', parameter '{definition.name}': {exc}")
            return errors

        errors = run_blocking(resolve_all)
        if errors:
            raise WorkflowValidationError(
                "Resource validation failed:\n" + "\n".join(f"  - {e}" for e in errors)
            )

    def _validate(self) -> bool:
        """Validate once per step set (``add_step`` invalidates); False when disabled."""
        if self._disable_validation:
            return False
        version = type(self)._step_functions_version
        if self._validation_result is None or self._validated_version != version:
            self._validation_result = self.validate()
            self._validated_version = version
        return self._validation_result

    def _ensure_valid(self) -> None:
        self._validate()

    def _plan(self) -> Plan:
        """The compiled workflow (built once per instance, rebuilt after ``add_step``)."""
        plan = self._cached_plan
        if plan is not None and plan.version == type(self)._step_functions_version:
            return plan
        with self._plan_lock:
            plan = self._cached_plan = compile_plan(self)
            return plan

    # --- running ----------------------------------------------------------------------------

    def _get_start_event_instance(
        self, start_event: StartEvent | None, **kwargs: Any
    ) -> StartEvent:
        """The run's StartEvent: ``start_event`` itself, or one built from ``kwargs``."""
        return start_event_for(self._start_event_class, start_event, kwargs)

    def run(
        self,
        ctx: Context[Any] | None = None,
        start_event: StartEvent | None = None,
        **kwargs: Any,
    ) -> WorkflowHandler:
        """Start a run and return its handler; needs a running event loop.

        Keyword arguments build the StartEvent. ``run_id=`` names the run.
        ``ctx=`` runs in an existing context: a restored mid-run snapshot
        resumes without a new StartEvent; a context whose run completed starts
        a new run that keeps its state.
        """
        if start_event is not None and not isinstance(start_event, StartEvent):
            raise ValueError("The 'start_event' argument must be an instance of 'StartEvent'.")
        asyncio.get_running_loop()
        self._ensure_valid()
        run_id = kwargs.pop("run_id", None) or new_run_id()
        ctx = ctx if ctx is not None else Context(self)
        if ctx._handler is not None and not ctx._handler.is_done():
            raise ContextStateError(
                "Cannot start a new run while context is already running. "
                "Wait for the current run to finish first."
            )
        restored = ctx._restored
        resume = restored is not None and restored.is_running
        infer_state_type(self)  # raises for incompatible state types, synchronously
        event = None if resume else self._get_start_event_instance(start_event, **kwargs)
        seed = self._seed(ctx, run_id, event)
        engine = self.engine
        previous_run = ctx._run_id

        holds_slot = False

        async def start() -> RunRecord:
            nonlocal holds_slot
            state = seed.state
            if state is None and previous_run is not None:
                state = (await engine.store.load_state(previous_run)).blob
            if self._num_concurrent_runs is not None:
                await self._run_slot().acquire()
                holds_slot = True
            if self._verbose and event is not None:
                verbose_lines.say(verbose_lines.added(event))
            return await engine.start_run(self, run_id, with_state(seed, state), self._timeout)

        def release_slot(_: object) -> None:
            # Once per run, and only if the slot was taken (a failed start releases it too).
            nonlocal holds_slot
            if holds_slot:
                holds_slot = False
                self._release_slot()

        handler = WorkflowHandler(ctx, run_id, engine, start, start_event=event)
        if self._num_concurrent_runs is not None:
            handler._task.add_done_callback(release_slot)
        ctx._restored = None
        ctx._attach(engine, run_id, handler)
        return handler

    def _seed(self, ctx: Context[Any], run_id: str, event: StartEvent | None) -> RunSeed:
        return seed_run(self._plan(), self.workflow_name, ctx, run_id, event)

    def _run_slot(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._num_concurrent_runs or 1)
        return self._semaphore

    def _release_slot(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()

    def submit(self, start_event: StartEvent | None = None, **kwargs: Any) -> RunHandle:
        """Start a run from synchronous code (a web view, a script); returns at once.

        Example::

            handle = MyWorkflow().submit(topic="pirates")
            print(handle.run_id, handle.status)
            result = handle.get(timeout=30)
        """
        from stalkflow.submit import submit_run

        return submit_run(self, start_event, kwargs)


def _engine_from(runtime: Any) -> Engine | None:
    from stalkflow.engine import Engine

    return runtime if isinstance(runtime, Engine) else None
