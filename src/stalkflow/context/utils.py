"""Qualified names of values, for user code ported from ``workflows.context.utils``.

``get_qualified_name(value)`` names the class of an instance as
``"module.ClassName"``; ``import_module_from_qualified_name(name)`` imports
``module`` and returns its attribute ``ClassName``.

These are helpers for code that chooses the names itself (configuration files,
its own registries). stalkflow never calls them on data: importing whatever
module a message names would let a message run code. When stalkflow reads a
class name from stored or received data it uses
:func:`stalkflow.context.serializers.resolve_qualified_name`, which a
serializer can restrict to known types (``allowed_types``) or to modules
already imported (``import_modules=False``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["get_qualified_name", "import_module_from_qualified_name"]


def get_qualified_name(value: Any) -> str:
    """``"module.ClassName"`` of the class of the instance ``value``.

    As upstream, the module is ``value.__module__`` and the name is the class's
    ``__name__`` (not its ``__qualname__``), so a nested class is named as if it
    were at module level.

    Raises:
        AttributeError: ``value`` has no ``__module__`` (a ``str``, an ``int`` ...).
    """
    try:
        return f"{value.__module__}.{value.__class__.__name__}"
    except AttributeError as exc:
        raise AttributeError(f"Object {value} does not have required attributes: {exc}") from exc


def import_module_from_qualified_name(qualified_name: str) -> Any:
    """Import ``module`` of ``"module.attribute"`` and return its ``attribute``.

    The name is cut at its last dot: ``"pkg.mod.Cls"`` is ``Cls`` of ``pkg.mod``.

    Raises:
        ValueError: ``qualified_name`` is empty or has no dot.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    if not qualified_name or "." not in qualified_name:
        raise ValueError("Qualified name must be in format 'module.attribute'")
    module_name, attribute = qualified_name.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"Failed to import module {module_name}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise AttributeError(
            f"Attribute {attribute} not found in module {module_name}: {exc}"
        ) from exc
