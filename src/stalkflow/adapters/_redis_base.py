"""What every part of the Redis store shares, and the one way it calls a script.

:class:`RedisStoreBase` holds a store's key names (``KeySpace``), the encoding
of script arguments (``RedisWire``) and the decoding of replies
(``RedisReplies``), its connections (``RedisClients``) and the translation of
redis-py's errors (``ErrorTranslator``). :class:`~stalkflow.adapters.redis_store.RedisStore`
is built on it together with the state operations (``_redis_state``) and the
sweeps (``_redis_sweep``), each a part of the same class, so that a store
operation is one method call as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stalkflow.adapters._redis_client import ErrorTranslator, RedisClients
from stalkflow.adapters._redis_replies import RedisReplies
from stalkflow.adapters._redis_wire import RedisWire
from stalkflow.adapters.redis_keys import KeySpace, RunKeys, pack_keys
from stalkflow.core.codec import EventCodec
from stalkflow.ports import DeliveryPolicy

__all__ = ["DEFAULT_FINISHED_TTL_S", "RedisStoreBase"]

#: How long a finished run's keys are kept: a week.
DEFAULT_FINISHED_TTL_S = 7 * 24 * 3600.0


class RedisStoreBase:
    """What all of a ``RedisStore``'s operations use (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "stalkflow",
        codec: EventCodec | None = None,
        finished_ttl_s: float = DEFAULT_FINISHED_TTL_S,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self._keys = KeySpace(prefix)
        codec = codec or EventCodec.permissive()
        self._wire = RedisWire(codec, finished_ttl_s, policy, self._keys.finished_channel)
        self._replies = RedisReplies(codec, self._wire.policy)
        self._errors = ErrorTranslator(url)
        self._clients = RedisClients(url)

    @property
    def policy(self) -> DeliveryPolicy:
        return self._wire.policy

    @property
    def url(self) -> str:
        """The Redis URL, password redacted."""
        return self._errors.safe_url

    async def aclose(self) -> None:
        """Close every connection this store opened."""
        with self._errors():
            await self._clients.aclose()

    async def _script(
        self, name: str, keys: RunKeys | Sequence[str], args: Sequence[Any] = ()
    ) -> Any:
        """Call a script with a run's keys (``RunKeys``) or the keys given."""
        clients = await self._clients.for_loop()
        packed = keys.packed if isinstance(keys, RunKeys) else pack_keys(keys)
        return await clients.calls.call(name, packed, args)
