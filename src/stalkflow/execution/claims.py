"""Claims: the token an execution holds a delivery by, and the heartbeat renewing its lease.

``begin`` claims a delivery with a token naming this process; while the step
body runs, a heartbeat renews the claim's lease, so that the sweep of another
worker hands the delivery out again only once this process stops beating (it
died, froze, or blocks its event loop).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket

from stalkflow.core.deliveries import Delivery
from stalkflow.execution.settings import describe, first_line, logger
from stalkflow.ports import Begin, Store


def claim_token() -> str:
    """A claim token naming this process: ``"<host>~<pid namespace>/<pid>/<unique>"``.

    Unique per execution (a random part per process, then a counter), not secret.
    """
    pid = os.getpid()
    global _tokens
    if _tokens is None or _tokens[0] != pid:  # this process's (a forked child's own)
        _tokens = (pid, secrets.token_hex(4), itertools.count())
    return f"{_HOST}/{pid}/{_tokens[1]}{next(_tokens[2]):x}"


def holder_is_dead(holder: str | None) -> bool:
    """Whether a claim token names a process of this machine that no longer runs.

    Only a process on this host can be checked; any other holder (another
    host, a token of another form, this very process) counts as alive, and its
    lease decides. A wrong "dead" (a reused pid namespace) costs a duplicate
    execution, whose commit the claim fences; never a lost one.
    """
    if not holder:
        return False
    host, _, pid_text = holder.rpartition("/")[0].rpartition("/")
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, owned by someone else
    try:  # a zombie (dead, not yet reaped) is dead
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _machine() -> str:
    """This host's name and PID namespace: where a pid in a claim token means this process.

    Containers may share a hostname; their PID namespaces differ, and a pid is only
    checked where both match.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid").replace("/", "")
    except OSError:
        namespace = ""
    return f"{socket.gethostname().replace('/', '')}~{namespace}"


_HOST = _machine()
_tokens: tuple[int, str, itertools.count[int]] | None = None


class Heartbeat:
    """Renews a claim's lease every third of the lease while a step body runs.

    Nothing is scheduled until a third of the lease has passed, so a short step
    costs one timer; the renewals themselves run as tasks on the same loop.
    """

    def __init__(self, store: Store, delivery: Delivery, begin: Begin) -> None:
        self._store = store
        self._delivery = delivery
        self._token = begin.token
        self._interval = begin.lease_s / 3
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        if self._token is not None and self._interval > 0:
            self._timer = self._loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        if not self._stopped:
            self._task = self._loop.create_task(self._beat())

    async def _beat(self) -> None:
        assert self._token is not None
        try:
            alive = await self._store.heartbeat(
                self._delivery.run_id, self._delivery.delivery_id, self._token
            )
        except Exception as exc:
            logger.warning("Heartbeat of %s failed: %s", describe(self._delivery), first_line(exc))
            alive = True  # the store may come back before the lease runs out
        if not alive:
            logger.warning(
                "%s lost its claim (its lease ran out, or the run ended): another execution "
                "may run it; this one's commit will be refused",
                describe(self._delivery),
            )
            return
        if not self._stopped:
            self._timer = self._loop.call_later(self._interval, self._fire)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
