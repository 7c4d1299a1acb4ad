"""Step inspection helpers under llama-index-workflows' module path (``workflows.utils``).

Code written against upstream imports these from ``workflows.utils``; here they
are the functions ``@step`` and ``Workflow`` themselves use, gathered from
where they live:

- :mod:`stalkflow.step_signature`: ``StepSignatureSpec``, ``inspect_signature``,
  ``validate_step_signature``, ``is_free_function``;
- :mod:`stalkflow.decorators`: ``get_steps_from_class``, ``get_steps_from_instance``;
- :mod:`stalkflow.core.ids`: ``_nanoid``, the random id of a run.

Example::

    >>> from stalkflow.utils import inspect_signature, validate_step_signature
    >>> validate_step_signature(inspect_signature(my_step))
"""

from __future__ import annotations

from stalkflow.core.ids import new_run_id
from stalkflow.decorators import get_steps_from_class, get_steps_from_instance
from stalkflow.step_signature import (
    StepSignatureSpec,
    _get_param_types,
    _get_return_types,
    inspect_signature,
    is_free_function,
    validate_step_signature,
)

__all__ = [
    "StepSignatureSpec",
    "_get_param_types",
    "_get_return_types",
    "_nanoid",
    "get_steps_from_class",
    "get_steps_from_instance",
    "inspect_signature",
    "is_free_function",
    "validate_step_signature",
]


def _nanoid(size: int = 10) -> str:
    """A random id of ``size`` characters from ``[A-Za-z0-9]``, like ``kY2xP9hTnQ``.

    ``size`` of zero or less gives ``""``.
    """
    return new_run_id(size)
