"""The modules and workflows named on the command line, imported from the working directory.

Modules (``-m``, ``-w``, ``STALKFLOW_WORKFLOWS``, the ``module`` of
``module:Workflow``) are found from the working directory, as ``celery -A`` and
``python -m`` find them. Only modules the user names are imported.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.workflow import Workflow


def cwd_on_path() -> None:
    """Put the working directory on ``sys.path`` (unless it, or ``""``, is there)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_named(name: str) -> ModuleType:
    """Import the module ``name``; a module that fails to import is a usage error."""
    cwd_on_path()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise click.ClickException(f"Cannot import module {name!r}: {exc}") from None


def module_names(modules: Sequence[str]) -> list[str]:
    """The named modules, then those of STALKFLOW_WORKFLOWS, each once."""
    names = [*modules, *os.environ.get("STALKFLOW_WORKFLOWS", "").split(",")]
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def load_modules(modules: Sequence[str], engine: Engine) -> list[ModuleType]:
    """Import the modules (and STALKFLOW_WORKFLOWS') and register their workflows with
    ``engine``."""
    from stalkflow.distributed import register, workflows_in

    loaded = [import_named(name) for name in module_names(modules)]
    for module in loaded:
        register(*workflows_in(module), engine=engine)
    return loaded


def load_target(reference: str) -> Workflow | type[Workflow]:
    """``module:attr`` as a Workflow instance or class; ``module`` alone if it has one."""
    from stalkflow.distributed import workflows_in
    from stalkflow.workflow import Workflow

    module_name, _, attribute = reference.partition(":")
    if not module_name:
        raise click.BadParameter(f"{reference!r} is not MODULE:WORKFLOW", param_hint="WORKFLOW")
    module = import_named(module_name)
    if not attribute:
        found = workflows_in(module)
        if len(found) != 1:
            names = ", ".join(type(workflow).__name__ for workflow in found) or "none"
            raise click.ClickException(
                f"Module {module_name} defines {len(found)} workflows ({names}): "
                f"name one as {module_name}:<NAME>"
            )
        return found[0]
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.ClickException(
                f"Module {module_name} has no attribute {attribute!r}"
            ) from None
    if isinstance(target, Workflow) or (inspect.isclass(target) and issubclass(target, Workflow)):
        return target
    raise click.ClickException(f"{reference} is not a Workflow class or instance")


def load_workflow(reference: str) -> Workflow:
    """A Workflow instance: the named one, the module's one instance of the named class,
    or that class made with no arguments."""
    target = load_target(reference)
    if not isinstance(target, type):
        return target
    module = sys.modules[target.__module__]
    instances = [value for value in vars(module).values() if type(value) is target]
    if len(instances) == 1:
        return instances[0]
    try:
        return target()
    except Exception as exc:
        raise click.ClickException(
            f"Cannot make a {target.__name__} with no arguments ({exc}); define an instance "
            "in its module and name that"
        ) from None
