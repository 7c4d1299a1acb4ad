"""What the executor decides beyond the store's rules, and how it names deliveries in logs."""

from __future__ import annotations

import dataclasses
import logging

from stalkflow.core.deliveries import Delivery

#: Every module of the executor logs here (``stalkflow.execution``).
logger = logging.getLogger("stalkflow.execution")


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    """What the executor decides beyond the store's rules.

    ``countdown_max_s``: a retry delayed longer than this, and a
    ``wait_for_event`` timeout longer than this, are kept in the store until due
    and handled by a sweep; shorter ones go to the transport with their delay
    (a broker countdown). ``None`` sends every delay to the transport (the
    embedded engine, whose timers cannot be lost). ``step_timeout_s``: the time
    limit of step bodies that set none with ``@step(soft_time_limit=...)``.
    ``sweep_limit``: the most deliveries one sweep hands out.
    """

    countdown_max_s: float | None = None
    step_timeout_s: float | None = None
    sweep_limit: int = 200

    def kept_in_store(self, delay_s: float | None) -> bool:
        """Whether a timer of ``delay_s`` waits in the store rather than in the transport."""
        limit = self.countdown_max_s
        return limit is not None and delay_s is not None and delay_s > limit


def describe(delivery: Delivery) -> str:
    """What logs may show of a delivery: ids, step, event type, attempt; never a payload."""
    return (
        f"run_id={delivery.run_id} step={delivery.step} "
        f"event={type(delivery.event).__name__} attempt={delivery.attempt} "
        f"delivery={delivery.delivery_id}"
    )


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's first line, bounded: validation errors list input values further down."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
