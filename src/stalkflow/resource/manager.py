"""Resolving resources: the per-workflow :class:`ResourceManager`.

The manager builds a resource and its dependencies, caches the values of
cached resources, and rejects dependency cycles before any factory runs. The
state of one resolution belongs to the asyncio task doing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from stalkflow.resource.descriptors import ResourceDefinition, ResourceDescriptor


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
