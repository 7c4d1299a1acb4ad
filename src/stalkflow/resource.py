"""Resources: objects that steps receive from a factory or from a JSON config file.

A step, or a resource factory, asks for a resource through ``typing.Annotated``;
the engine builds the value and passes it as the keyword argument::

    def get_llm() -> LLM:
        return LLM(model="small")

    class Config(BaseModel):
        threshold: float

    class MyWorkflow(Workflow):
        @step
        async def answer(
            self,
            ev: StartEvent,
            llm: Annotated[LLM, Resource(get_llm)],
            config: Annotated[Config, ResourceConfig("settings.json", path_selector="qa")],
        ) -> StopEvent: ...

Values live in a :class:`ResourceManager`, one per workflow instance. A cached
resource (the default) is built once and then shared by every step and every run
of that instance; ``cache=False`` builds a new value for each step execution,
but only once while resolving that step's parameters, even if several of them
depend on it.

Where stalkflow differs from llama-index-workflows (behaviour visible to users):

- The state of one resolution (the dependency path and the non-cached values)
  belongs to the asyncio task doing it. Upstream keeps it on the manager, so two
  steps that resolve the same async resource at the same time fail with a false
  "Circular resource dependency" error and share their non-cached values.
- A cached resource is built once even when several steps ask for it at the same
  time: the later ones wait for the first build instead of building their own.
- A dependency cycle is reported before any factory runs.
- A config file that changes on disk is read again by the next manager that
  loads it (upstream keeps the first parse for the life of the process).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import (
    Annotated,
    Any,
    Generic,
    Protocol,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    overload,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
    "check_resource_configs",
    "find_resource_params",
    "resolve_resources",
]

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)

#: (parameter name, descriptor, annotated type) for one dependency of a factory.
_Dependency = tuple[str, "ResourceDescriptor", Any]


@runtime_checkable
class ResourceDescriptor(Protocol):
    """What :class:`ResourceManager` needs from a resource declaration.

    ``Resource(...)`` and ``ResourceConfig(...)`` both return one; any object
    with these members placed in ``Annotated[...]`` is treated as a resource.
    """

    @property
    def name(self) -> str:
        """The key under which the value is cached; also used in cycle reports."""
        ...

    @property
    def cache(self) -> bool:
        """Whether the value is kept in the manager after it is built."""
        ...

    async def resolve(self, manager: ResourceManager) -> Any:
        """Build the value, resolving dependencies through ``manager``."""
        ...

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Receive ``T`` from the ``Annotated[T, ...]`` the descriptor sits in."""
        ...

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Receive the namespace of the scope that declared the descriptor."""
        ...

    def get_dependencies(self) -> list[_Dependency]:
        """The resources this one needs before it can be built."""
        ...


# --- reading annotations ------------------------------------------------------


def _descriptor_in(annotation: Any) -> tuple[Any, ResourceDescriptor] | None:
    """Return ``(T, descriptor)`` if ``annotation`` is ``Annotated[T, ..., descriptor, ...]``."""
    if get_origin(annotation) is not Annotated:
        return None
    base, *metadata = get_args(annotation)
    for item in metadata:
        if isinstance(item, ResourceDescriptor):
            return base, item
    return None


def _globals_of(func: Callable[..., Any]) -> dict[str, Any]:
    target: Any = inspect.unwrap(func)
    if inspect.isclass(target):
        target = target.__init__
    elif not hasattr(target, "__globals__"):
        target = type(target).__call__  # a callable instance: its class defines __call__
    return dict(getattr(target, "__globals__", {}))


def _closure_names(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return dict(inspect.getclosurevars(inspect.unwrap(func)).nonlocals)
    except (TypeError, ValueError):
        return {}


def _evaluate(annotation: str, globalns: dict[str, Any], localns: Mapping[str, Any]) -> Any:
    # This is what typing.get_type_hints does for one string annotation.
    try:
        return eval(annotation, globalns, dict(localns))
    except Exception:
        return annotation


def _parameter_annotations(func: Callable[..., Any], localns: Mapping[str, Any]) -> dict[str, Any]:
    """Map each parameter of ``func`` to its annotation, with strings evaluated.

    ``get_type_hints`` is tried first; if any annotation cannot be resolved it
    fails as a whole, so each string is then evaluated on its own and the ones
    that still fail are left as strings (and so are not resources).
    """
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    # A class's parameters are its __init__'s; class-body annotations (dataclass
    # fields) fill in the rest, and __init__'s win.
    sources: list[Any] = [func.__init__, func] if inspect.isclass(func) else [func]
    hints: dict[str, Any] = {}
    for source in reversed(sources):
        try:
            hints.update(get_type_hints(source, include_extras=True, localns=dict(localns)))
        except Exception:
            continue
    globalns = _globals_of(func)
    annotations: dict[str, Any] = {}
    for name, parameter in parameters.items():
        annotation = hints.get(name, parameter.annotation)
        if isinstance(annotation, str):
            annotation = _evaluate(annotation, globalns, localns)
        annotations[name] = annotation
    return annotations


# --- factory resources --------------------------------------------------------


class _Resource(Generic[T]):
    """A resource built by calling a factory; created by :func:`Resource`."""

    def __init__(self, factory: Callable[..., T | Awaitable[T]], cache: bool) -> None:
        self._factory = factory
        self._is_async = inspect.iscoroutinefunction(factory)
        self.name: str = getattr(factory, "__qualname__", type(factory).__name__)
        self.cache = cache
        self._localns: dict[str, Any] | None = None

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Ignored: the factory decides the type of its value."""

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Remember the declaring scope, to resolve the factory's own annotations."""
        self._localns = localns

    def get_dependencies(self) -> list[_Dependency]:
        """The factory's parameters annotated with a resource, in signature order.

        Each returned descriptor has been given its annotated type and this
        resource's declaring scope, so it can be resolved or inspected directly.
        """
        globalns = _globals_of(self._factory)
        # The step's scope must not shadow names of the module defining the factory.
        outer = {k: v for k, v in (self._localns or {}).items() if k not in globalns}
        namespace = {**outer, **_closure_names(self._factory)}
        dependencies: list[_Dependency] = []
        for name, annotation in _parameter_annotations(self._factory, namespace).items():
            found = _descriptor_in(annotation)
            if found is None:
                continue
            type_annotation, descriptor = found
            descriptor.set_type_annotation(type_annotation)
            descriptor.set_localns(self._localns)
            dependencies.append((name, descriptor, type_annotation))
        return dependencies

    async def call(self, manager: ResourceManager) -> T:
        """Resolve the factory's dependencies through ``manager``, then call it."""
        kwargs = {name: await manager.get(dep) for name, dep, _ in self.get_dependencies()}
        result = self._factory(**kwargs)
        # A coroutine is never a useful value to inject: it can be awaited only once.
        if self._is_async or inspect.iscoroutine(result):
            return await cast(Awaitable[T], result)
        return cast(T, result)

    async def resolve(self, manager: ResourceManager) -> T:
        """Build the value (see :meth:`call`)."""
        return await self.call(manager)

    def __repr__(self) -> str:
        return f"Resource({self.name}, cache={self.cache})"


@overload
def Resource(factory: Callable[..., Awaitable[T]], cache: bool = True) -> _Resource[T]: ...


@overload
def Resource(factory: Callable[..., T], cache: bool = True) -> _Resource[T]: ...


def Resource(factory: Callable[..., Any], cache: bool = True) -> _Resource[Any]:
    """Declare a resource built by ``factory``, for use in ``Annotated[T, Resource(factory)]``.

    Args:
        factory: A sync or async callable returning the value. Its own parameters
            may be annotated with ``Resource(...)`` or ``ResourceConfig(...)``;
            those are resolved first and passed by name.
        cache: If True (the default) the value is built once per
            :class:`ResourceManager` (per workflow instance) and shared by every
            step and run. If False a new value is built for each step execution,
            once per resolution even when several parameters depend on it.

    The cache key is the factory's ``__qualname__``. A dependency cycle raises
    ``ValueError("Circular resource dependency detected: a -> b -> a")``.

    Example::

        async def get_db() -> Database:
            return await Database.connect(URL)

        def get_repo(db: Annotated[Database, Resource(get_db)]) -> Repository:
            return Repository(db)

        @step
        async def save(self, ev: SaveEvent,
                       repo: Annotated[Repository, Resource(get_repo)]) -> StopEvent: ...
    """
    return _Resource(factory, cache)


# --- config resources ---------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _parse_json(path: str, mtime_ns: int, size: int) -> Any:
    # The file's stat is part of the key so that an edited file is read again.
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _get_resource_config_data(config_file: str, path_selector: str | None) -> Any:
    """Load ``config_file`` and return the object at the dotted ``path_selector``.

    Every level named by the selector must be a JSON object, else ValueError.
    The result is a copy: callers may modify it.
    """
    path = Path(config_file).resolve()
    stat = path.stat()
    node = _parse_json(str(path), stat.st_mtime_ns, stat.st_size)
    if path_selector is not None:
        walked: list[str] = []
        for key in path_selector.split("."):
            walked.append(key)
            child = node.get(key) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                raise ValueError(
                    f"Expected dictionary for configuration from {path} "
                    f"at path {'.'.join(walked)}, got: {type(child)}"
                )
            node = child
    return copy.deepcopy(node)


class _ResourceConfig(Generic[B]):
    """A pydantic model read from a JSON file; created by :func:`ResourceConfig`."""

    def __init__(
        self,
        config_file: str,
        path_selector: str | None = None,
        cls_factory: type[B] | None = None,
        label: str | None = None,
        description: str | None = None,
    ) -> None:
        if Path(config_file).suffix.lower() != ".json":
            raise ValueError("Only JSON files can be used to load Pydantic-based resources.")
        self._declared_file = config_file
        self._resolved_file: str | None = None
        self.path_selector = path_selector
        self.cls_factory = cls_factory
        self.label = label
        self.description = description

    @property
    def config_file(self) -> str:
        """The absolute path of the file; FileNotFoundError while it does not exist.

        The check happens on first use, so a workflow can be declared before
        its config file is written.
        """
        if self._resolved_file is None:
            path = Path(self._declared_file)
            if not path.is_file():
                raise FileNotFoundError(f"No such file: {self._declared_file}")
            self._resolved_file = str(path.resolve())
        return self._resolved_file

    @property
    def name(self) -> str:
        """The file as declared, followed by ``.<path_selector>`` if there is one."""
        if self.path_selector is None:
            return self._declared_file
        return f"{self._declared_file}.{self.path_selector}"

    @property
    def cache(self) -> bool:
        """Always True: a config is read once per manager."""
        return True

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Use ``T`` of ``Annotated[T, ResourceConfig(...)]`` as the model, unless one is set."""
        if self.cls_factory is None:
            self.cls_factory = type_annotation

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Ignored: a config has no annotations of its own."""

    def get_dependencies(self) -> list[_Dependency]:
        """Always empty."""
        return []

    def call(self) -> B:
        """Read the file and validate the selected object with the model.

        Raises FileNotFoundError, ValueError (bad selector, or no model set yet),
        TypeError (the annotated type is not a pydantic model) or pydantic's
        ValidationError.
        """
        data = _get_resource_config_data(self.config_file, self.path_selector)
        model: Any = self.cls_factory
        if model is None:
            raise ValueError("Class factory should be set to a BaseModel subclass before calling")
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise TypeError(
                f"ResourceConfig({self._declared_file!r}) must annotate a pydantic "
                f"BaseModel subclass, got {model!r}"
            )
        return cast(B, model.model_validate(data))

    async def resolve(self, manager: ResourceManager) -> B:
        """Build the value (see :meth:`call`)."""
        return self.call()

    def __repr__(self) -> str:
        return f"ResourceConfig({self.name})"


def ResourceConfig(
    config_file: str,
    path_selector: str | None = None,
    label: str | None = None,
    description: str | None = None,
) -> _ResourceConfig[Any]:
    """Declare a resource read from a JSON file: ``Annotated[Model, ResourceConfig(...)]``.

    The value is ``Model.model_validate(data)``, built once per manager.

    Args:
        config_file: Path of the file; it must end in ``.json`` (ValueError
            otherwise). Whether it exists is checked only when it is read
            (FileNotFoundError).
        path_selector: Dotted path of the object to use, e.g. ``"models.chat"``;
            each level must be a JSON object (ValueError otherwise).
        label: A short name for graph representations.
        description: A longer explanation for graph representations.

    Example::

        class RetrievalConfig(BaseModel):
            top_k: int

        @step
        async def retrieve(
            self,
            ev: QueryEvent,
            config: Annotated[RetrievalConfig, ResourceConfig("app.json", "retrieval")],
        ) -> StopEvent: ...
    """
    return _ResourceConfig(
        config_file=config_file,
        path_selector=path_selector,
        label=label,
        description=description,
    )


class ResourceDefinition(BaseModel):
    """A parameter of a step that receives a resource.

    Attributes:
        name: The parameter's name.
        resource: The descriptor from its annotation.
        type_annotation: ``T`` of its ``Annotated[T, descriptor]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    resource: ResourceDescriptor
    type_annotation: Any = None


# --- resolution ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Resolution:
    """One resolution of a dependency graph, as seen from the current task."""

    manager: ResourceManager
    values: dict[str, Any] = field(default_factory=dict)  # shared by the whole graph
    path: tuple[str, ...] = ()  # the chain being built at this point, for cycles

    def entering(self, name: str) -> _Resolution:
        return replace(self, path=(*self.path, name))


# Task-local, so that concurrent steps never see each other's resolution.
_current: ContextVar[_Resolution | None] = ContextVar("stalkflow_resolution", default=None)


def _cycle_error(chain: Sequence[str]) -> ValueError:
    return ValueError(f"Circular resource dependency detected: {' -> '.join(chain)}")


def _raise_on_cycle(root: ResourceDescriptor, built: Mapping[str, Any]) -> None:
    """Walk the declared dependencies of ``root`` and raise on the first cycle.

    Values already built are not walked, as resolution would not walk them.
    """
    finished: set[str] = set()

    def visit(descriptor: ResourceDescriptor, path: tuple[str, ...]) -> None:
        name = descriptor.name
        if name in path:
            raise _cycle_error((*path, name))
        if name in finished or (descriptor.cache and name in built):
            return
        for _, dependency, _ in descriptor.get_dependencies():
            visit(dependency, (*path, name))
        finished.add(name)

    visit(root, ())


class ResourceManager:
    """Builds resources and keeps the cached ones; one per workflow instance.

    Pass one to ``Workflow(resource_manager=...)`` to pre-set values, for
    example a test double registered under a factory's ``__qualname__``.
    """

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self._building: dict[str, asyncio.Future[None]] = {}

    @contextmanager
    def resolution_scope(self) -> Iterator[None]:
        """Make every :meth:`get` inside the block part of one dependency graph.

        A non-cached resource is then built once for the whole block.
        """
        current = _current.get()
        if current is not None and current.manager is self:
            yield
            return
        token = _current.set(_Resolution(self))
        try:
            yield
        finally:
            _current.reset(token)

    async def set(self, name: str, val: Any) -> None:
        """Store ``val`` as the cached value of the resource called ``name``."""
        self.resources[name] = val

    async def get(self, resource: ResourceDescriptor) -> Any:
        """Return the value of ``resource``, building it and its dependencies as needed."""
        with self.resolution_scope():
            resolution = _current.get()
            assert resolution is not None
            return await self._get(resolution, resource)

    def get_all(self) -> dict[str, Any]:
        """The cached values by name (the manager's own dict, not a copy)."""
        return self.resources

    async def _get(self, resolution: _Resolution, resource: ResourceDescriptor) -> Any:
        name = resource.name
        if name in resolution.path:
            raise _cycle_error((*resolution.path, name))
        if resource.cache and name in self.resources:
            return self.resources[name]
        if name in resolution.values:
            return resolution.values[name]
        if not resolution.path:
            _raise_on_cycle(resource, self.resources)
        if resource.cache:
            value = await self._build_once(resolution, resource)
        else:
            value = await self._build(resolution, resource)
        resolution.values[name] = value
        return value

    async def _build(self, resolution: _Resolution, resource: ResourceDescriptor) -> Any:
        token = _current.set(resolution.entering(resource.name))
        try:
            return await resource.resolve(self)
        finally:
            _current.reset(token)

    async def _build_once(self, resolution: _Resolution, resource: ResourceDescriptor) -> Any:
        """Build a cached resource, or wait for the task already building it.

        Waiting cannot deadlock: a cycle among the builders would be a cycle in
        the declared dependencies, which ``_raise_on_cycle`` rejected.
        """
        name = resource.name
        while (pending := self._building.get(name)) is not None:
            # asyncio.wait raises neither the builder's error nor its cancellation;
            # if the builder failed, this task tries in its turn.
            await asyncio.wait((pending,))
        if name in self.resources:
            return self.resources[name]
        done = asyncio.get_running_loop().create_future()
        self._building[name] = done
        try:
            value = await self._build(resolution, resource)
            await self.set(name, value)
            return value
        finally:
            del self._building[name]
            done.set_result(None)


# --- helpers for the engine ---------------------------------------------------


def find_resource_params(
    func: Callable[..., Any], *, localns: Mapping[str, Any] | None = None
) -> list[ResourceDefinition]:
    """Return a definition for each parameter of ``func`` annotated with a resource.

    String annotations (``from __future__ import annotations``) are resolved in
    the function's module, then in ``localns`` (the scope that defined it, for
    names local to a function). A parameter whose annotation cannot be resolved
    is skipped rather than failing the others.
    """
    namespace = {**_closure_names(func), **(localns or {})}
    definitions: list[ResourceDefinition] = []
    for name, annotation in _parameter_annotations(func, namespace).items():
        found = _descriptor_in(annotation)
        if found is None:
            continue
        type_annotation, descriptor = found
        descriptor.set_type_annotation(type_annotation)
        if localns is not None:
            descriptor.set_localns(dict(localns))
        definitions.append(
            ResourceDefinition(name=name, resource=descriptor, type_annotation=type_annotation)
        )
    return definitions


async def resolve_resources(
    manager: ResourceManager, definitions: Sequence[ResourceDefinition]
) -> dict[str, Any]:
    """Resolve ``definitions`` to ``{parameter name: value}`` as one dependency graph.

    A non-cached resource needed by several of them is built once for the call.
    """
    values: dict[str, Any] = {}
    with manager.resolution_scope():
        for definition in definitions:
            definition.resource.set_type_annotation(definition.type_annotation)
            values[definition.name] = await manager.get(definition.resource)
    return values


def check_resource_configs(
    step_params: Mapping[str, Sequence[ResourceDefinition]],
) -> list[str]:
    """Load every config resource the steps use, directly or through factories.

    Returns one line per failure, ``"In step 's', parameter 'p': <error>"``, with
    the resource chain in parentheses when the config is a factory's dependency
    (``"... parameter 'p' (get_repo -> db.json): ..."``). Factories are not called.
    Each resource is checked once, at its first use in step order.
    """
    errors: list[str] = []
    checked: set[str] = set()

    def visit(descriptor: ResourceDescriptor, step: str, param: str, chain: list[str]) -> None:
        if descriptor.name in checked:
            return
        checked.add(descriptor.name)
        if isinstance(descriptor, _ResourceConfig):
            try:
                descriptor.call()
            except Exception as exc:
                where = f"step '{step}', parameter '{param}'"
                if len(chain) > 1:
                    where += f" ({' -> '.join(chain)})"
                errors.append(f"In {where}: {exc}")
        for _, dependency, _ in descriptor.get_dependencies():
            visit(dependency, step, param, [*chain, dependency.name])

    for step, definitions in step_params.items():
        for definition in definitions:
            definition.resource.set_type_annotation(definition.type_annotation)
            visit(definition.resource, step, definition.name, [definition.resource.name])
    return errors
