"""A pipelined Redis connection for the run scripts: one socket per event loop, no pool.

Every step execution calls two scripts (``begin``, ``commit``). redis-py's
asyncio client spends more time in its connection pool and its stream-based
reply parser than Redis spends running the script. ``ScriptPipe`` takes over a
connection that redis-py has opened and handshaken (password, database, RESP
version, TLS: all as the URL says) and then writes each command at once and
parses replies straight from the bytes received, matching them to callers in
order: any number of executions on the loop share the one socket, their
commands pipelined. A reply that takes longer than the connection's socket
timeout, or a lost connection, fails every call waiting on it (the next call
connects afresh); a script the server does not know yet is loaded and called
again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

import redis.exceptions
from redis._parsers.base import BaseParser

#: A reply still being parsed: the parser needs more bytes.
_INCOMPLETE = object()


class RespParser:
    """Parses RESP2/RESP3 replies from a byte buffer (strings decoded as UTF-8)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def replies(self) -> list[Any]:
        """The complete replies buffered so far, in order (errors as exception objects)."""
        found = []
        position = 0
        buffer = self._buffer
        while position < len(buffer):
            value, end = self._parse(buffer, position)
            if value is _INCOMPLETE:
                break
            found.append(value)
            position = end
        if position:
            del buffer[:position]
        return found

    def _parse(self, buffer: bytearray, position: int) -> tuple[Any, int]:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return _INCOMPLETE, position
        kind = buffer[position]
        head = bytes(buffer[position + 1 : line_end])
        rest = line_end + 2
        if kind in b"$=":  # bulk string, verbatim string
            size = int(head)
            if size < 0:
                return None, rest
            if len(buffer) < rest + size + 2:
                return _INCOMPLETE, position
            text = bytes(buffer[rest : rest + size]).decode()
            return (text[4:] if kind == ord("=") else text), rest + size + 2
        if kind in b"*~>":  # array, set, push
            count = int(head)
            if count < 0:
                return None, rest
            items = []
            for _ in range(count):
                item, rest = self._parse(buffer, rest)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, position
                items.append(item)
            return items, rest
        if kind == ord("%"):  # map
            mapping = {}
            for _ in range(int(head)):
                key, rest = self._parse(buffer, rest)
                if key is _INCOMPLETE:
                    return _INCOMPLETE, position
                value, rest = self._parse(buffer, rest)
                if value is _INCOMPLETE:
                    return _INCOMPLETE, position
                mapping[key] = value
            return mapping, rest
        if kind == ord("|"):  # attributes, then the reply they describe
            for _ in range(2 * int(head)):
                skipped, rest = self._parse(buffer, rest)
                if skipped is _INCOMPLETE:
                    return _INCOMPLETE, position
            return self._parse(buffer, rest)
        if kind == ord(":"):
            return int(head), rest
        if kind == ord("+"):
            return head.decode(), rest
        if kind == ord("-") or kind == ord("!"):
            return BaseParser.parse_error(head.decode()), rest  # type: ignore[no-untyped-call]
        if kind == ord("_"):
            return None, rest
        if kind == ord(","):
            return float(head), rest
        if kind == ord("#"):
            return head == b"t", rest
        if kind == ord("("):
            return int(head), rest
        raise redis.exceptions.InvalidResponse(f"Protocol error, got {chr(kind)!r} as reply type")


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: ScriptPipe) -> None:
        self._pipe = pipe
        self._parser = RespParser()

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            replies = self._parser.replies()
        except Exception as exc:  # a reply we cannot read: nothing after it can be trusted
            self._pipe._fail(self, redis.exceptions.InvalidResponse(str(exc)))
            return
        for reply in replies:
            self._pipe._answer(self, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = redis.exceptions.ConnectionError(f"Connection closed by server: {exc}")
        self._pipe._fail(self, error)


class ScriptPipe:
    """Commands over one connection of this loop, pipelined (see the module doc).

    ``connect`` makes a redis-py connection with the URL's settings; ``timeout_s``
    bounds the wait for each reply.
    """

    def __init__(self, connect: Callable[[], Any], timeout_s: float | None) -> None:
        self._connect = connect
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        # the redis-py connection that opened the socket: kept, or collecting it
        # would close the socket
        self._conn: Any = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: collections.deque[tuple[asyncio.Future[Any], asyncio.TimerHandle | None]]
        self._waiting = collections.deque()

    async def call(self, command: bytes) -> Any:
        """Send one packed command; its reply (an error reply raises)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            transport = await self._open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        timer = None
        if self._timeout_s:
            timer = loop.call_later(self._timeout_s, self._timed_out, future)
        self._waiting.append((future, timer))
        transport.write(command)
        reply = await future
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _open(self) -> asyncio.Transport:
        if self._connecting is not None:  # another caller is connecting: share it
            await asyncio.shield(self._connecting)
            assert self._transport is not None
            return self._transport
        self._connecting = asyncio.get_running_loop().create_future()
        try:
            conn = self._connect()
            await conn.connect()  # the handshake: AUTH, HELLO, SELECT ...
            transport: asyncio.Transport = conn._writer.transport
            protocol = _Protocol(self)
            transport.set_protocol(protocol)
            self._transport, self._protocol, self._conn = transport, protocol, conn
            self._connecting.set_result(None)
            return transport
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: each waiter raises it
            raise
        finally:
            self._connecting = None

    def _answer(self, protocol: _Protocol, reply: Any) -> None:
        if protocol is not self._protocol:
            return  # a connection already given up
        if not self._waiting:
            self._fail(protocol, redis.exceptions.InvalidResponse("A reply nobody asked for"))
            return
        future, timer = self._waiting.popleft()
        if timer is not None:
            timer.cancel()
        if not future.done():  # a caller that was cancelled still had its reply in line
            future.set_result(reply)

    def _timed_out(self, future: asyncio.Future[Any]) -> None:
        if not future.done() and self._protocol is not None:
            self._fail(self._protocol, redis.exceptions.TimeoutError("Timeout reading from socket"))

    def _fail(self, protocol: _Protocol | None, error: Exception) -> None:
        """Close the connection; every call waiting on it fails with ``error``."""
        if protocol is not self._protocol:
            return  # a connection already given up
        transport, self._transport, self._protocol = self._transport, None, None
        conn, self._conn = self._conn, None
        waiting, self._waiting = self._waiting, collections.deque()
        if transport is not None:
            transport.close()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn._close()  # forget the socket: no "unclosed connection" warning later
        for future, timer in waiting:
            if timer is not None:
                timer.cancel()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self._fail(self._protocol, redis.exceptions.ConnectionError("The store was closed"))
