"""Counting the Redis commands and round trips of a benchmark, on the server side.

``INFO commandstats`` is server-wide: on a shared Redis (other engineers' test
runs use DBs 14 and 15) its deltas include their traffic. ``MONITOR`` reports
every command with its database and client address, so :class:`CommandCounter`
counts only the commands sent to the benchmark's databases while it is open:

- a *round trip* is one request a client waits for: a command, or a whole
  ``MULTI ... EXEC`` transaction (redis-py and kombu send a transaction as one
  pipeline);
- *client commands* are the commands clients sent (``MULTI``/``EXEC`` included);
- *script commands* are those that Lua scripts ran inside Redis (no round trip).

MONITOR costs Redis some throughput, so counts are taken in runs of their own,
never in the timed ones.

Example::

    with CommandCounter("redis://127.0.0.1:6379/12", dbs={12, 13}) as counter:
        run_something()
    print(counter.round_trips, counter.by_command.most_common(5))
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import urlparse

# +<time> [<db> <addr>] "<COMMAND>" ...
_LINE = re.compile(rb'^\+\d+\.\d+ \[(\d+) ([^\]]+)\] "([^"]*)"')


def db_of(url: str) -> int:
    path = urlparse(url).path.strip("/")
    return int(path) if path else 0


class CommandCounter:
    """Counts commands sent to ``dbs`` of the Redis at ``url`` while the block runs."""

    def __init__(self, url: str, dbs: Iterable[int]) -> None:
        parsed = urlparse(url)
        self._address = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self._password = parsed.password
        self._dbs = {str(db).encode() for db in dbs}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._in_multi: set[bytes] = set()
        self._marker = f"bench-monitor-marker-{id(self)}".encode()
        self._marker_seen = threading.Event()
        self.round_trips = 0
        self.client_commands = 0
        self.script_commands = 0
        #: Round trips by command (a transaction counts under "MULTI/EXEC").
        self.by_command: Counter[str] = Counter()
        #: Commands run by Lua scripts, by command.
        self.by_script_command: Counter[str] = Counter()

    def __enter__(self) -> CommandCounter:
        sock = socket.create_connection(self._address, timeout=5)
        if self._password:
            sock.sendall(_command(b"AUTH", self._password.encode()))
            _expect_ok(sock)
        sock.sendall(_command(b"MONITOR"))
        leftover = _expect_ok(sock)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._read, args=(leftover,), name="bench-monitor", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Let the last replies of the measured block reach the monitor first.
        self._sync_marker()
        self._stop.set()
        assert self._thread is not None and self._sock is not None
        self._thread.join(5)
        self._sock.close()

    def _sync_marker(self) -> None:
        """Send a marker command and wait until the monitor has seen it."""
        with socket.create_connection(self._address, timeout=5) as sock:
            if self._password:
                sock.sendall(_command(b"AUTH", self._password.encode()))
                _expect_ok(sock)
            sock.sendall(_command(b"ECHO", self._marker))
            sock.recv(1024)
        self._marker_seen.wait(5)

    def _read(self, buffered: bytes) -> None:
        assert self._sock is not None
        pending = buffered
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\r\n")
            for line in lines:
                self._count(line)

    def _count(self, line: bytes) -> None:
        if self._marker in line:
            self._marker_seen.set()
            return
        match = _LINE.match(line)
        if match is None:
            return
        db, origin, command = match.groups()
        if db not in self._dbs:
            return
        name = command.decode(errors="replace").upper()
        if origin == b"lua":
            self.script_commands += 1
            self.by_script_command[name] += 1
            return
        self.client_commands += 1
        if name == "MULTI":
            self._in_multi.add(origin)
            return
        if origin in self._in_multi:
            if name in ("EXEC", "DISCARD"):
                self._in_multi.discard(origin)
                self.round_trips += 1
                self.by_command["MULTI/EXEC"] += 1
            return
        self.round_trips += 1
        self.by_command[name] += 1


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _expect_ok(sock: socket.socket) -> bytes:
    """Read a ``+OK`` reply; returns whatever arrived after it."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        data += chunk
    reply, _, rest = data.partition(b"\r\n")
    if not reply.startswith(b"+OK"):
        raise ConnectionError(f"Redis refused: {reply.decode(errors='replace')}")
    return rest
