"""kombu's Redis transport: one redis client per channel, not one per command.

kombu's Redis channel builds a new ``redis.Redis`` each time it publishes a
message or acknowledges one (``Channel.conn_or_acquire``, used by ``_put`` and
by the QoS bookkeeping of every received message); building it costs more than
the command it sends (about 0.1 to 0.2 ms: the client's table of response
callbacks). The client only wraps the channel's connection pool, which stays
the same for the channel's life, so the channel may as well keep one: a worker
sends and acknowledges each step's messages through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def keep_one_client(channel: Any) -> None:
    """Make a kombu Redis ``channel`` reuse one client; other channels are left alone."""
    if channel is None or getattr(channel, "_stalkflow_client", None) is not None:
        return
    create = getattr(channel, "_create_client", None)
    if not callable(create) or not callable(getattr(channel, "conn_or_acquire", None)):
        return
    kept = create()

    @contextlib.contextmanager
    def conn_or_acquire(client: Any = None) -> Iterator[Any]:  # kombu's signature
        yield client or kept

    channel.conn_or_acquire = conn_or_acquire
    channel._stalkflow_client = kept
