"""Connections of the Redis store: clients per event loop, scripts, and error translation.

A store may be called from any event loop: a worker's persistent loop, a test's
loop, or the fresh loop that ``stalkflow._sync.run_blocking`` starts in a helper
thread. redis.asyncio connections belong to the loop that opened them, so each
running loop gets its own pair of clients (one for quick commands, one with a
longer socket timeout for blocking reads), made when that loop first calls, and
closed when the loop shuts down or the store closes. Their pools *wait* for a
free connection when all are busy (redis-py's default pool fails at 100), and
every wait for a run's end on a loop shares one subscription
(:class:`FinishWatcher`), so a client that awaits 500 runs holds a handful of
connections, not 500. Synchronous callers (``Store.collect``) share one
thread-safe sync client.

The scripts, which every step execution calls twice (``begin``, ``commit``), go
through :class:`ScriptCalls`: the loop's own connections, taken from a free
list, the command written in one piece with the run's key names packed once per
run. That is a third of redis-py's generic path, per call.

Every redis-py exception is translated here into stalkflow's own, and the URL
in a message never shows its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from stalkflow._urls import redact, redact_url
from stalkflow.adapters._redis_pipe import ScriptPipe
from stalkflow.adapters.redis_keys import PackedKeys, lua_key_table
from stalkflow.errors import BackendError, StoreUnavailableError

#: The longest single blocking command (XREAD BLOCK, BLPOP); longer waits loop.
BLOCK_SLICE_S = 10.0
#: The socket timeout of connections that block: redis-py's default (5 s) would
#: cut a blocking read short (see DESIGN.md, section 8).
BLOCKING_SOCKET_TIMEOUT_S = BLOCK_SLICE_S + 5.0
#: Connections per pool (per loop): past it, callers wait for one to be free ...
POOL_CONNECTIONS = 64
#: ... for at most this long, then fail with StoreUnavailableError.
POOL_WAIT_S = 30.0

#: Scripts that act on one run: they receive all of its keys and the shared helpers.
RUN_SCRIPTS = (
    "create_run",
    "begin",
    "commit",
    "finish_run",
    "expire_waiter",
    "collect",
    "snapshot",
    "append_stream",
    "heartbeat",
    "sweep_run",
    "redispatch_soon",
)
#: Scripts on a few keys of their own (state, lock, indexes).
PLAIN_SCRIPTS = (
    "save_state",
    "lock_acquire",
    "lock_renew",
    "lock_release",
    "index_add",
    "due_runs",
    "mark_active",
)


@cache
def script_source(name: str) -> str:
    """The Lua source of a script, with the run helpers prepended for run scripts."""
    folder = resources.files("stalkflow.adapters") / "lua"
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    if name in RUN_SCRIPTS:
        return lua_key_table() + (folder / "lib.lua").read_text(encoding="utf-8") + body
    return body


class ErrorTranslator:
    """Turns redis-py exceptions into stalkflow's, with the URL's password masked."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.safe_url = redact_url(url)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            detail = redact(f"{type(exc).__name__}: {exc}", self._url)
            raise StoreUnavailableError(
                f"The Redis store at {self.safe_url} is unavailable ({detail})"
            ) from exc
        except redis.exceptions.RedisError as exc:
            detail = redact(f"{type(exc).__name__}: {exc}", self._url)
            raise BackendError(f"The Redis store at {self.safe_url} failed ({detail})") from exc


class FinishWatcher:
    """Wakes the waiters of run ends on one event loop, over one subscription.

    The run scripts publish a finished run's ``run`` key on the store's channel
    when the run ends. A waiter ``watch``es the key *before* it checks the run's
    status, so no end is missed between the two; a broken subscription wakes
    every waiter, which then checks again (and sees the store's error).
    """

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Future[None] | None = None

    async def watch(self, key: str) -> asyncio.Future[None]:
        """A future done when the run whose ``run`` key is ``key`` may have ended."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._subscribed = loop.create_future()
            self._task = loop.create_task(self._listen(self._subscribed))
        assert self._subscribed is not None
        await asyncio.shield(self._subscribed)
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(key, set()).add(future)
        return future

    def forget(self, key: str, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiting[key]

    def _wake(self, key: str | None = None) -> None:
        keys = list(self._waiting) if key is None else [key]
        for name in keys:
            for future in self._waiting.pop(name, ()):
                if not future.done():
                    future.set_result(None)

    async def _listen(self, subscribed: asyncio.Future[None]) -> None:
        pubsub = self._client.pubsub()
        try:
            try:
                await pubsub.subscribe(self._channel)
            except BaseException as exc:
                subscribed.set_exception(exc)
                subscribed.exception()  # reported to the waiters, not as unretrieved
                return
            subscribed.set_result(None)
            while True:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    self._wake()  # they check again; the pubsub re-subscribes when it can
                    await asyncio.sleep(0.5)
                    continue
                if message is not None and message.get("type") == "message":
                    self._wake(str(message["data"]))
        finally:
            self._wake()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _bulk(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode()
    elif isinstance(value, bytes):
        raw = value
    elif isinstance(value, int) and not isinstance(value, bool):
        raw = b"%d" % value
    elif isinstance(value, float):
        raw = repr(value).encode()
    else:
        raise TypeError(f"Cannot send {type(value).__name__} to a Redis script")
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class ScriptCalls:
    """Calls scripts over one event loop's pipelined connection (``_redis_pipe``).

    ``EVALSHA`` is written in one piece (a run's key names packed once); a
    script the server does not know yet (``NOSCRIPT``) is loaded and the call
    repeated.
    """

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        timeout_s = pool.connection_kwargs.get("socket_timeout")
        self._pipe = ScriptPipe(pool.make_connection, timeout_s)

    async def call(self, name: str, keys: PackedKeys, args: Sequence[Any]) -> Any:
        command = evalsha_command(name, keys, args)
        try:
            return await self._pipe.call(command)
        except redis.exceptions.NoScriptError:
            load = b"*3\r\n" + _bulk("SCRIPT") + _bulk("LOAD") + _bulk(script_source(name))
            await self._pipe.call(load)
            return await self._pipe.call(command)

    async def aclose(self) -> None:
        self._pipe.close()


def evalsha_command(name: str, keys: PackedKeys, args: Sequence[Any]) -> bytes:
    """``EVALSHA`` of script ``name`` as one RESP command."""
    count, packed_keys = keys
    head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % (3 + count + len(args), script_sha(name))
    return b"".join((head, _bulk(count), packed_keys, *map(_bulk, args)))


@cache
def script_sha(name: str) -> bytes:
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()


@dataclasses.dataclass
class LoopClients:
    """The clients of one event loop, its scripts bound to the quick one, its script calls."""

    quick: aioredis.Redis
    blocking: aioredis.Redis
    scripts: dict[str, AsyncScript]
    calls: ScriptCalls
    closer: AsyncGenerator[None, None] | None = None
    watchers: dict[str, FinishWatcher] = dataclasses.field(default_factory=dict)

    def finishes(self, channel: str) -> FinishWatcher:
        """This loop's watcher of the run ends published on ``channel``."""
        watcher = self.watchers.get(channel)
        if watcher is None:
            watcher = self.watchers[channel] = FinishWatcher(self.blocking, channel)
        return watcher

    async def aclose(self) -> None:
        for watcher in self.watchers.values():
            await watcher.aclose()
        await self.calls.aclose()
        await self.quick.aclose()
        await self.blocking.aclose()


class RedisClients:
    """One sync client, and redis.asyncio clients per running event loop."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._mutex = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, LoopClients] = {}
        self._sync: redis.Redis | None = None
        self._sync_idle: list[Any] = []

    # --- async ------------------------------------------------------------------------

    async def for_loop(self) -> LoopClients:
        """The running loop's clients, made on its first call."""
        loop = asyncio.get_running_loop()
        clients = self._loops.get(loop)
        if clients is not None:
            return clients
        with self._mutex:
            for stale in [other for other in self._loops if other.is_closed()]:
                # its sockets close when the clients are collected
                del self._loops[stale]
            clients = self._loops.get(loop)
            if clients is not None:
                return clients
            clients = self._new_loop_clients()
            self._loops[loop] = clients
        # An async generator is closed by the loop's shutdown (asyncio.run,
        # asyncio.Runner): its finally block then closes the clients while the
        # loop can still run that, instead of leaving sockets to the collector.
        clients.closer = self._close_with_loop(loop, clients)
        await clients.closer.__anext__()
        return clients

    def _new_loop_clients(self) -> LoopClients:
        quick = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                max_connections=POOL_CONNECTIONS,
                timeout=POOL_WAIT_S,
            )
        )
        blocking = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                socket_timeout=BLOCKING_SOCKET_TIMEOUT_S,
                max_connections=POOL_CONNECTIONS,
                timeout=POOL_WAIT_S,
            )
        )
        scripts = {
            name: quick.register_script(script_source(name))
            for name in (*RUN_SCRIPTS, *PLAIN_SCRIPTS)
        }
        calls = ScriptCalls(quick.connection_pool)
        return LoopClients(quick=quick, blocking=blocking, scripts=scripts, calls=calls)

    async def _close_with_loop(
        self, loop: asyncio.AbstractEventLoop, clients: LoopClients
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._mutex:
                if self._loops.get(loop) is clients:
                    del self._loops[loop]
            with contextlib.suppress(Exception):
                await clients.aclose()

    # --- sync -------------------------------------------------------------------------

    def sync_call(self, name: str, keys: PackedKeys, args: Sequence[Any]) -> Any:
        """Call a script from synchronous code (any thread), as ``ScriptCalls`` does.

        Connections come from a free list of this store's own (a pool's checks
        cost a system call each time): one per thread calling at the same time.
        """
        with self._mutex:
            if self._sync is None:
                self._sync = redis.Redis.from_url(self._url, decode_responses=True)
            pool = self._sync.connection_pool
            conn: Any = self._sync_idle.pop() if self._sync_idle else pool.make_connection()
        command = evalsha_command(name, keys, args)
        try:
            try:
                conn.send_packed_command([command], check_health=False)
                reply = conn.read_response()
            except redis.exceptions.NoScriptError:
                conn.send_command("SCRIPT", "LOAD", script_source(name))
                conn.read_response()
                conn.send_packed_command([command], check_health=False)
                reply = conn.read_response()
        except redis.exceptions.ResponseError:
            self._sync_idle.append(conn)  # the server answered: the connection is sound
            raise
        except BaseException:
            conn.disconnect()
            raise
        self._sync_idle.append(conn)
        return reply

    # --- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the clients of every loop and the sync client."""
        with self._mutex:
            loops, self._loops = self._loops, {}
            sync, self._sync = self._sync, None
            idle, self._sync_idle = self._sync_idle, []
        current = asyncio.get_running_loop()
        for loop, clients in loops.items():
            if loop is current:
                await _close(clients)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(_close(clients), loop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(future), timeout=1.0)
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.disconnect()
        if sync is not None:
            sync.close()


async def _close(clients: LoopClients) -> None:
    if clients.closer is not None:
        await clients.closer.aclose()  # runs the closer's finally: closes the clients
    else:
        await clients.aclose()
