"""Workflows of the fault tests, imported by the test process and the workers alike.

Workers load this module through ``STALKFLOW_WORKFLOWS=tests.faults.fault_workflows``.
Steps record what really happened into a *probe*: Redis lists on the test Redis
(``STALKFLOW_FAULTS_PROBE_URL``, never the store under test, which a test may
stop), under the session's key prefix. A test reads them back to count how
many times a step body ran, with which delivery id, in which process.

A step hangs on its first execution when told to (``hang`` fields): it writes
an event to the stream first, so that the test knows which process to kill,
stop or terminate, and when.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import redis
from pydantic import BaseModel, Field

from stalkflow import Context, Workflow, step
from stalkflow.decorators import catch_error
from stalkflow.events import Event, HumanResponseEvent, StartEvent, StepFailedEvent, StopEvent
from stalkflow.retry_policy import retry_policy, stop_after_attempt, wait_fixed

#: The queue of ``Parked``'s step: no worker consumes it until a test says so.
PARKED_QUEUE = os.environ.get("STALKFLOW_FAULTS_PARKED_QUEUE", "stalkflow-faults-parked")

# --- the probe -------------------------------------------------------------------------

_clients: dict[int, redis.Redis] = {}
_clients_lock = threading.Lock()


def probe_client(url: str | None = None) -> redis.Redis:
    """This process's client of the probe Redis."""
    with _clients_lock:
        client = _clients.get(os.getpid())
        if client is None:
            target = url or os.environ["STALKFLOW_FAULTS_PROBE_URL"]
            client = redis.Redis.from_url(target, decode_responses=True)
            _clients[os.getpid()] = client
        return client


def probe_key(prefix: str, run_id: str, name: str) -> str:
    return f"{prefix}:probe:{run_id}:{name}"


def _key(ctx: Context[Any], name: str) -> str:
    assert ctx.run_id is not None
    return probe_key(os.environ["STALKFLOW_PREFIX"], ctx.run_id, name)


def record(ctx: Context[Any], name: str, *fields: object) -> None:
    """Append ``index:delivery id:pid`` (or the given fields) to the probe list ``name``."""
    delivery_id = ctx._scope.delivery.delivery_id if ctx._scope else "-"
    entry = ":".join(str(f) for f in (*fields, delivery_id, os.getpid()))
    probe_client().rpush(_key(ctx, name), entry)


def first_time(ctx: Context[Any], name: str) -> bool:
    """True once per run and name, across every process and re-execution."""
    return bool(probe_client().set(_key(ctx, f"once:{name}"), "1", nx=True))


# --- events ------------------------------------------------------------------------------


class Hanging(Event):
    """Written by a step about to hang: the test kills, stops or terminates ``pid``."""

    pid: int
    step_name: str
    index: int = -1


class RelayStart(StartEvent):
    count: int = 6
    work_s: float = 0.05
    #: hang in this step on its first execution: "start", "work" or "" (never)
    hang_in: str = ""
    hang_index: int = 0


class Job(Event):
    index: int
    work_s: float
    hang: bool = False


class Finished(Event):
    index: int


class Recorded(Event):
    index: int


# --- relay: a fan-out whose every routing a probe records --------------------------------


class Relay(Workflow):
    """``start`` sends ``count`` jobs; ``work`` does each; ``note`` records each result once
    per execution; ``gather`` collects them all.

    A redelivered ``start`` or ``work`` re-sends the same events (their delivery ids are
    derived): the ``notes`` probe shows whether any was routed twice.
    """

    @step
    async def start(self, ctx: Context, ev: RelayStart) -> Job | None:
        await ctx.store.set("count", ev.count)
        record(ctx, "start", "start")
        if ev.hang_in == "start" and first_time(ctx, "start"):
            for index in range(ev.count // 2):  # half sent before the crash ...
                ctx.send_event(Job(index=index, work_s=ev.work_s))
            ctx.write_event_to_stream(Hanging(pid=os.getpid(), step_name="start"))
            await asyncio.sleep(120)
        for index in range(ev.count):
            hang = ev.hang_in == "work" and index == ev.hang_index
            ctx.send_event(Job(index=index, work_s=ev.work_s, hang=hang))
        return None

    @step(num_workers=4)
    async def work(self, ctx: Context, ev: Job) -> Finished:
        record(ctx, "work", ev.index)
        if ev.hang and first_time(ctx, f"work-{ev.index}"):
            ctx.write_event_to_stream(Hanging(pid=os.getpid(), step_name="work", index=ev.index))
            await asyncio.sleep(120)
        await asyncio.sleep(ev.work_s)
        return Finished(index=ev.index)

    @step(num_workers=4)
    async def note(self, ctx: Context, ev: Finished) -> Recorded:
        record(ctx, "notes", ev.index)
        return Recorded(index=ev.index)

    @step
    async def gather(self, ctx: Context, ev: Recorded) -> StopEvent | None:
        count = await ctx.store.get("count")
        done = ctx.collect_events(ev, [Recorded] * count)
        if done is None:
            return None
        return StopEvent(result=sorted(item.index for item in done))  # type: ignore[attr-defined]


class Handoff(Workflow):
    """``first`` announces itself, waits ``pause_s`` (a test takes the broker down),
    then sends ``count`` jobs: its commit succeeds, sending them fails."""

    @step
    async def first(self, ctx: Context, ev: RelayStart) -> Job | None:
        await ctx.store.set("count", ev.count)
        record(ctx, "first", "first")
        if first_time(ctx, "first"):
            ctx.write_event_to_stream(Hanging(pid=os.getpid(), step_name="first"))
            await asyncio.sleep(ev.work_s)
        for index in range(ev.count):
            ctx.send_event(Job(index=index, work_s=0.0))
        return None

    @step(num_workers=4)
    async def note(self, ctx: Context, ev: Job) -> Recorded:
        record(ctx, "notes", ev.index)
        return Recorded(index=ev.index)

    @step
    async def gather(self, ctx: Context, ev: Recorded) -> StopEvent | None:
        count = await ctx.store.get("count")
        done = ctx.collect_events(ev, [Recorded] * count)
        if done is None:
            return None
        return StopEvent(result=sorted(item.index for item in done))  # type: ignore[attr-defined]


# --- locker: edit_state() held by a process that dies or freezes -------------------------


class LockStart(StartEvent):
    writers: int = 4
    rounds: int = 5
    #: writer 0 holds the lock this long on its first execution, after announcing it
    hold_s: float = 0.0
    #: the run ends only once a ``Go`` event is sent to it
    wait_for_go: bool = False


class Write(Event):
    writer: int
    rounds: int
    hold_s: float


class Wrote(Event):
    writer: int


class Go(HumanResponseEvent):
    """Sent by a test to let a ``Locker`` run end (human input: the run may sit idle)."""


class Locker(Workflow):
    """``writers`` steps each make ``rounds`` locked increments of one counter.

    With ``hold_s``, writer 0's first execution writes ``zombie`` into the state
    being edited and holds the lock, announcing ``Hanging``: a test kills or
    freezes it there. Whatever that holder writes later must never land.
    """

    @step
    async def start(self, ctx: Context, ev: LockStart) -> Write | None:
        await ctx.store.set("writers", ev.writers)
        await ctx.store.set("wait_for_go", ev.wait_for_go)
        for writer in range(ev.writers):
            ctx.send_event(Write(writer=writer, rounds=ev.rounds, hold_s=ev.hold_s))
        return None

    @step(num_workers=8)
    async def write(self, ctx: Context, ev: Write) -> Wrote:
        delivery_id = ctx._scope.delivery.delivery_id if ctx._scope else "-"
        for round_ in range(ev.rounds):
            async with ctx.store.edit_state() as state:
                if ev.hold_s and ev.writer == 0 and round_ == 0 and first_time(ctx, "hold"):
                    state["zombie"] = os.getpid()
                    ctx.write_event_to_stream(Hanging(pid=os.getpid(), step_name="write"))
                    await asyncio.sleep(ev.hold_s)
                state["count"] = state.get("count", 0) + 1
                state["log"] = [*state.get("log", []), f"{ev.writer}:{round_}:{delivery_id}"]
        record(ctx, "wrote", ev.writer)
        return Wrote(writer=ev.writer)

    @step
    async def gather(self, ctx: Context, ev: Wrote | Go) -> StopEvent | None:
        expected: list[type[Event]] = [Wrote] * await ctx.store.get("writers")
        if await ctx.store.get("wait_for_go"):
            expected.append(Go)
        if ctx.collect_events(ev, expected) is None:
            return None
        state = await ctx.store.get_state()
        return StopEvent(result={key: state[key] for key in list(state.keys())})


# --- contention: many steps, many writes ------------------------------------------------


class ContendStart(StartEvent):
    steps: int = 8
    writes: int = 250
    #: "edit": locked increments of one counter; "set": set of distinct keys
    mode: str = "edit"


class Contend(Event):
    index: int
    writes: int
    mode: str


class Contended(Event):
    index: int


class Contention(Workflow):
    """``steps`` concurrent steps, each making ``writes`` state writes."""

    @step
    async def start(self, ctx: Context, ev: ContendStart) -> Contend | None:
        await ctx.store.set("steps", ev.steps)
        for index in range(ev.steps):
            ctx.send_event(Contend(index=index, writes=ev.writes, mode=ev.mode))
        return None

    @step(num_workers=8)
    async def contend(self, ctx: Context, ev: Contend) -> Contended:
        record(ctx, "contend", ev.index)
        for n in range(ev.writes):
            if ev.mode == "edit":
                async with ctx.store.edit_state() as state:
                    state["count"] = state.get("count", 0) + 1
            else:
                await ctx.store.set(f"keys.s{ev.index}_{n}", n)
        return Contended(index=ev.index)

    @step
    async def gather(self, ctx: Context, ev: Contended) -> StopEvent | None:
        steps = await ctx.store.get("steps")
        if ctx.collect_events(ev, [Contended] * steps) is None:
            return None
        keys = await ctx.store.get("keys", default={})
        return StopEvent(result={"count": await ctx.store.get("count", 0), "keys": len(keys)})


class Echo(Workflow):
    """The smallest distributed run: three hops, a little state, a result."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> Job:
        await ctx.store.set("n", ev.get("n", 0))
        return Job(index=int(ev.get("n", 0)), work_s=0.0)

    @step
    async def double(self, ctx: Context, ev: Job) -> Finished:
        return Finished(index=ev.index * 2)

    @step
    async def end(self, ctx: Context, ev: Finished) -> StopEvent:
        return StopEvent(result={"n": await ctx.store.get("n"), "double": ev.index})


# --- failing steps ------------------------------------------------------------------------


class FlakyError(Exception):
    pass


class Doomed(Workflow):
    """A step that always raises, after three attempts."""

    @step(retry_policy=retry_policy(wait=wait_fixed(0.2), stop=stop_after_attempt(3)))
    async def fail(self, ctx: Context, ev: StartEvent) -> StopEvent:
        record(ctx, "attempts", ctx.retry_info().retry_number)
        raise FlakyError(f"boom in run {ctx.run_id}")


class Rescued(Workflow):
    """The same failing step, with a ``@catch_error`` handler that ends the run."""

    @step(retry_policy=retry_policy(wait=wait_fixed(0.2), stop=stop_after_attempt(2)))
    async def fail(self, ctx: Context, ev: StartEvent) -> StopEvent:
        record(ctx, "attempts", 0)
        raise FlakyError("boom")

    @catch_error
    async def recover(self, ctx: Context, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(
            result={
                "recovered": ev.step_name,
                "attempts": ev.attempts,
                "error": type(ev.exception).__name__,
                "message": str(ev.exception),
            }
        )


class SlowStart(StartEvent):
    sleep_s: float = 30.0


class Slow(Workflow):
    """A step past its soft time limit, retried once, then failing the run."""

    @step(
        soft_time_limit=1.0,
        retry_policy=retry_policy(wait=wait_fixed(0.1), stop=stop_after_attempt(2)),
    )
    async def crawl(self, ctx: Context, ev: SlowStart) -> StopEvent:
        record(ctx, "attempts", 0)
        await asyncio.sleep(ev.sleep_s)
        return StopEvent(result="too late")


class SlowRescued(Workflow):
    """A synchronous step past its time limit, recovered by ``@catch_error``."""

    @step(soft_time_limit=1.0)
    def crawl(self, ev: SlowStart) -> StopEvent:
        import time

        time.sleep(min(ev.sleep_s, 3.0))
        return StopEvent(result="too late")

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(
            result={"error": type(ev.exception).__name__, "message": str(ev.exception)}
        )


class Suicidal(Workflow):
    """A step that kills its own worker process, every time."""

    @step
    async def die(self, ctx: Context, ev: StartEvent) -> StopEvent:
        record(ctx, "attempts", 0)
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return StopEvent(result="unreachable")


class Patient(Workflow):
    """A step that fails once and is retried after a delay longer than the visibility timeout."""

    @step(retry_policy=retry_policy(wait=wait_fixed(6.0), stop=stop_after_attempt(3)))
    async def wait_then_work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        import time

        record(ctx, "attempts", f"{time.time():.3f}")
        if first_time(ctx, "fail"):
            raise FlakyError("first attempt fails")
        return StopEvent(result="done after a long delay")


class Parked(Workflow):
    """Its one step is on a queue no worker consumes until a test adds a consumer."""

    @step(queue=PARKED_QUEUE)
    async def parked(self, ctx: Context, ev: StartEvent) -> StopEvent:
        record(ctx, "parked", 0)
        return StopEvent(result="unparked")


# --- bad input ----------------------------------------------------------------------------


class Secretive(Workflow):
    """Carries a secret in its start event and state, and holds its step for a while."""

    @step
    async def hold(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("secret", ev.get("secret"))
        ctx.write_event_to_stream(Hanging(pid=os.getpid(), step_name="hold"))
        await asyncio.sleep(float(ev.get("hold_s", 2.0)))
        return StopEvent(result="kept")


class Ledger(BaseModel):
    count: int = Field(default=0)
    owner: str = ""


class BadState(Workflow):
    """Steps that store what cannot be stored, reporting the error they got."""

    @step
    async def bad(self, ctx: Context[Ledger], ev: StartEvent) -> StopEvent:
        errors: dict[str, str] = {}
        try:
            async with ctx.store.edit_state() as state:
                state.count = "not a number"  # type: ignore[assignment]
        except Exception as exc:
            errors["typed"] = f"{type(exc).__name__}: {exc}"
        state = await ctx.store.get_state()
        return StopEvent(result={"errors": errors, "count": state.count})


class BadValue(Workflow):
    """A step that stores a value JSON cannot hold, reporting the error it got."""

    @step
    async def bad(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("kept", 1)
        try:
            await ctx.store.set("handle", object())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        return StopEvent(
            result={"error": error, "keys": sorted((await ctx.store.get_state()).keys())}
        )


relay = Relay(timeout=120)
handoff = Handoff(timeout=120)
locker = Locker(timeout=120)
contention = Contention(timeout=180)
echo = Echo(timeout=120)
doomed = Doomed(timeout=60)
rescued = Rescued(timeout=60)
slow = Slow(timeout=60)
slow_rescued = SlowRescued(timeout=60)
suicidal = Suicidal(timeout=120)
patient = Patient(timeout=60)
parked = Parked(timeout=60)
secretive = Secretive(timeout=60)
bad_state = BadState(timeout=60)
bad_value = BadValue(timeout=60)
