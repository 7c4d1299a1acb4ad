"""Config resources: pydantic models read from a JSON file.

:func:`ResourceConfig` declares one; :func:`check_resource_configs` loads every
config the steps use, so a workflow can report a bad file before it runs.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel

from stalkflow.resource.descriptors import ResourceDefinition, ResourceDescriptor, _Dependency

if TYPE_CHECKING:
    from stalkflow.resource.manager import ResourceManager

B = TypeVar("B", bound=BaseModel)


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
