"""The names of every Redis key the Redis store uses, in one place.

Every key starts with the store's prefix (``"stalkflow:"`` by default), so one
Redis database can hold several stores and ``SCAN prefix*`` finds all of one.
The keys of one run share the hash tag ``{<run_id>}``, so that the Lua scripts,
which touch many of them at once, also work on Redis Cluster::

    stalkflow:{<run_id>}:run        hash: record, status, updated_at, outcome, counters
    stalkflow:{<run_id>}:caps       hash: step -> num_workers
    stalkflow:{<run_id>}:running    hash: step -> deliveries holding a slot
    stalkflow:{<run_id>}:queue      zset: "<step>\\0<arrival>\\0<delivery id>", FIFO per step
    stalkflow:{<run_id>}:queued     hash: queue member -> encoded delivery
    stalkflow:{<run_id>}:inprog     hash: delivery id -> encoded delivery (released)
    stalkflow:{<run_id>}:committed  set: committed delivery ids
    stalkflow:{<run_id>}:waiters    hash: waiter id -> encoded waiter
    stalkflow:{<run_id>}:worder     zset: waiter id by registration order
    stalkflow:{<run_id>}:wtimeouts  hash: waiter id -> its step's re-run on timeout
    stalkflow:{<run_id>}:buffers    hash: collect buffers, fields "<buffer>\\0..." (lib.lua):
                                    entries by arrival, a count per type, owners
    stalkflow:{<run_id>}:collected  hash: delivery id -> the complete sets it received
    stalkflow:{<run_id>}:consumed   set: "<buffer>\\0<delivery id>" of events handed out
    stalkflow:{<run_id>}:stream     stream: the run's events, ids 0-1, 0-2 ...
    stalkflow:{<run_id>}:done       stream: one entry once the run has finished, if no
                                    terminal event on the stream says so
    stalkflow:{<run_id>}:leases     zset: in-flight delivery id -> when it is presumed lost (ms);
                                    "w\\0<waiter id>" -> when a waiter kept here times out
    stalkflow:{<run_id>}:claims     hash: delivery id -> token of the execution holding it
    stalkflow:{<run_id>}:begins     hash: delivery id -> executions started
    stalkflow:{<run_id>}:outbox     hash: committed delivery id -> ids its commit released
    stalkflow:{<run_id>}:sched      set: retries kept here until their delay has passed
    stalkflow:{<key>}:state         hash: v (version), b (blob); a run's state has key = run id
    stalkflow:{<key>}:lock          string: the edit lock's token, with its lease as TTL
    stalkflow:{<key>}:lockq         list: wakes one lock waiter when the lock is released
    stalkflow:{_index}:runs         zset: run ids by creation order, for listings
    stalkflow:{_index}:seq          counter behind that order
    stalkflow:{_index}:active:<wf>  zset: running runs of workflow <wf> -> when a sweep should
                                    look at it (ms); workers sweep the workflows they serve
    stalkflow:{_index}:workflows    set: the workflows that have an ``active`` index

and one pub/sub channel, ``stalkflow:{_index}:finished``, on which the end of
each run is published (its ``run`` key), for the clients waiting for it.

Once a run has finished, only its ``run`` hash, ``stream`` (``done``) and
``state`` remain, expiring with the run; everything a running run needs to
route and recover deliveries is deleted then.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The keys of a run, in the order the run scripts receive them as KEYS. The
#: scripts' key table (``K.run``, ``K.stream`` ...) is generated from this.
RUN_KEY_KINDS: tuple[str, ...] = (
    "run",
    "caps",
    "running",
    "queue",
    "queued",
    "inprog",
    "committed",
    "waiters",
    "worder",
    "wtimeouts",
    "buffers",
    "collected",
    "consumed",
    "stream",
    "done",
    "state",
    "leases",
    "claims",
    "begins",
    "outbox",
    "sched",
)


#: A script's KEYS as RESP: how many, and the bulk strings of their names.
PackedKeys = tuple[int, bytes]


def pack_keys(keys: Sequence[str]) -> PackedKeys:
    """Key names packed as RESP bulk strings, for ``_redis_client.ScriptCalls``."""
    parts = []
    for key in keys:
        raw = key.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return len(keys), b"".join(parts)


#: How many runs' key names a ``KeySpace`` keeps at hand.
_RECENT_RUNS = 1024


class RunKeys:
    """The keys of one run (or of one state key: its ``state``, ``lock`` and ``lockq``)."""

    def __init__(self, prefix: str, run_id: str) -> None:
        self._base = f"{prefix}{{{run_id}}}:"
        self._packed: PackedKeys | None = None

    def all(self) -> list[str]:
        """The run's keys, as the run scripts expect them."""
        return [self._base + kind for kind in RUN_KEY_KINDS]

    @property
    def packed(self) -> PackedKeys:
        """:meth:`all`, packed for a script call (:func:`pack_keys`)."""
        if self._packed is None:
            self._packed = pack_keys(self.all())
        return self._packed

    @property
    def run(self) -> str:
        return self._base + "run"

    @property
    def waiters(self) -> str:
        return self._base + "waiters"

    @property
    def waiter_order(self) -> str:
        return self._base + "worder"

    @property
    def stream(self) -> str:
        return self._base + "stream"

    @property
    def done(self) -> str:
        return self._base + "done"

    @property
    def state(self) -> str:
        return self._base + "state"

    @property
    def lock(self) -> str:
        return self._base + "lock"

    @property
    def lock_wakeups(self) -> str:
        return self._base + "lockq"


class KeySpace:
    """Key names under one prefix.

    A prefix that does not end with ``":"`` gets one. Braces are refused: they
    would change which part of a key Redis Cluster hashes.
    """

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"A Redis store prefix cannot contain braces: {prefix!r}")
        self.prefix = prefix if prefix.endswith(":") or not prefix else prefix + ":"
        # the keys of the runs used lately: every step execution needs its run's
        self._runs: dict[str, RunKeys] = {}

    def run(self, run_id: str) -> RunKeys:
        keys = self._runs.get(run_id)
        if keys is None:
            if len(self._runs) >= _RECENT_RUNS:
                del self._runs[next(iter(self._runs))]
            keys = self._runs[run_id] = RunKeys(self.prefix, run_id)
        return keys

    def state(self, key: str) -> RunKeys:
        """The keys of a context state; a run's state key is its run id."""
        return RunKeys(self.prefix, key)

    @property
    def index(self) -> str:
        return f"{self.prefix}{{_index}}:runs"

    @property
    def index_seq(self) -> str:
        return f"{self.prefix}{{_index}}:seq"

    def active(self, workflow: str) -> str:
        """The running runs of ``workflow``, scored by when a sweep should look at them."""
        return f"{self.prefix}{{_index}}:active:{workflow}"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}{{_index}}:workflows"

    @property
    def finished_channel(self) -> str:
        """The pub/sub channel on which the run scripts publish each finished run's key."""
        return f"{self.prefix}{{_index}}:finished"


def lua_key_table() -> str:
    """The Lua header that names the run scripts' KEYS: ``K.run == KEYS[1]`` ..."""
    kinds = ", ".join(f"'{kind}'" for kind in RUN_KEY_KINDS)
    return f"local K = {{}}\nfor i, kind in ipairs({{{kinds}}}) do K[kind] = KEYS[i] end\n"
