"""Resource declarations: the descriptor protocol and factory resources.

A descriptor is what sits in ``Annotated[T, ...]`` to say "inject a resource
here". :func:`Resource` declares one built by a factory;
:func:`find_resource_params` lists the parameters of a step that carry one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Generic,
    Protocol,
    TypeVar,
    cast,
    get_args,
    get_origin,
    overload,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict

from stalkflow.resource._annotations import _closure_names, _globals_of, _parameter_annotations

if TYPE_CHECKING:
    from stalkflow.resource.manager import ResourceManager

T = TypeVar("T")

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


def _descriptor_in(annotation: Any) -> tuple[Any, ResourceDescriptor] | None:
    """Return ``(T, descriptor)`` if ``annotation`` is ``Annotated[T, ..., descriptor, ...]``."""
    if get_origin(annotation) is not Annotated:
        return None
    base, *metadata = get_args(annotation)
    for item in metadata:
        if isinstance(item, ResourceDescriptor):
            return base, item
    return None


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
