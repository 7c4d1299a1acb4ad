"""Settings of a distributed engine, from arguments or the environment.

Read from the environment only when an engine is first needed (an entry point),
never at import.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalkflow.engine import Engine


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the broker and the store are, and how runs are kept."""

    broker_url: str | None = None
    redis_url: str | None = None
    #: Every Redis key of the store starts with it; clients and workers must agree.
    prefix: str = "stalkflow"
    #: The Celery queue of steps that name none (``@step(queue=...)`` overrides it).
    queue: str = "stalkflow"
    visibility_timeout_s: float = 3600.0
    result_ttl_s: float = 7 * 24 * 3600.0
    lock_lease_s: float = 15.0
    lock_wait_s: float = 60.0
    #: A step being executed whose worker shows no sign of life for this long
    #: (heartbeats every third of it) is handed to another worker by the sweep.
    delivery_lease_s: float = 30.0
    #: A delivery sent but not started within this long is presumed lost and sent again.
    dispatch_grace_s: float = 300.0
    #: How many times one delivery may be started without finishing (its worker died
    #: each time) before its step fails with DeliveryLimitError; 0: no limit.
    max_deliveries: int = 5
    #: How often each worker sweeps for lost deliveries and retries now due.
    sweep_interval_s: float = 2.0
    #: Retry delays and ``wait_for_event`` timeouts up to this go to the broker as
    #: countdowns; longer ones are kept in the store until due (the sweep expires them),
    #: so a worker holds no message per waiting run. ``None``: a minute, at most half
    #: the visibility timeout.
    countdown_max_s: float | None = None
    #: The time limit of step bodies that declare no ``soft_time_limit``; ``None``: none.
    step_timeout_s: float | None = None

    @property
    def distributed(self) -> bool:
        return self.broker_url is not None or self.redis_url is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("STALKFLOW_BROKER_URL"):
            values["broker_url"] = env["STALKFLOW_BROKER_URL"]
        if env.get("STALKFLOW_REDIS_URL"):
            values["redis_url"] = env["STALKFLOW_REDIS_URL"]
        if env.get("STALKFLOW_PREFIX"):
            values["prefix"] = env["STALKFLOW_PREFIX"]
        if env.get("STALKFLOW_QUEUE"):
            values["queue"] = env["STALKFLOW_QUEUE"]
        for field, name in (
            ("visibility_timeout_s", "STALKFLOW_VISIBILITY_TIMEOUT_S"),
            ("result_ttl_s", "STALKFLOW_RESULT_TTL_S"),
            ("lock_lease_s", "STALKFLOW_LOCK_LEASE_S"),
            ("lock_wait_s", "STALKFLOW_LOCK_WAIT_S"),
            ("delivery_lease_s", "STALKFLOW_DELIVERY_LEASE_S"),
            ("dispatch_grace_s", "STALKFLOW_DISPATCH_GRACE_S"),
            ("sweep_interval_s", "STALKFLOW_SWEEP_INTERVAL_S"),
            ("countdown_max_s", "STALKFLOW_COUNTDOWN_MAX_S"),
            ("step_timeout_s", "STALKFLOW_STEP_TIMEOUT_S"),
        ):
            if env.get(name):
                values[field] = float(env[name])
        if env.get("STALKFLOW_MAX_DELIVERIES"):
            values["max_deliveries"] = int(env["STALKFLOW_MAX_DELIVERIES"])
        return cls(**values)

    @property
    def effective_countdown_max_s(self) -> float:
        """``countdown_max_s``, or its default: a minute, at most half the visibility timeout.

        A broker countdown longer than the visibility timeout (Redis broker) would be
        delivered twice; kept in the store, a long delay is exact to a sweep interval.
        """
        if self.countdown_max_s is not None:
            return self.countdown_max_s
        return min(60.0, self.visibility_timeout_s / 2)

    def build_engine(self) -> Engine:
        """The distributed engine these settings describe (RedisStore + CeleryTransport).

        A ``redis_url`` alone is the broker too; a Redis ``broker_url`` alone is
        the store too. See :func:`stalkflow.distributed.build_engine`.
        """
        from stalkflow.distributed import build_engine

        return build_engine(self)
