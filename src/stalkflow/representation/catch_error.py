"""The rules of ``@catch_error`` handlers, as pure functions over step configs.

Which handlers a workflow may have (one wildcard at most, each step claimed by
one handler at most, never a handler or an unknown step) and which handler
receives a step's failures.
"""

from __future__ import annotations

from collections.abc import Mapping

from stalkflow.decorators import StepConfig
from stalkflow.errors import WorkflowValidationError

__all__ = ["catch_error_handler_for", "catch_error_handlers", "check_catch_error"]


def catch_error_handlers(steps: Mapping[str, StepConfig]) -> dict[str, StepConfig]:
    """The ``@catch_error`` handlers among ``steps``."""
    return {name: cfg for name, cfg in steps.items() if cfg.role == "catch_error"}


def check_catch_error(steps: Mapping[str, StepConfig]) -> None:
    """Raise ``WorkflowValidationError`` for a bad ``max_recoveries``, then for a bad handler set.

    The handler set's failures (two wildcards, an unknown or doubly claimed
    step, a handler covering a handler) are reported together.
    """
    found = catch_error_handlers(steps)
    for name, cfg in found.items():
        budget = cfg.catch_error_max_recoveries
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise WorkflowValidationError(
                f"@catch_error handler '{name}' has max_recoveries={budget!r}; "
                "must be an integer >= 1."
            )

    errors: list[str] = []
    wildcards = sorted(n for n, c in found.items() if c.catch_error_for_steps is None)
    if len(wildcards) > 1:
        errors.append(
            "Only one wildcard @catch_error handler is allowed per workflow, "
            f"found {len(wildcards)}: {', '.join(wildcards)}"
        )
    owner: dict[str, str] = {}
    for name, cfg in found.items():
        for target in cfg.catch_error_for_steps or []:
            if target not in steps:
                errors.append(
                    f"@catch_error handler '{name}' lists unknown step '{target}' in for_steps."
                )
            elif target in found:
                errors.append(
                    f"@catch_error handler '{name}' cannot cover another handler step '{target}'."
                )
            elif target in owner:
                errors.append(
                    f"Step '{target}' is claimed by two @catch_error handlers: "
                    f"'{owner[target]}' and '{name}'."
                )
            else:
                owner[target] = name
    if errors:
        raise WorkflowValidationError("\n".join(errors))


def catch_error_handler_for(step_name: str, steps: Mapping[str, StepConfig]) -> str | None:
    """Name the ``@catch_error`` handler that receives ``step_name``'s failures.

    A handler listing the step in ``for_steps`` wins over the wildcard handler
    (``for_steps=None``). A handler's own failures are never handled, and an
    unknown step has no handler: both give None.
    """
    cfg = steps.get(step_name)
    if cfg is None or cfg.role == "catch_error":
        return None
    found = catch_error_handlers(steps)
    for name, handler in found.items():
        if handler.catch_error_for_steps is not None and step_name in handler.catch_error_for_steps:
            return name
    for name, handler in found.items():
        if handler.catch_error_for_steps is None:
            return name
    return None
