"""Configuring the distributed engine: from arguments, from the environment, for workers.

Nothing here connects: the Redis store and the Celery app connect on first use.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import celery
import pytest

import stalkflow
from stalkflow import Workflow, get_engine, set_engine, step
from stalkflow.adapters.celery_transport import CeleryTransport
from stalkflow.adapters.redis_store import RedisStore
from stalkflow.core.codec import type_name
from stalkflow.distributed import (
    celery_app,
    event_types_of,
    load_workflows,
    register,
    worker_app,
)
from stalkflow.engine import Engine, WorkflowRegistry
from stalkflow.errors import WorkflowConfigurationError
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.settings import Settings


@pytest.fixture(autouse=True)
def default_engine() -> Iterator[None]:
    """Each test starts and ends with the lazily made default engine."""
    set_engine(None)
    try:
        yield
    finally:
        set_engine(None)


def transport_of(engine: Engine) -> CeleryTransport:
    assert isinstance(engine.transport, CeleryTransport)
    return engine.transport


def test_configure_makes_the_distributed_engine_the_default() -> None:
    engine = stalkflow.configure(
        "redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/2", prefix="app", lock_lease_s=3
    )

    assert get_engine() is engine
    assert isinstance(engine.store, RedisStore)
    assert engine.store.url == "redis://127.0.0.1:6379/2"
    assert transport_of(engine).app.conf.broker_url == "redis://127.0.0.1:6379/1"
    assert engine.locks.lease_s == 3


def test_a_redis_url_alone_is_the_broker_too() -> None:
    engine = stalkflow.configure(redis_url="redis://127.0.0.1:6379/3")

    assert transport_of(engine).app.conf.broker_url == "redis://127.0.0.1:6379/3"
    assert isinstance(engine.store, RedisStore)


def test_a_redis_broker_alone_is_the_store_too() -> None:
    engine = stalkflow.configure(broker_url="redis://127.0.0.1:6379/4")

    assert isinstance(engine.store, RedisStore)
    assert engine.store.url == "redis://127.0.0.1:6379/4"


def test_an_amqp_broker_needs_a_redis_store() -> None:
    with pytest.raises(WorkflowConfigurationError, match="redis_url"):
        stalkflow.configure(broker_url="amqp://guest:guest@127.0.0.1:5672//")


def test_configure_needs_somewhere_to_run() -> None:
    with pytest.raises(WorkflowConfigurationError):
        stalkflow.configure()
    with pytest.raises(TypeError, match="visibility"):
        stalkflow.configure(redis_url="redis://h/0", visibility=3)


def test_an_existing_celery_app_is_used_as_it_is() -> None:
    app = celery.Celery("theirs", broker="memory://", set_as_current=False)

    engine = stalkflow.configure(redis_url="redis://127.0.0.1:6379/5", celery_app=app)

    assert celery_app(engine) is app
    assert app.conf.broker_url == "memory://"


def test_settings_from_the_environment_build_the_engine() -> None:
    settings = Settings.from_env(
        {
            "STALKFLOW_REDIS_URL": "redis://:pw@127.0.0.1:6379/6",
            "STALKFLOW_PREFIX": "p",
            "STALKFLOW_QUEUE": "steps",
            "STALKFLOW_VISIBILITY_TIMEOUT_S": "12.5",
        }
    )

    engine = settings.build_engine()

    app = transport_of(engine).app
    assert app.conf.task_default_queue == "steps"
    assert app.conf.broker_transport_options["visibility_timeout"] == 12.5
    assert "pw" not in repr(engine.store)
    assert "prefix='p" in repr(engine.store)


def test_the_environment_configures_the_default_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALKFLOW_REDIS_URL", "redis://127.0.0.1:6379/7")

    assert isinstance(get_engine().transport, CeleryTransport)


def test_celery_app_of_an_embedded_engine_explains() -> None:
    with pytest.raises(WorkflowConfigurationError, match="configure"):
        celery_app(Engine.embedded())


# --- registering workflows ------------------------------------------------------------


class Hello(Workflow):
    @step(queue="greetings")
    async def greet(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="hello")


def test_register_gives_each_step_a_task_and_the_registry_a_name() -> None:
    engine = stalkflow.configure(redis_url="redis://127.0.0.1:6379/8")

    (workflow,) = register(Hello)

    assert engine.registry.get(workflow.workflow_name) is workflow
    assert f"{workflow.workflow_name}.greet" in transport_of(engine).app.tasks


def test_register_on_the_embedded_engine_only_names_the_workflow() -> None:
    engine = Engine.embedded()
    workflow = Hello()

    register(workflow, engine=engine)

    assert engine.registry.get(workflow.workflow_name) is workflow


def test_register_refuses_what_is_not_a_workflow() -> None:
    with pytest.raises(TypeError):
        register(object(), engine=Engine.embedded())  # type: ignore[arg-type]


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(folder: Path, source: str) -> str:
    name = f"flows_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


FLOWS = """
    from stalkflow import Workflow, step
    from stalkflow.events import Event, StartEvent, StopEvent

    class Configured(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    class Bare(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    class Base(Workflow):
        pass  # a base class with no steps of its own: not a workflow to register

    configured = Configured(timeout=5, workflow_name="configured-flow")
"""


def test_load_workflows_prefers_instances_and_instantiates_bare_classes(
    module_dir: Path,
) -> None:
    name = write_module(module_dir, FLOWS)
    engine = Engine.embedded()

    loaded = load_workflows(f" {name} ,", engine=engine)

    module = sys.modules[name]
    assert {w.workflow_name for w in loaded} == {"configured-flow", f"{name}.Bare"}
    assert engine.registry.get("configured-flow") is module.configured
    assert engine.registry.get("configured-flow").timeout == 5


def test_worker_app_serves_the_modules_of_the_environment(module_dir: Path) -> None:
    name = write_module(module_dir, FLOWS)

    app = worker_app(
        {"STALKFLOW_REDIS_URL": "redis://127.0.0.1:6379/9", "STALKFLOW_WORKFLOWS": name}
    )

    assert "configured-flow.go" in app.tasks
    assert f"{name}.Bare.go" in app.tasks
    assert celery_app() is app


def test_worker_app_needs_a_redis_url() -> None:
    with pytest.raises(WorkflowConfigurationError, match="STALKFLOW_REDIS_URL"):
        worker_app({})


def test_a_workflow_class_that_needs_arguments_is_a_clear_error(module_dir: Path) -> None:
    name = write_module(
        module_dir,
        """
        from stalkflow import Workflow, step
        from stalkflow.events import Event, StartEvent, StopEvent

        class Needy(Workflow):
            def __init__(self, api_key: str) -> None:
                super().__init__()

            @step
            async def go(self, ev: StartEvent) -> StopEvent:
                return StopEvent()
        """,
    )

    with pytest.raises(WorkflowConfigurationError, match="Needy"):
        load_workflows(name, engine=Engine.embedded())


# --- the event types a workflow's messages may carry ------------------------------------


class Progress(Event):
    """Written to the stream by ``Reporting``; in no step's signature."""

    message: str


class Reporting(Workflow):
    @step
    async def report(self, ev: StartEvent) -> StopEvent:
        return StopEvent()


def test_a_workflows_event_types_include_the_events_of_its_module() -> None:
    registry = WorkflowRegistry()
    workflow = Reporting()
    registry.register(workflow)

    types = event_types_of(registry)(workflow.workflow_name)

    assert types[type_name(Progress)] is Progress
    assert types[type_name(StartEvent)] is StartEvent
    with pytest.raises(LookupError):
        event_types_of(registry)("unknown")


def test_a_remembered_name_stays_known_while_any_of_its_instances_lives() -> None:
    # a client makes a new instance per run: the name must not be lost when an
    # older instance, remembered first, is collected while a newer one still runs
    import gc

    registry = WorkflowRegistry()
    older, newer = Reporting(), Reporting()
    registry.remember(older)
    registry.remember(newer)

    del older
    gc.collect()

    assert registry.get(newer.workflow_name) is newer
    del newer
    gc.collect()
    assert registry.names() == []
    with pytest.raises(LookupError):
        registry.get(Reporting().workflow_name)


def pinging_class() -> type[Workflow]:
    """A workflow class named ``pinging`` with a ``Ping`` event of its own.

    Each call makes new classes with the same names: a workflow redefined under
    one name (a reloaded module, a re-run notebook cell) whose event types travel
    under the same type names but are other classes.
    """

    class Ping(Event):
        pass

    class Pinging(Workflow):
        @step
        async def ping(self, ev: StartEvent) -> Ping:
            return Ping()

        @step
        async def pong(self, ev: Ping) -> StopEvent:
            return StopEvent()

    return Pinging


def made_at(address: int, cls: type[Workflow]) -> Workflow:
    """An instance of ``cls`` made at ``address`` if it can be, where a collected object lived.

    CPython reuses freed memory: the misses are kept alive until the allocator
    hands out that address again. Only the object is allocated until then (no
    ``__init__``, whose own allocations could take the address first); the class
    is made beforehand for the same reason.
    """
    misses = []
    for _ in range(100_000):
        candidate = cls.__new__(cls)
        if id(candidate) == address:
            break
        misses.append(candidate)
    # (if the allocator never handed the address out again, the instance lives
    # elsewhere: the lookup must still answer with its types)
    candidate.__init__(workflow_name="pinging")  # type: ignore[misc]
    return candidate


def test_a_name_made_anew_at_a_collected_workflows_address_has_the_new_types() -> None:
    # a process makes a new instance per run; the old one is collected and a new
    # one, of a redefined class, may land at its address: the types must be the
    # new class's, or messages would decode into classes its steps do not accept
    import gc

    registry = WorkflowRegistry()
    lookup = event_types_of(registry)
    old = pinging_class()(workflow_name="pinging")
    registry.remember(old)
    ping_name = next(name for name in lookup("pinging") if name.endswith(".Ping"))
    redefined = pinging_class()
    address = id(old)
    del old
    gc.collect()

    new = made_at(address, redefined)
    registry.remember(new)

    assert lookup("pinging")[ping_name] is new._plan().event_types[ping_name]


def test_a_replaced_workflow_has_the_event_types_of_its_replacement() -> None:
    registry = WorkflowRegistry()
    lookup = event_types_of(registry)
    registry.register(pinging_class()(workflow_name="pinging"))
    lookup("pinging")

    replacement = pinging_class()(workflow_name="pinging")
    registry.register(replacement)

    ping_name = next(name for name in lookup("pinging") if name.endswith(".Ping"))
    assert lookup("pinging")[ping_name] is replacement._plan().event_types[ping_name]
