"""``ctx.store`` and ``Context`` serialization, through the public API.

Where stalkflow deliberately does better than upstream (no deadlock on get/set
inside ``edit_state``, copies from ``get_state``, eager serialization errors, no
partial writes from a failed ``edit_state``), the tests pin the better behaviour.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stalkflow import Context, Workflow, step
from stalkflow.context import JsonSerializer, PickleSerializer
from stalkflow.context.state_store import InMemoryStateStore
from stalkflow.errors import (
    ContextSerdeError,
    ContextStateError,
    StateSerializationError,
    WorkflowCancelledByUser,
)
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
)


class Tick(Event):
    n: int


class Tock(Event):
    n: int


class Counter(BaseModel):
    count: int = 0
    tags: list[str] = []


class Point:
    """Not JSON-serializable; picklable because it is defined at module level."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class NoopFlow(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="noop")


class CountingFlow(Workflow):
    """Increments ``count`` once per run and returns the new value."""

    @step
    async def bump(self, ctx: Context, ev: StartEvent) -> StopEvent:
        count = await ctx.store.get("count", default=0)
        await ctx.store.set("count", count + 1)
        return StopEvent(result=count + 1)


class TypedFlow(Workflow):
    @step
    async def bump(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            state.count += 1
            state.tags.append(f"run{state.count}")
        return StopEvent(result=state.count)


# --- get / set ------------------------------------------------------------------------


async def test_dotted_paths_defaults_and_missing_paths_inside_a_step() -> None:
    seen: dict[str, Any] = {}

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            store = ctx.store
            await store.set("user.profile.name", "ada")  # missing levels are created
            await store.set("items", [10, {"deep": "x"}, 30])
            seen["name"] = await store.get("user.profile.name")
            seen["profile"] = await store.get("user.profile")
            seen["item1"] = await store.get("items.1.deep")
            seen["item2"] = await store.get("items.2")
            seen["default"] = await store.get("user.age", default=36)
            seen["none_default"] = await store.get("nope.nothing", default=None)
            with pytest.raises(ValueError, match=r"Path 'user\.age' not found in state"):
                await store.get("user.age")
            with pytest.raises(ValueError, match="not found in state"):
                await store.get("items.9")
            return StopEvent()

    await Flow(timeout=5).run()
    assert seen == {
        "name": "ada",
        "profile": {"name": "ada"},
        "item1": "x",
        "item2": 30,
        "default": 36,
        "none_default": None,
    }


async def test_keys_named_like_dict_methods_are_ordinary_keys() -> None:
    ctx: Context = Context(NoopFlow(timeout=5))
    store = ctx.store
    assert await store.get("items", default=[]) == []
    with pytest.raises(ValueError, match="Path 'keys' not found in state"):
        await store.get("keys")
    await store.set("items", [{"sku": "a"}, {"sku": "b"}])
    await store.set("get.nested", 1)
    assert await store.get("items") == [{"sku": "a"}, {"sku": "b"}]
    assert await store.get("items.1.sku") == "b"
    assert await store.get("get") == {"nested": 1}


async def test_get_empty_path_returns_the_state_and_set_empty_path_fails() -> None:
    ctx: Context = Context(NoopFlow(timeout=5))
    await ctx.store.set("a", 1)
    state = await ctx.store.get("")
    assert state["a"] == 1
    assert state.a == 1
    with pytest.raises(ValueError, match="Path cannot be empty"):
        await ctx.store.set("", 5)


async def test_get_state_returns_an_isolated_copy() -> None:
    ctx: Context = Context(NoopFlow(timeout=5))
    await ctx.store.set("nested", {"list": [1]})
    copy = await ctx.store.get_state()
    copy["nested"]["list"].append(2)
    copy["extra"] = True
    assert await ctx.store.get("nested") == {"list": [1]}
    assert await ctx.store.get("extra", default="absent") == "absent"


async def test_typed_get_state_copy_isolation_and_set_state_and_clear() -> None:
    wf = TypedFlow(timeout=5)
    ctx: Context[Counter] = Context(wf)
    assert ctx.store.state_type is Counter
    await ctx.store.set_state(Counter(count=5, tags=["a"]))
    copy = await ctx.store.get_state()
    assert isinstance(copy, Counter)
    copy.count = 100
    copy.tags.append("leak")
    assert await ctx.store.get("count") == 5
    assert await ctx.store.get("tags") == ["a"]
    with pytest.raises(ValueError, match="State must be of type Counter"):
        await ctx.store.set_state({"count": 1})  # type: ignore[arg-type]
    await ctx.store.clear()
    assert await ctx.store.get_state() == Counter()


async def test_untyped_set_state_and_clear_in_a_step() -> None:
    from stalkflow.context.state_store import DictState

    seen: list[Any] = []

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("old", 1)
            await ctx.store.set_state(DictState(fresh=2))
            seen.append(await ctx.store.get("old", default="gone"))
            seen.append(await ctx.store.get("fresh"))
            await ctx.store.clear()
            seen.append(await ctx.store.get("fresh", default="cleared"))
            return StopEvent()

    await Flow(timeout=5).run()
    assert seen == ["gone", 2, "cleared"]


# --- edit_state -----------------------------------------------------------------------


async def test_edit_state_untyped_writes_the_block_result() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("count", 1)
            async with ctx.store.edit_state() as state:
                state.count = state.count + 10
                state["label"] = "edited"
            return StopEvent(result=(await ctx.store.get("count"), await ctx.store.get("label")))

    assert await Flow(timeout=5).run() == (11, "edited")


async def test_edit_state_typed_state_across_runs() -> None:
    wf = TypedFlow(timeout=5)
    ctx: Context[Counter] = Context(wf)
    assert await wf.run(ctx=ctx) == 1
    assert await wf.run(ctx=ctx) == 2
    state = await ctx.store.get_state()
    assert state == Counter(count=2, tags=["run1", "run2"])


async def test_concurrent_edit_state_from_50_steps_loses_no_increment() -> None:
    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Tick | None:
            await ctx.store.set("count", 0)
            for n in range(50):
                ctx.send_event(Tick(n=n))
            return None

        @step(num_workers=50)
        async def increment(self, ctx: Context, ev: Tick) -> Tock:
            async with ctx.store.edit_state() as state:
                current = state.count
                await asyncio.sleep(0)  # let the other 49 executions try to interleave
                state.count = current + 1
            return Tock(n=ev.n)

        @step
        async def join(self, ctx: Context, ev: Tock) -> StopEvent | None:
            if ctx.collect_events(ev, [Tock] * 50) is None:
                return None
            return StopEvent(result=await ctx.store.get("count"))

    assert await Flow(timeout=10).run() == 50


async def test_concurrent_set_of_50_different_keys_loses_nothing() -> None:
    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Tick | None:
            for n in range(50):
                ctx.send_event(Tick(n=n))
            return None

        @step(num_workers=50)
        async def write(self, ctx: Context, ev: Tick) -> Tock:
            await asyncio.sleep(0)
            await ctx.store.set(f"key{ev.n}", ev.n)
            await ctx.store.set(f"shared.k{ev.n}", ev.n * 2)
            return Tock(n=ev.n)

        @step
        async def join(self, ctx: Context, ev: Tock) -> StopEvent | None:
            if ctx.collect_events(ev, [Tock] * 50) is None:
                return None
            return StopEvent()

    handler = Flow(timeout=10).run()
    await handler
    store = handler.ctx.store
    assert [await store.get(f"key{n}") for n in range(50)] == list(range(50))
    assert await store.get("shared") == {f"k{n}": n * 2 for n in range(50)}


async def test_set_from_another_step_during_edit_state_is_not_lost() -> None:
    holding = asyncio.Event()
    release = asyncio.Event()

    class Holder(Event):
        pass

    class Setter(Event):
        pass

    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Holder | Setter | None:
            ctx.send_event(Holder())
            ctx.send_event(Setter())
            return None

        @step
        async def hold(self, ctx: Context, ev: Holder) -> Tock:
            async with ctx.store.edit_state() as state:
                state.from_edit = "edit"
                holding.set()
                await release.wait()
            return Tock(n=1)

        @step
        async def setter(self, ctx: Context, ev: Setter) -> Tock:
            await holding.wait()
            # the edit block holds the state now: this write must not be overwritten
            writer = asyncio.ensure_future(ctx.store.set("from_set", "set"))
            await asyncio.sleep(0.01)
            release.set()
            await writer
            return Tock(n=2)

        @step
        async def join(self, ctx: Context, ev: Tock) -> StopEvent | None:
            if ctx.collect_events(ev, [Tock, Tock]) is None:
                return None
            return StopEvent(
                result=(await ctx.store.get("from_edit"), await ctx.store.get("from_set"))
            )

    assert await asyncio.wait_for(Flow(timeout=5).run(), 4) == ("edit", "set")


async def test_handler_side_writes_during_the_run_are_visible_to_steps() -> None:
    entered = asyncio.Event()
    gate = asyncio.Event()

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("step_wrote", 1)
            entered.set()
            await gate.wait()
            return StopEvent(result=await ctx.store.get("handler_wrote"))

    handler = Flow(timeout=5).run()
    await asyncio.wait_for(entered.wait(), 3)
    assert await handler.ctx.store.get("step_wrote") == 1
    await handler.ctx.store.set("handler_wrote", "from outside")
    gate.set()
    assert await handler == "from outside"


async def test_get_and_set_inside_edit_state_do_not_deadlock() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            async with ctx.store.edit_state() as state:
                state.a = 1
                inner_a = await ctx.store.get("a")
                await ctx.store.set("b", 2)
                inner_b = state.b
            return StopEvent(
                result=(inner_a, inner_b, await ctx.store.get("a"), await ctx.store.get("b"))
            )

    result = await asyncio.wait_for(Flow(timeout=5).run(), 3)
    assert result == (1, 2, 1, 2)


async def test_set_state_and_clear_inside_edit_state_do_not_deadlock() -> None:
    from stalkflow.context.state_store import DictState

    ctx: Context = Context(NoopFlow(timeout=5))

    async def edit() -> None:
        async with ctx.store.edit_state() as state:
            state.old = 1
            await ctx.store.clear()
            assert await ctx.store.get("old", default="cleared") == "cleared"
            await ctx.store.set_state(DictState(replaced=True))
            state.added = "after"

    await asyncio.wait_for(edit(), 3)
    assert await ctx.store.get("old", default=None) is None
    assert await ctx.store.get("replaced") is True
    assert await ctx.store.get("added") == "after"

    typed: Context[Counter] = Context(TypedFlow(timeout=5))

    async def edit_typed() -> None:
        async with typed.store.edit_state() as state:
            state.count = 5
            await typed.store.set_state(Counter(count=7, tags=["x"]))
            state.count += 1

    await asyncio.wait_for(edit_typed(), 3)
    assert await typed.store.get_state() == Counter(count=8, tags=["x"])


async def test_exception_inside_edit_state_writes_nothing() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("count", 1)
            with pytest.raises(RuntimeError, match="abort"):
                async with ctx.store.edit_state() as state:
                    state.count = 99
                    state.added = "x"
                    await ctx.store.set("via_set", True)
                    raise RuntimeError("abort")
            return StopEvent(
                result=(
                    await ctx.store.get("count"),
                    await ctx.store.get("added", default=None),
                    await ctx.store.get("via_set", default=None),
                )
            )

    assert await Flow(timeout=5).run() == (1, None, None)


async def test_edit_state_lock_is_released_after_an_exception() -> None:
    ctx: Context = Context(NoopFlow(timeout=5))
    with pytest.raises(KeyError):
        async with ctx.store.edit_state():
            raise KeyError("x")

    async def edit() -> None:
        async with ctx.store.edit_state() as state:
            state.after = True

    await asyncio.wait_for(edit(), 2)
    assert await ctx.store.get("after") is True


# --- typed state validation -----------------------------------------------------------


async def test_typed_state_rejects_bad_values_via_set_and_edit_state() -> None:
    errors: list[BaseException] = []

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context[Counter], ev: StartEvent) -> StopEvent:
            await ctx.store.set("count", 3)
            try:
                await ctx.store.set("count", "not a number")
            except ValidationError as exc:
                errors.append(exc)
            try:
                async with ctx.store.edit_state() as state:
                    state.count = "also not a number"  # type: ignore[assignment]
            except ValidationError as exc:
                errors.append(exc)
            return StopEvent(result=await ctx.store.get_state())

    result = await Flow(timeout=5).run()
    assert len(errors) == 2
    assert all(isinstance(e, ValidationError) for e in errors)
    assert result == Counter(count=3)


async def test_typed_state_unknown_field_is_rejected() -> None:
    ctx: Context[Counter] = Context(TypedFlow(timeout=5))
    with pytest.raises((ValueError, ValidationError)):
        await ctx.store.set("not_a_field", 1)
    assert await ctx.store.get_state() == Counter()


# --- serializability of values --------------------------------------------------------


@pytest.mark.parametrize("value", [object(), lambda: 1, {1, 2}], ids=["object", "lambda", "set"])
async def test_set_of_non_serializable_value_fails_at_once_naming_the_key(value: Any) -> None:
    errors: list[BaseException] = []

    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.store.set("connection", value)
            except ValueError as exc:
                errors.append(exc)
            return StopEvent(result=await ctx.store.get("connection", default="unset"))

    handler = Flow(timeout=5).run()
    assert await handler == "unset"
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, StateSerializationError)
    assert "connection" in str(error)
    assert error.key == "connection"
    # nothing poisoned the state: the context still exports
    assert handler.ctx.to_dict()["state"]["state_data"]["_data"] == {}


async def test_set_of_non_serializable_value_before_run_fails_too() -> None:
    ctx: Context = Context(NoopFlow(timeout=5))
    with pytest.raises(StateSerializationError, match="client"):
        await ctx.store.set("client", object())


# --- state across the run's lifetime --------------------------------------------------


async def test_state_seeded_before_run_is_visible_in_the_step() -> None:
    class Flow(Workflow):
        @step
        async def read(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=await ctx.store.get("seed.value"))

    wf = Flow(timeout=5)
    ctx: Context = Context(wf)
    await ctx.store.set("seed", {"value": 41})
    handler = wf.run(ctx=ctx)
    assert handler.ctx is ctx
    assert await handler == 41


async def test_state_is_readable_via_handler_ctx_after_run_and_after_failure() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("progress", "half")
            if ev.get("fail"):
                raise RuntimeError("stop here")
            return StopEvent(result="ok")

    wf = Flow(timeout=5)
    ok = wf.run()
    await ok
    assert await ok.ctx.store.get("progress") == "half"

    failing = wf.run(fail=True)
    with pytest.raises(RuntimeError, match="stop here"):
        await failing
    assert await failing.ctx.store.get("progress") == "half"


async def test_completed_context_reruns_with_a_new_start_event_and_keeps_state() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf)
    first = wf.run(ctx=ctx)
    assert await first == 1
    second = wf.run(ctx=ctx)
    assert await second == 2
    assert second.run_id != first.run_id
    assert await ctx.store.get("count") == 2


async def test_running_a_context_whose_run_is_in_progress_raises() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Flow(Workflow):
        @step
        async def hold(self, ev: StartEvent) -> StopEvent:
            entered.set()
            await gate.wait()
            return StopEvent(result="first")

    wf = Flow(timeout=5)
    ctx: Context = Context(wf)
    handler = wf.run(ctx=ctx)
    await asyncio.wait_for(entered.wait(), 3)
    with pytest.raises(ContextStateError, match="already running"):
        wf.run(ctx=ctx)
    gate.set()
    assert await handler == "first"


# --- to_dict / from_dict --------------------------------------------------------------


async def test_to_dict_from_dict_round_trip_untyped() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf)
    await wf.run(ctx=ctx)
    await wf.run(ctx=ctx)

    data = ctx.to_dict()
    assert json.loads(data["state"]["state_data"]["_data"]["count"]) == 2
    assert data["is_running"] is False
    json.dumps(data)  # the whole export is JSON-compatible

    restored: Context = Context.from_dict(wf, data)
    assert await restored.store.get("count") == 2
    assert await wf.run(ctx=restored) == 3


async def test_to_dict_without_state_restores_to_a_fresh_store() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf)
    await wf.run(ctx=ctx)

    data = ctx.to_dict(include_state=False)
    assert data["state"] == {}
    assert Context(wf).to_dict(include_state=False)["state"] == {}

    restored: Context = Context.from_dict(wf, json.loads(json.dumps(data)))
    assert await restored.store.get("count", default=None) is None
    assert await wf.run(ctx=restored) == 1
    assert await wf.run(ctx=Context.from_dict(wf, ctx.to_dict())) == 2


async def test_to_dict_from_dict_round_trip_typed() -> None:
    wf = TypedFlow(timeout=5)
    ctx: Context[Counter] = Context(wf)
    await wf.run(ctx=ctx)
    await wf.run(ctx=ctx)

    data = ctx.to_dict()
    state_json = json.loads(data["state"]["state_data"])
    assert state_json["value"]["count"] == 2
    assert state_json["value"]["tags"] == ["run1", "run2"]
    assert data["state"]["state_type"] == "Counter"

    restored: Context[Counter] = Context.from_dict(wf, json.loads(json.dumps(data)))
    assert await restored.store.get_state() == Counter(count=2, tags=["run1", "run2"])
    assert await wf.run(ctx=restored) == 3


async def test_to_dict_before_any_run_is_upstreams_initial_snapshot() -> None:
    wf = NoopFlow(timeout=5)
    data = Context(wf).to_dict()
    assert data == {
        "version": 2,
        "state": {},
        "is_running": False,
        "workers": {
            "only": {
                "queue": [],
                "in_progress": [],
                "collected_events": {},
                "collect_generations": {},
                "static_collect_events": [],
                "collected_waiters": [],
            }
        },
        "stream_seq": 0,
        "work_item_seq": 0,
        "invocation_seq": 0,
        "deliveries": [],
        "streams": {},
        "collection_release_states": {},
        "elapsed_alive": 0.0,
        "last_alive_stamp": None,
        "journal_seq": 0,
    }
    restored: Context = Context.from_dict(wf, json.loads(json.dumps(data)))
    assert restored.is_running is False
    assert await wf.run(ctx=restored) == "noop"


async def test_to_dict_before_run_carries_the_staged_state_into_the_next_run() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf)
    await ctx.store.set("count", 40)
    data = ctx.to_dict()
    assert data["state"]["state_data"] == {"_data": {"count": "40"}}
    assert await wf.run(ctx=Context.from_dict(wf, data)) == 41


async def test_to_dict_of_a_restored_context_before_run_includes_later_writes() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf)
    await wf.run(ctx=ctx)
    restored: Context = Context.from_dict(wf, ctx.to_dict())
    await restored.store.set("note", "kept")
    data = restored.to_dict()
    assert data["state"]["state_data"] == {"_data": {"count": "1", "note": '"kept"'}}
    again: Context = Context.from_dict(wf, data)
    assert await wf.run(ctx=again) == 2
    assert await again.store.get("note") == "kept"


async def test_from_dict_skips_steps_the_workflow_does_not_have() -> None:
    class Other(Workflow):
        @step
        async def check(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=f"{await ctx.store.get('count')}-{await ctx.store.get('add')}")

    counting = CountingFlow(timeout=5)
    ctx: Context = Context(counting)
    await counting.run(ctx=ctx)
    data = ctx.to_dict()
    data["workers"]["retired"] = {"queue": ["not even an event"]}
    other = Other(timeout=5)
    moved: Context = Context.from_dict(other, data)
    await moved.store.set("add", "new")
    assert list(moved.to_dict()["workers"]) == ["check"]
    assert await other.run(ctx=moved) == "1-new"


@pytest.mark.parametrize("store_type", ["sql", 5])
def test_in_memory_state_store_from_dict_refuses_other_store_types(store_type: object) -> None:
    with pytest.raises(ValueError) as caught:
        InMemoryStateStore.from_dict({"store_type": store_type, "state_data": {}}, JsonSerializer())
    assert str(caught.value) == (
        f"Cannot parse store_type '{store_type}' as InMemorySerializedState. "
        "Use the appropriate store's from_dict() method."
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"version": 1, "state": {}, "is_running": False, "workers": "not a dict"},
        {"version": 1, "state": "nope", "workers": {}},
        {"version": 1, "is_running": True, "workers": {"only": {"queue": [{"attempts": 0}]}}},
        {"version": 1, "is_running": True, "workers": {"only": {"queue": ["{not json"]}}},
        {"version": 99},
    ],
    ids=["workers-type", "state-type", "missing-event", "bad-event", "version"],
)
def test_from_dict_of_garbage_raises_context_serde_error(payload: dict[str, Any]) -> None:
    with pytest.raises(ContextSerdeError):
        Context.from_dict(NoopFlow(timeout=5), payload)


async def test_pickle_serializer_opt_in_stores_a_non_json_value() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.store.set("point", Point(1, 2))
            await ctx.store.set("plain", 7)
            return StopEvent(result="stored")

    wf = Flow(timeout=5)
    ctx: Context = Context(wf, serializer=PickleSerializer())
    assert await wf.run(ctx=ctx) == "stored"
    assert await ctx.store.get("point") == Point(1, 2)

    data = ctx.to_dict(serializer=PickleSerializer())
    assert json.loads(data["state"]["state_data"]["_data"]["plain"]) == 7
    restored: Context = Context.from_dict(wf, data, serializer=PickleSerializer())
    assert await restored.store.get("point") == Point(1, 2)


async def test_pickle_serializer_opt_in_before_run() -> None:
    wf = CountingFlow(timeout=5)
    ctx: Context = Context(wf, serializer=PickleSerializer())
    await ctx.store.set("point", Point(3, 4))
    assert await wf.run(ctx=ctx) == 1
    assert await ctx.store.get("point") == Point(3, 4)


# --- snapshots taken mid-run ----------------------------------------------------------


async def test_mid_run_snapshot_resumes_without_a_new_start_event() -> None:
    starts = 0
    middles = 0
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Middle(Event):
        label: str

    class Flow(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Middle:
            nonlocal starts
            starts += 1
            await ctx.store.set("begun", starts)
            return Middle(label=ev.get("label", "none"))

        @step
        async def middle(self, ctx: Context, ev: Middle) -> StopEvent:
            nonlocal middles
            middles += 1
            if middles == 1:
                entered.set()
                await gate.wait()  # the first execution is frozen here
            return StopEvent(result=f"{ev.label}:{await ctx.store.get('begun')}")

    wf = Flow(timeout=10)
    handler = wf.run(label="resumed")
    await asyncio.wait_for(entered.wait(), 3)

    data = handler.ctx.to_dict()
    assert data["is_running"] is True
    json.dumps(data)

    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler

    restored: Context = Context.from_dict(wf, json.loads(json.dumps(data)))
    resumed = wf.run(ctx=restored)
    assert await asyncio.wait_for(resumed, 5) == "resumed:1"
    assert starts == 1
    assert middles == 2


async def test_mid_run_snapshot_keeps_a_partly_filled_collect_buffer() -> None:
    starts = 0
    slow_runs = 0
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Fast(Event):
        n: int

    class Slow(Event):
        pass

    class Result(Event):
        label: str

    class Flow(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Fast | Slow | None:
            nonlocal starts
            starts += 1
            ctx.send_event(Fast(n=1))
            ctx.send_event(Fast(n=2))
            ctx.send_event(Slow())
            return None

        @step
        async def fast(self, ev: Fast) -> Result:
            return Result(label=f"fast{ev.n}")

        @step
        async def slow(self, ev: Slow) -> Result:
            nonlocal slow_runs
            slow_runs += 1
            if slow_runs == 1:
                entered.set()
                await gate.wait()
            return Result(label="slow")

        @step
        async def join(self, ctx: Context, ev: Result) -> StopEvent | None:
            got = ctx.collect_events(ev, [Result, Result, Result])
            if got is None:
                return None
            return StopEvent(result=sorted(r.label for r in got))

    wf = Flow(timeout=10)
    handler = wf.run()
    await asyncio.wait_for(entered.wait(), 3)
    finished_joins = 0
    async for event in handler.stream_events(expose_internal=True):
        if (
            isinstance(event, StepStateChanged)
            and event.name == "join"
            and event.step_state is StepState.NOT_RUNNING
        ):
            finished_joins += 1
            if finished_joins == 2:  # both fast results are buffered and committed
                break

    data = handler.ctx.to_dict()
    assert data["workers"]["join"]["collected_events"]["default"]
    await handler.cancel_run()

    resumed = wf.run(ctx=Context.from_dict(wf, json.loads(json.dumps(data))))
    assert await asyncio.wait_for(resumed, 5) == ["fast1", "fast2", "slow"]
    assert starts == 1
    assert slow_runs == 2


class Fan(Event):
    n: int


class Res(Event):
    label: str


def collecting_flow(
    *, hold_fast2: bool, pause_join: Callable[[list[Event] | None, int], bool]
) -> Workflow:
    """``begin`` sends three ``Fan``; ``fast`` answers each with a ``Res``; ``join`` collects 3.

    With ``hold_fast2`` the first execution of ``fast(n=2)`` never finishes. ``join``
    blocks forever right after its ``collect_events`` call when ``pause_join(got, call)``
    says so (standing for any ``await`` a step makes after collecting).
    """
    never = asyncio.Event()
    calls = {"fast2": 0, "join": 0}

    class Flow(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Fan | None:
            for n in range(3):
                ctx.send_event(Fan(n=n))
            return None

        @step
        async def fast(self, ev: Fan) -> Res:
            if ev.n == 2 and hold_fast2:
                calls["fast2"] += 1
                if calls["fast2"] == 1:
                    await never.wait()
            return Res(label=f"r{ev.n}")

        @step
        async def join(self, ctx: Context, ev: Res) -> StopEvent | None:
            calls["join"] += 1
            got = ctx.collect_events(ev, [Res] * 3)
            if pause_join(got, calls["join"]):
                await never.wait()
            if got is None:
                return None
            return StopEvent(result=sorted(r.label for r in got))

    return Flow(timeout=3)


async def snapshot_while_join_is_paused(wf: Workflow, paused: asyncio.Event) -> dict[str, Any]:
    handler = wf.run()
    await asyncio.wait_for(paused.wait(), 3)
    data = handler.ctx.to_dict()
    await handler.cancel_run()
    return json.loads(json.dumps(data))


async def test_snapshot_while_a_collecting_step_is_in_progress_does_not_double_count() -> None:
    paused = asyncio.Event()

    def pause(got: list[Event] | None, call: int) -> bool:
        if got is None and call == 2:  # r0 and r1 are buffered; the r1 execution pauses
            paused.set()
            return True
        return False

    wf = collecting_flow(hold_fast2=True, pause_join=pause)
    data = await snapshot_while_join_is_paused(wf, paused)
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    assert await asyncio.wait_for(resumed, 3) == ["r0", "r1", "r2"]


async def test_snapshot_while_the_completing_collect_step_is_in_progress_resumes() -> None:
    paused = asyncio.Event()

    def pause(got: list[Event] | None, call: int) -> bool:
        if got is not None and not paused.is_set():  # the set is complete; pause once
            paused.set()
            return True
        return False

    wf = collecting_flow(hold_fast2=False, pause_join=pause)
    data = await snapshot_while_join_is_paused(wf, paused)
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    assert await asyncio.wait_for(resumed, 3) == ["r0", "r1", "r2"]


async def test_mid_run_snapshot_with_pending_waiter_resumes_the_conversation() -> None:
    starts = 0
    asks = 0

    class Flow(Workflow):
        @step
        async def begin(self, ctx: Context, ev: StartEvent) -> Tick:
            nonlocal starts
            starts += 1
            return Tick(n=starts)

        @step
        async def ask(self, ctx: Context, ev: Tick) -> StopEvent:
            nonlocal asks
            asks += 1
            answer = await ctx.wait_for_event(
                HumanResponseEvent,
                waiter_event=InputRequiredEvent(prefix="name?"),
                timeout=5,
            )
            return StopEvent(result=f"hello {answer.response} (start {ev.n})")

    wf = Flow(timeout=10)
    handler = wf.run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            break
    data = handler.ctx.to_dict()
    assert data["is_running"] is True
    await handler.cancel_run()

    restored: Context = Context.from_dict(wf, json.loads(json.dumps(data)))
    resumed = wf.run(ctx=restored)
    async for event in resumed.stream_events():
        if isinstance(event, InputRequiredEvent):
            assert event.prefix == "name?"
            await resumed.send_event(HumanResponseEvent(response="ada"))
        if isinstance(event, StopEvent):
            break
    assert await asyncio.wait_for(resumed, 5) == "hello ada (start 1)"
    assert starts == 1
