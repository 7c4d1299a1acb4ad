"""Behaviour of stalkflow.resource: factories, configs, the manager, engine helpers."""

import __future__

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from stalkflow.resource import (
    Resource,
    ResourceConfig,
    ResourceDefinition,
    ResourceDescriptor,
    ResourceManager,
    check_resource_configs,
    find_resource_params,
    resolve_resources,
)


class Settings(BaseModel):
    url: str
    retries: int = 0


class Client:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url


def get_client() -> Client:
    return Client()


def write_json(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data))
    return str(path)


# --- factory resources --------------------------------------------------------


async def test_sync_factory_is_called_and_named_by_qualname() -> None:
    resource = Resource(get_client)

    value = await ResourceManager().get(resource)

    assert isinstance(value, Client)
    assert resource.name == get_client.__qualname__
    assert resource.cache is True
    assert isinstance(resource, ResourceDescriptor)


async def test_async_factory_is_awaited() -> None:
    async def make() -> str:
        await asyncio.sleep(0)
        return "ready"

    assert await ResourceManager().get(Resource(make)) == "ready"


async def test_factory_returning_a_coroutine_is_awaited() -> None:
    async def make() -> int:
        return 7

    assert await ResourceManager().get(Resource(lambda: make())) == 7


async def test_cached_resource_is_built_once_per_manager() -> None:
    calls: list[Client] = []

    def make() -> Client:
        calls.append(Client())
        return calls[-1]

    resource = Resource(make)
    manager = ResourceManager()

    first = await manager.get(resource)
    second = await manager.get(resource)
    other = await ResourceManager().get(resource)

    assert first is second
    assert other is not first
    assert len(calls) == 2
    assert manager.get_all() == {make.__qualname__: first}


async def test_non_cached_resource_is_built_on_every_get() -> None:
    count = 0

    def make() -> int:
        nonlocal count
        count += 1
        return count

    resource = Resource(make, cache=False)
    manager = ResourceManager()

    assert [await manager.get(resource), await manager.get(resource)] == [1, 2]
    assert manager.get_all() == {}


async def test_failed_build_is_not_cached() -> None:
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("not yet")
        return "ok"

    resource = Resource(flaky)
    manager = ResourceManager()
    with pytest.raises(RuntimeError, match="not yet"):
        await manager.get(resource)

    assert await manager.get(resource) == "ok"


async def test_preset_value_replaces_the_factory() -> None:
    def make() -> str:
        raise AssertionError("the factory must not run")

    manager = ResourceManager()
    await manager.set(make.__qualname__, "stub")

    assert await manager.get(Resource(make)) == "stub"
    assert manager.get_all() == {make.__qualname__: "stub"}


# --- dependencies between resources ------------------------------------------


async def test_factory_dependencies_are_injected_recursively() -> None:
    built: list[str] = []

    async def get_url() -> str:
        built.append("url")
        return "redis://db"

    def get_db(url: Annotated[str, Resource(get_url)]) -> Client:
        built.append("db")
        return Client(url)

    def get_repo(db: Annotated[Client, Resource(get_db)], label: str = "repo") -> dict[str, Any]:
        built.append("repo")
        return {"db": db, "label": label}

    manager = ResourceManager()
    repo = await manager.get(Resource(get_repo))
    again = await manager.get(Resource(get_repo))
    db = await manager.get(Resource(get_db))

    assert repo["db"].url == "redis://db"
    assert repo["label"] == "repo"
    assert again is repo
    assert db is repo["db"]
    assert built == ["url", "db", "repo"]


async def test_non_cached_dependency_is_built_once_per_resolution() -> None:
    count = 0

    def get_session() -> int:
        nonlocal count
        count += 1
        return count

    def get_reader(s: Annotated[int, Resource(get_session, cache=False)]) -> int:
        return s

    def get_writer(s: Annotated[int, Resource(get_session, cache=False)]) -> int:
        return s

    definitions = [
        ResourceDefinition(name="reader", resource=Resource(get_reader, cache=False)),
        ResourceDefinition(name="writer", resource=Resource(get_writer, cache=False)),
    ]
    manager = ResourceManager()

    first = await resolve_resources(manager, definitions)
    second = await resolve_resources(manager, definitions)

    assert first == {"reader": 1, "writer": 1}
    assert second == {"reader": 2, "writer": 2}


async def test_cycle_is_reported_with_its_chain_before_any_factory_runs() -> None:
    called: list[str] = []

    def get_a(b: Annotated[str, "placeholder"]) -> str:
        called.append("a")
        return "a"

    def get_b(a: Annotated[str, "placeholder"]) -> str:
        called.append("b")
        return "b"

    res_a, res_b = Resource(get_a), Resource(get_b)
    get_a.__annotations__["b"] = Annotated[str, res_b]
    get_b.__annotations__["a"] = Annotated[str, res_a]
    expected = (
        "Circular resource dependency detected: "
        f"{get_a.__qualname__} -> {get_b.__qualname__} -> {get_a.__qualname__}"
    )

    with pytest.raises(ValueError, match=re.escape(expected)):
        await ResourceManager().get(res_a)
    assert called == []


async def test_cycle_behind_a_healthy_dependency_runs_no_factory() -> None:
    called: list[str] = []

    def get_ok() -> str:
        called.append("ok")
        return "ok"

    def get_loop(again: Annotated[str, "placeholder"]) -> str:
        called.append("loop")
        return "loop"

    loop = Resource(get_loop)
    get_loop.__annotations__["again"] = Annotated[str, loop]

    def get_root(
        ok: Annotated[str, Resource(get_ok)], bad: Annotated[str, loop]
    ) -> str:  # pragma: no cover - never called
        return ok + bad

    with pytest.raises(ValueError, match="Circular resource dependency detected"):
        await ResourceManager().get(Resource(get_root))
    assert called == []


async def test_concurrent_gets_build_a_cached_resource_once() -> None:
    builds = 0
    release = asyncio.Event()

    async def get_index() -> object:
        nonlocal builds
        builds += 1
        await release.wait()
        return object()

    manager = ResourceManager()
    resource = Resource(get_index)
    tasks = [asyncio.create_task(manager.get(resource)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()
    values = await asyncio.gather(*tasks)

    assert builds == 1
    assert values[0] is values[1] is values[2]


async def test_concurrent_resolutions_keep_separate_non_cached_values() -> None:
    async def get_scratch() -> list[int]:
        await asyncio.sleep(0.01)
        return []

    resource = Resource(get_scratch, cache=False)
    manager = ResourceManager()

    first, second = await asyncio.gather(manager.get(resource), manager.get(resource))

    assert first is not second


# --- config resources ---------------------------------------------------------


async def test_config_resource_validates_the_file_and_is_cached(tmp_path: Path) -> None:
    path = write_json(tmp_path / "app.json", {"url": "redis://x", "retries": 3})
    config = ResourceConfig(path, label="App", description="app settings")
    config.set_type_annotation(Settings)
    manager = ResourceManager()

    value = await manager.get(config)

    assert value == Settings(url="redis://x", retries=3)
    assert await manager.get(config) is value
    assert config.name == path
    assert config.config_file == str((tmp_path / "app.json").resolve())
    assert (config.label, config.description, config.cache) == ("App", "app settings", True)


async def test_config_path_selector_picks_a_nested_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "app.json", {"services": {"cache": {"url": "redis://c"}}})
    config = ResourceConfig(path, path_selector="services.cache")
    config.set_type_annotation(Settings)

    assert await ResourceManager().get(config) == Settings(url="redis://c")
    assert config.name == f"{path}.services.cache"


@pytest.mark.parametrize(
    ("selector", "failing_path"),
    [
        ("services.cache.url", "services.cache.url"),
        ("services.missing", "services.missing"),
        ("services.missing.deeper", "services.missing"),
    ],
)
async def test_config_selector_must_name_objects_at_every_level(
    tmp_path: Path, selector: str, failing_path: str
) -> None:
    path = write_json(tmp_path / "app.json", {"services": {"cache": {"url": "redis://c"}}})
    config = ResourceConfig(path, path_selector=selector)
    config.set_type_annotation(Settings)

    pattern = (
        r"Expected dictionary for configuration from .+app\.json at path "
        + re.escape(failing_path)
        + r", got: "
    )
    with pytest.raises(ValueError, match=pattern):
        await ResourceManager().get(config)


async def test_config_file_existence_is_checked_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = ResourceConfig("late.json")
    config.set_type_annotation(Settings)

    with pytest.raises(FileNotFoundError, match=re.escape("No such file: late.json")):
        await ResourceManager().get(config)

    write_json(tmp_path / "late.json", {"url": "redis://late"})
    assert await ResourceManager().get(config) == Settings(url="redis://late")


def test_config_file_must_be_json() -> None:
    with pytest.raises(ValueError, match="Only JSON files"):
        ResourceConfig("settings.yaml")


async def test_config_without_model_or_with_a_non_model_type_fails(tmp_path: Path) -> None:
    path = write_json(tmp_path / "app.json", {"url": "x"})
    with pytest.raises(ValueError, match="Class factory should be set"):
        ResourceConfig(path).call()

    config = ResourceConfig(path)
    config.set_type_annotation(dict)
    with pytest.raises(TypeError, match="BaseModel subclass"):
        config.call()


async def test_config_edited_on_disk_is_read_again_by_a_new_manager(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    write_json(path, {"url": "one"})
    config = ResourceConfig(str(path))
    config.set_type_annotation(Settings)
    assert (await ResourceManager().get(config)).url == "one"

    write_json(path, {"url": "second"})

    assert (await ResourceManager().get(config)).url == "second"


async def test_factory_can_depend_on_a_config(tmp_path: Path) -> None:
    path = write_json(tmp_path / "app.json", {"url": "redis://cfg"})

    def get_configured(settings: Annotated[Settings, ResourceConfig(path)]) -> Client:
        return Client(settings.url)

    client = await ResourceManager().get(Resource(get_configured))

    assert client.url == "redis://cfg"


# --- find_resource_params -----------------------------------------------------

POSTPONED_SOURCE = """
from typing import Annotated
from stalkflow.resource import Resource, ResourceConfig

class Settings(BaseModel):
    url: str

def get_client():
    return "client"

async def step(self, ev: MissingEventType, client: Annotated[str, Resource(get_client)],
               settings: Annotated[Settings, ResourceConfig(CONFIG)],
               note: Annotated[int, "not a resource"], plain: int = 0):
    return client, settings
"""


def load_postponed(config_path: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"BaseModel": BaseModel, "CONFIG": config_path}
    code = compile(
        POSTPONED_SOURCE, "postponed_module", "exec", flags=__future__.annotations.compiler_flag
    )
    exec(code, namespace)
    return namespace


async def test_find_resource_params_resolves_postponed_annotations(tmp_path: Path) -> None:
    config_path = write_json(tmp_path / "app.json", {"url": "redis://p"})
    module = load_postponed(config_path)
    assert isinstance(module["step"].__annotations__["client"], str)

    definitions = find_resource_params(module["step"])

    assert [(d.name, d.type_annotation) for d in definitions] == [
        ("client", str),
        ("settings", module["Settings"]),
    ]
    values = await resolve_resources(ResourceManager(), definitions)
    assert values["client"] == "client"
    assert values["settings"] == module["Settings"](url="redis://p")


async def test_find_resource_params_uses_localns_for_local_names() -> None:
    def make_step() -> Any:
        class Local:
            pass

        def get_local() -> Local:
            return Local()

        def step(ev: object, dep: "Annotated[Local, Resource(get_local)]") -> None:
            return None

        return step, locals()

    step, scope = make_step()

    assert find_resource_params(step) == []
    [definition] = find_resource_params(step, localns=scope)
    assert definition.name == "dep"
    assert definition.type_annotation is scope["Local"]
    assert isinstance(await ResourceManager().get(definition.resource), scope["Local"])


def test_find_resource_params_ignores_functions_without_resources() -> None:
    def step(self: object, ev: int, *args: Any, **kwargs: Any) -> None:
        return None

    assert find_resource_params(step) == []


# --- check_resource_configs ---------------------------------------------------


def test_check_resource_configs_reports_each_broken_config_with_its_location(
    tmp_path: Path,
) -> None:
    good = write_json(tmp_path / "good.json", {"url": "ok"})
    bad = write_json(tmp_path / "bad.json", {"retries": 1})
    missing = ResourceConfig(str(tmp_path / "missing.json"))

    def fine(ev: object, cfg: Annotated[Settings, ResourceConfig(good)]) -> None:
        return None

    def direct(ev: object, cfg: Annotated[Settings, ResourceConfig(bad)]) -> None:
        return None

    def absent(ev: object, cfg: Annotated[Settings, missing]) -> None:
        return None

    steps = {
        "fine": find_resource_params(fine),
        "direct": find_resource_params(direct),
        "absent": find_resource_params(absent),
    }
    errors = check_resource_configs(steps)

    assert len(errors) == 2
    assert errors[0].startswith(
        "In step 'direct', parameter 'cfg': 1 validation error for Settings"
    )
    assert "url" in errors[0]
    assert errors[1] == f"In step 'absent', parameter 'cfg': No such file: {missing.name}"
    assert check_resource_configs({"fine": steps["fine"]}) == []


def test_check_resource_configs_names_the_chain_for_nested_configs(tmp_path: Path) -> None:
    bad = write_json(tmp_path / "bad.json", {"retries": 1})
    calls: list[str] = []

    def get_service(settings: Annotated[Settings, ResourceConfig(bad)]) -> str:
        calls.append("service")
        return "service"

    def nested(ev: object, svc: Annotated[str, Resource(get_service)]) -> None:
        return None

    [error] = check_resource_configs({"s": find_resource_params(nested)})

    assert error.startswith(f"In step 's', parameter 'svc' ({get_service.__qualname__} -> {bad}): ")
    assert "validation error" in error
    assert calls == []
