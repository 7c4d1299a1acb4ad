"""The distributed engine: Celery carries deliveries, Redis keeps runs.

A process that starts runs (a web app, a script) and the worker processes that
execute them configure the same engine: the same broker, the same Redis, the
same key prefix. Clients only submit and read; workers execute.

In code::

    import stalkflow

    stalkflow.configure(broker_url="redis://127.0.0.1:6379/0", redis_url="redis://127.0.0.1:6379/1")
    handle = MyWorkflow().submit(topic="pirates")

or from the environment (read when the engine is first needed, never at import):
``STALKFLOW_BROKER_URL``, ``STALKFLOW_REDIS_URL`` (a Redis URL alone is the
broker too), ``STALKFLOW_PREFIX``, ``STALKFLOW_QUEUE``,
``STALKFLOW_VISIBILITY_TIMEOUT_S`` ... (see :class:`~stalkflow.settings.Settings`).

Workers run ``celery -A worker.app worker``; ``worker/app.py`` calls
:func:`worker_app`, which imports the modules named in ``STALKFLOW_WORKFLOWS``
and registers their workflows, so that each step has its Celery task and each
delivery finds its workflow by name.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import sys
import weakref
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from stalkflow.context.state_store import LockSettings
from stalkflow.core.codec import EventCodec, EventTypes, type_name
from stalkflow.decorators import get_steps_from_class
from stalkflow.engine import Engine, WorkflowRegistry, get_engine, set_engine
from stalkflow.errors import WorkflowConfigurationError
from stalkflow.events import Event
from stalkflow.settings import Settings
from stalkflow.workflow import Workflow

if TYPE_CHECKING:
    from stalkflow.adapters.celery_app import CeleryApp
    from stalkflow.adapters.celery_transport import CeleryTransport

__all__ = [
    "build_engine",
    "celery_app",
    "configure",
    "event_types_of",
    "load_workflows",
    "register",
    "worker_app",
    "workflows_in",
]

logger = logging.getLogger("stalkflow.distributed")

#: Names of the environment variable listing workflow modules for workers.
WORKFLOWS_ENV = "STALKFLOW_WORKFLOWS"


def configure(
    broker_url: str | None = None,
    redis_url: str | None = None,
    *,
    celery_app: CeleryApp | None = None,
    **settings: Any,
) -> Engine:
    """Make the distributed engine the default of this process, and return it.

    ``redis_url`` is where runs and state live; it is also the broker when no
    ``broker_url`` is given (and a Redis ``broker_url`` alone is the store too).
    ``celery_app`` sends with an existing Celery app (its broker, its
    configuration, untouched; each step task still gets stalkflow's per-task
    options). Other keywords are :class:`~stalkflow.settings.Settings` fields,
    e.g. ``prefix="myapp"``, ``visibility_timeout_s=600``.

    Example::

        stalkflow.configure(redis_url="redis://127.0.0.1:6379/0")
    """
    unknown = set(settings) - {field.name for field in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"configure() got unknown settings: {', '.join(sorted(unknown))}")
    config = Settings(broker_url=broker_url, redis_url=redis_url, **settings)
    if celery_app is None and not config.distributed:
        raise WorkflowConfigurationError(
            "configure() needs a broker_url, a redis_url or a celery_app"
        )
    engine = build_engine(config, celery_app=celery_app)
    set_engine(engine)
    return engine


def build_engine(settings: Settings, *, celery_app: CeleryApp | None = None) -> Engine:
    """A distributed engine from ``settings``: a RedisStore and a CeleryTransport.

    The store and transport share one strict codec: a message or stored value is
    decoded only into the event types of a workflow in the engine's registry.
    """
    from stalkflow.adapters.celery_transport import CeleryTransport
    from stalkflow.adapters.redis_store import RedisStore
    from stalkflow.execution import ExecutionSettings
    from stalkflow.ports import DeliveryPolicy

    broker_url, redis_url = _urls(settings, celery_app)
    registry = WorkflowRegistry()
    codec = EventCodec(event_types_of(registry))
    policy = DeliveryPolicy(
        lease_s=settings.delivery_lease_s,
        dispatch_grace_s=settings.dispatch_grace_s,
        max_deliveries=settings.max_deliveries,
    )
    store = RedisStore.from_url(
        redis_url,
        prefix=settings.prefix,
        codec=codec,
        finished_ttl_s=settings.result_ttl_s,
        policy=policy,
    )
    if celery_app is not None:
        transport = CeleryTransport(celery_app, codec, workflows=registry.get)
    else:
        assert broker_url is not None
        transport = CeleryTransport.from_url(
            broker_url,
            codec=codec,
            queue=settings.queue,
            visibility_timeout_s=settings.visibility_timeout_s,
            workflows=registry.get,
        )
    locks = LockSettings(lease_s=settings.lock_lease_s, wait_s=settings.lock_wait_s)
    execution = ExecutionSettings(
        countdown_max_s=settings.effective_countdown_max_s,
        step_timeout_s=settings.step_timeout_s,
    )
    engine = Engine(store, transport, locks=locks, registry=registry, execution=execution)
    # workers (only) sweep for lost deliveries and retries now due
    transport.sweep_in_workers(lambda: engine.executor.sweep_forever(settings.sweep_interval_s))
    return engine


def event_types_of(registry: WorkflowRegistry) -> EventTypes:
    """The event types a workflow's messages and stream may carry, by workflow name.

    Those its steps accept and return, and every ``Event`` class in the modules
    that define the workflow class (and its bases): a progress event written
    with ``ctx.write_event_to_stream`` is often declared nowhere else. Those
    modules are already imported; nothing is ever imported for a message.

    The types are cached by workflow object, held weakly: a name whose workflow
    is replaced (or collected and made anew, perhaps at the same address) is
    answered with the types of the workflow it names now, and the cache keeps no
    workflow alive (a remembered name is forgotten with its last instance).
    """
    cache: weakref.WeakKeyDictionary[Workflow, Mapping[str, type[Event]]] = (
        weakref.WeakKeyDictionary()
    )

    def lookup(name: str) -> Mapping[str, type[Event]]:
        workflow = registry.get(name)
        found = cache.get(workflow)
        if found is None:
            found = {**_module_events(type(workflow)), **workflow._plan().event_types}
            cache[workflow] = found
        return found

    return lookup


def _module_events(cls: type[Workflow]) -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, Workflow) or klass is Workflow:
            continue
        module = sys.modules.get(klass.__module__)
        for value in vars(module).values() if module is not None else ():
            if inspect.isclass(value) and issubclass(value, Event):
                found[type_name(value)] = value
    return found


def _urls(settings: Settings, celery_app: CeleryApp | None) -> tuple[str | None, str]:
    broker_url = settings.broker_url or settings.redis_url
    redis_url = settings.redis_url
    if (
        redis_url is None
        and broker_url is not None
        and broker_url.startswith(("redis://", "rediss://", "unix://"))
    ):
        redis_url = broker_url
    if redis_url is None:
        raise WorkflowConfigurationError(
            "The distributed engine keeps runs in Redis: set redis_url "
            "(STALKFLOW_REDIS_URL); a non-Redis broker cannot be the store"
        )
    if celery_app is None and broker_url is None:
        raise WorkflowConfigurationError("No broker: set broker_url (STALKFLOW_BROKER_URL)")
    return broker_url, redis_url


def celery_app(engine: Engine | None = None) -> CeleryApp:
    """The Celery app of ``engine`` (default: this process's engine)."""
    return _celery_transport(engine or get_engine()).app


def _celery_transport(engine: Engine) -> CeleryTransport:
    from stalkflow.adapters.celery_transport import CeleryTransport

    if not isinstance(engine.transport, CeleryTransport):
        raise WorkflowConfigurationError(
            "This process's engine is not distributed: call stalkflow.configure(...) or set "
            "STALKFLOW_BROKER_URL / STALKFLOW_REDIS_URL"
        )
    return engine.transport


# --- registering workflows -------------------------------------------------------------


def register(*workflows: Workflow | type[Workflow], engine: Engine | None = None) -> list[Workflow]:
    """Register workflows with the engine so that deliveries find them by name.

    A workflow class is instantiated with no arguments. On a distributed engine
    each step also gets its Celery task. Registering the same name again keeps
    the first workflow.

    Example::

        stalkflow.distributed.register(Research, Summarize())
    """
    engine = engine or get_engine()
    transport = _celery_transport(engine) if _is_distributed(engine) else None
    registered = []
    for candidate in workflows:
        workflow = candidate() if isinstance(candidate, type) else candidate
        if not isinstance(workflow, Workflow):
            raise TypeError(f"Not a workflow: {candidate!r}")
        engine.registry.register(workflow, replace=False)
        if transport is not None:
            transport.register_workflow(workflow)
        registered.append(workflow)
    return registered


def _is_distributed(engine: Engine) -> bool:
    from stalkflow.adapters.celery_transport import CeleryTransport

    return isinstance(engine.transport, CeleryTransport)


def workflows_in(module: ModuleType) -> list[Workflow]:
    """The workflows a module defines: its instances, and its other classes instantiated.

    Instances are preferred (they carry timeouts, resources, names); a class
    with steps, defined in the module, with no instance of it there, is
    instantiated with no arguments. Classes without steps (bases) are skipped.

    Raises:
        WorkflowConfigurationError: such a class needs constructor arguments.
    """
    instances = [value for value in vars(module).values() if isinstance(value, Workflow)]
    covered = {type(instance) for instance in instances}
    for value in list(vars(module).values()):
        if (
            inspect.isclass(value)
            and issubclass(value, Workflow)
            and value.__module__ == module.__name__
            and value not in covered
            and _has_steps(value)
        ):
            try:
                instances.append(value())
            except Exception as exc:
                raise WorkflowConfigurationError(
                    f"Cannot register workflow class {value.__qualname__} of module "
                    f"{module.__name__}: it cannot be made with no arguments ({exc}); "
                    "define an instance of it in the module instead"
                ) from exc
    return instances


def _has_steps(cls: type[Workflow]) -> bool:
    return bool(cls._step_functions) or bool(get_steps_from_class(cls))


def load_workflows(modules: str | Iterable[str], engine: Engine | None = None) -> list[Workflow]:
    """Import modules (comma-separated names, or a list) and register their workflows."""
    names = modules.split(",") if isinstance(modules, str) else list(modules)
    registered: list[Workflow] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        module = importlib.import_module(name)
        found = workflows_in(module)
        if not found:
            logger.warning("Module %s defines no workflow", name)
        registered.extend(register(*found, engine=engine))
    return registered


def worker_app(environ: Mapping[str, str] | None = None) -> CeleryApp:
    """The Celery app of a worker process, configured from the environment.

    Builds the distributed engine from ``STALKFLOW_*`` variables, makes it this
    process's default, registers the workflows of the modules in
    ``STALKFLOW_WORKFLOWS`` and returns the engine's Celery app.
    """
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    if not settings.distributed:
        raise WorkflowConfigurationError(
            "A stalkflow worker needs STALKFLOW_REDIS_URL (and STALKFLOW_BROKER_URL when the "
            "broker is not that Redis)"
        )
    engine = settings.build_engine()
    set_engine(engine)
    modules = env.get(WORKFLOWS_ENV, "")
    registered = load_workflows(modules, engine=engine)
    if not registered:
        logger.warning(
            "No workflows registered: set %s to the comma-separated modules that define them",
            WORKFLOWS_ENV,
        )
    return celery_app(engine)
