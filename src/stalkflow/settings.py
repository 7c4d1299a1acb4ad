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
        ):
            if env.get(name):
                values[field] = float(env[name])
        return cls(**values)

    def build_engine(self) -> Engine:
        """The distributed engine these settings describe (RedisStore + CeleryTransport).

        A ``redis_url`` alone is the broker too; a Redis ``broker_url`` alone is
        the store too. See :func:`stalkflow.distributed.build_engine`.
        """
        from stalkflow.distributed import build_engine

        return build_engine(self)
