"""The names classes travel under between processes: ``module.QualName``.

A class defined in the script being run lives in module ``__main__``, a name
that means a different module in every process. Such classes are named after
the module a worker would import them as: the script's module spec when it was
run with ``python -m pkg.mod``, otherwise its path relative to the working
directory (``python examples/flow.py`` -> ``examples.flow``), which is how
``STALKFLOW_WORKFLOWS=examples.flow`` names it for the workers.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any


@functools.lru_cache(maxsize=1)
def main_module_name() -> str:
    """The importable name of the ``__main__`` module, or ``"__main__"`` if there is none."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    path: str | None = getattr(main, "__file__", None)
    if not path:
        return "__main__"
    relative = os.path.relpath(os.path.abspath(path), os.getcwd())
    if relative.startswith(os.pardir) or not relative.endswith(".py"):
        return os.path.splitext(os.path.basename(path))[0]
    return relative[: -len(".py")].replace(os.sep, ".")


def module_of(cls: type[Any]) -> str:
    module = cls.__module__
    return main_module_name() if module == "__main__" else module


def qualified_name(cls: type[Any]) -> str:
    """``module.QualName`` of ``cls``, with ``__main__`` replaced by its importable name."""
    return f"{module_of(cls)}.{cls.__qualname__}"
