"""Behaviour of stalkflow.events: dict-like events, StopEvent, failures, the wire codec."""

from __future__ import annotations

import copy
import json
import pickle
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, PrivateAttr, ValidationError

from stalkflow.context.serializers import JsonSerializer
from stalkflow.errors import EventCodecError
from stalkflow.events import (
    Event,
    EventType,
    HumanResponseEvent,
    InputRequiredEvent,
    InternalDispatchEvent,
    SerializableEventType,
    StartEvent,
    StepFailedEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    UnhandledEvent,
    UnreconstructedException,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowIdleEvent,
    WorkflowTimedOutEvent,
    event_from_payload,
    event_to_payload,
)


class Greeting(Event):
    text: str
    _secret: str = PrivateAttr(default="none")


class Doubling(Event):
    """Processes a private value in its own __init__, as user events may."""

    _twice: int = PrivateAttr()

    def __init__(self, twice: int, **params: Any) -> None:
        super().__init__(**params)
        self._twice = twice * 2


class Point(BaseModel):
    x: int
    y: int


class Answer(StopEvent):
    text: str
    score: int


class FromFields(StopEvent):
    text: str

    def _get_result(self) -> Any:
        return self.text.upper()


class Holder(Event):
    inner: Event


class Outer:
    class NestedError(Exception):
        pass


class TwoArgError(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(first, second)


@pytest.fixture
def unimported_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of an importable module that nothing has imported yet."""
    name = "stalkflow_probe_events_mod"
    (tmp_path / f"{name}.py").write_text("class ProbeError(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# --- dict-like behaviour -------------------------------------------------------


def test_undeclared_kwargs_become_dynamic_keys() -> None:
    ev = Event(a=1, b="two")
    assert ev.a == 1
    assert ev["b"] == "two"
    assert ev.to_dict() == {"a": 1, "b": "two"}


def test_kwargs_are_split_into_fields_private_attrs_and_data() -> None:
    ev = Greeting(text="hi", _secret="s3", extra=5)
    assert ev.text == "hi"
    assert ev._secret == "s3"
    assert ev._data == {"extra": 5}
    assert Greeting(text="x")._secret == "none"


def test_subclass_init_can_process_private_attrs() -> None:
    ev = Doubling(twice=4, note="n")
    assert ev._twice == 8
    assert ev._data == {"note": "n"}


def test_declared_fields_are_validated() -> None:
    with pytest.raises(ValidationError):
        Greeting(text=object())


def test_missing_attribute_message() -> None:
    ev = Greeting(text="hi")
    with pytest.raises(AttributeError, match=r"^'Greeting' object has no attribute 'nope'$"):
        _ = ev.nope
    assert not hasattr(ev, "nope")


def test_setting_undeclared_names_writes_dynamic_keys() -> None:
    ev = Greeting(text="hi")
    ev.mood = "good"
    assert ev._data == {"mood": "good"}
    ev["mood"] = "better"
    assert ev.mood == "better"
    ev.text = "changed"
    assert ev.text == "changed"
    assert "text" not in ev


def test_mapping_api() -> None:
    ev = Event(a=1, b=2)
    assert ev.get("a") == 1
    assert ev.get("zz") is None
    assert ev.get("zz", "d") == "d"
    assert "a" in ev
    assert "zz" not in ev
    assert list(ev.keys()) == ["a", "b"]
    assert list(ev.values()) == [1, 2]
    assert list(ev.items()) == [("a", 1), ("b", 2)]
    assert len(ev) == 2
    assert list(ev) == ["a", "b"]
    with pytest.raises(KeyError):
        _ = ev["zz"]


def test_event_without_dynamic_keys_is_truthy() -> None:
    ev = Event()
    assert len(ev) == 0
    assert bool(ev) is True


def test_model_dump_adds_data_only_when_present() -> None:
    assert Greeting(text="hi").model_dump() == {"text": "hi"}
    assert Greeting(text="hi", a=1).model_dump() == {"text": "hi", "_data": {"a": 1}}
    assert Event(p=Point(x=1, y=2)).model_dump(mode="json") == {"_data": {"p": {"x": 1, "y": 2}}}


def test_equality_includes_dynamic_keys() -> None:
    assert Event(a=1) == Event(a=1)
    assert Event(a=1) != Event(a=2)


def test_copy_and_pickle_keep_dynamic_keys() -> None:
    ev = Greeting(text="hi", a=[1])
    clone = copy.deepcopy(ev)
    assert clone == ev
    assert clone.a is not ev.a
    assert pickle.loads(pickle.dumps(ev)) == ev


# --- StopEvent -----------------------------------------------------------------


def test_stop_event_result() -> None:
    assert StopEvent(result={"a": 1}).result == {"a": 1}
    assert StopEvent(7).result == 7
    assert StopEvent().result is None


def test_stop_event_dump_has_result_only_when_set() -> None:
    assert StopEvent(result="foo").model_dump() == {"result": "foo"}
    assert StopEvent().model_dump() == {}
    assert StopEvent(result=0).model_dump() == {"result": 0}


def test_stop_event_repr_and_str() -> None:
    assert repr(StopEvent(foo="foo", result=42)) == "StopEvent(foo='foo', result=42)"
    assert repr(Answer(text="t", score=1)) == "Answer(text='t', score=1)"
    assert repr(WorkflowCancelledEvent()) == "WorkflowCancelledEvent()"
    assert str(StopEvent(result=42)) == "42"


def test_custom_stop_event_fields() -> None:
    ev = Answer(text="t", score=3)
    assert (ev.text, ev.score, ev.result) == ("t", 3, None)
    assert ev.model_dump() == {"text": "t", "score": 3}


def test_get_result_can_be_overridden() -> None:
    assert FromFields(text="abc").result == "ABC"


# --- terminal, failure and internal events -------------------------------------


def test_terminal_events_are_stop_events() -> None:
    timed_out = WorkflowTimedOutEvent(timeout=30.0, active_steps=["a"])
    assert (timed_out.timeout, timed_out.active_steps) == (30.0, ["a"])
    for ev in (timed_out, WorkflowCancelledEvent()):
        assert isinstance(ev, StopEvent)


def test_workflow_failed_event_dump() -> None:
    ev = WorkflowFailedEvent(
        step_name="s", exception=RuntimeError("boom"), attempts=2, elapsed_seconds=0.5
    )
    assert ev.model_dump() == {
        "step_name": "s",
        "exception": {"exception_type": "builtins.RuntimeError", "exception_message": "boom"},
        "attempts": 2,
        "elapsed_seconds": 0.5,
    }
    assert "boom" in repr(ev)


def test_workflow_failed_event_attempts_are_optional() -> None:
    ev = WorkflowFailedEvent(step_name="s", exception=ValueError("v"))
    assert ev.attempts is None
    assert ev.elapsed_seconds is None


def test_json_serializer_round_trips_failure_with_its_exception_type() -> None:
    s = JsonSerializer()
    ev = WorkflowFailedEvent(step_name="s", exception=KeyError("k"), attempts=1, elapsed_seconds=1)
    back = s.deserialize(s.serialize(ev))
    assert type(back) is WorkflowFailedEvent
    assert type(back.exception) is KeyError


def test_nested_exception_class_is_rebuilt() -> None:
    ev = WorkflowFailedEvent(step_name="s", exception=Outer.NestedError("n"))
    back = WorkflowFailedEvent.model_validate(ev.model_dump())
    assert type(back.exception) is Outer.NestedError
    assert str(back.exception) == "n"


def test_exception_of_unimported_module_is_not_imported(unimported_module: str) -> None:
    record = {"exception_type": f"{unimported_module}.ProbeError", "exception_message": "m"}
    ev = WorkflowFailedEvent(step_name="s", exception=record)
    assert unimported_module not in sys.modules
    assert type(ev.exception) is UnreconstructedException
    assert str(ev.exception) == "m"
    assert ev.exception.original_type == f"{unimported_module}.ProbeError"
    # Written out again, it keeps the original type name for a later reader.
    assert ev.model_dump()["exception"]["exception_type"] == f"{unimported_module}.ProbeError"


def test_non_exception_names_are_never_called() -> None:
    ev = WorkflowFailedEvent(
        step_name="s", exception={"exception_type": "os.system", "exception_message": "exit 3"}
    )
    assert type(ev.exception) is UnreconstructedException
    assert ev.exception.original_type == "os.system"


def test_exception_that_needs_more_than_a_message_falls_back() -> None:
    record = {"exception_type": f"{__name__}.TwoArgError", "exception_message": "x"}
    exc = WorkflowFailedEvent(step_name="s", exception=record).exception
    assert type(exc) is UnreconstructedException
    assert isinstance(exc, Exception)


def test_malformed_exception_record_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        WorkflowFailedEvent(step_name="s", exception={"message": "no type"})


def _step_failed(input_event: Event) -> StepFailedEvent:
    return StepFailedEvent(
        step_name="work",
        input_event=input_event,
        exception=ValueError("bad"),
        attempts=3,
        elapsed_seconds=2.5,
        failed_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )


def test_step_failed_event_keeps_input_event_type_through_serializer() -> None:
    s = JsonSerializer()
    back = s.deserialize(s.serialize(_step_failed(Greeting(text="hi", n=1))))
    assert type(back) is StepFailedEvent
    assert back.input_event == Greeting(text="hi", n=1)
    assert back.failed_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_step_failed_event_rejects_a_non_event_input() -> None:
    with pytest.raises(ValidationError):
        _step_failed(Point(x=1, y=2))  # type: ignore[arg-type]


def test_internal_events() -> None:
    changed = StepStateChanged(
        name="s", step_state=StepState.RUNNING, worker_id="0", input_event_name="StartEvent"
    )
    assert changed.output_event_name is None
    assert isinstance(changed, InternalDispatchEvent)
    assert isinstance(WorkflowIdleEvent(), InternalDispatchEvent)
    assert [state.value for state in StepState] == ["preparing", "running", "not_running"]
    unhandled = UnhandledEvent(event_type="E", qualified_name="m.E", idle=True)
    assert unhandled.step_name is None
    with pytest.raises(ValidationError):
        UnhandledEvent(event_type="E", qualified_name="m.E")  # type: ignore[call-arg]


def test_hitl_events_carry_dynamic_keys() -> None:
    assert InputRequiredEvent(prefix="name? ").prefix == "name? "
    assert HumanResponseEvent(response="Ada")["response"] == "Ada"


def test_serializable_event_type_round_trips() -> None:
    class Waiter(BaseModel):
        waiting_for: SerializableEventType

    dumped = Waiter(waiting_for=Greeting).model_dump()
    assert dumped == {"waiting_for": f"{__name__}.Greeting"}
    assert Waiter.model_validate(dumped).waiting_for is Greeting
    with pytest.raises(ValidationError):
        Waiter.model_validate({"waiting_for": f"{__name__}.Point"})
    assert EventType == type[Event]


# --- the wire codec ------------------------------------------------------------


def _round_trip(ev: Event) -> Event:
    payload = event_to_payload(ev)
    wire = json.loads(json.dumps(payload))  # what actually crosses the broker
    back = event_from_payload(type(ev), wire)
    assert type(back) is type(ev)
    return back


def test_codec_plain_event_with_dynamic_keys() -> None:
    ev = Event(a=1, tags=["x"], nested={"k": [1, 2]})
    assert _round_trip(ev) == ev


def test_codec_start_event_kwargs() -> None:
    back = _round_trip(StartEvent(topic="t", n=3))
    assert (back.topic, back.n) == ("t", 3)


@pytest.mark.parametrize("result", [42, {"a": [1, {"b": None}]}, "s"])
def test_codec_stop_event_plain_results(result: Any) -> None:
    assert _round_trip(StopEvent(result=result)).result == result


def test_codec_stop_event_model_result_keeps_its_type() -> None:
    back = _round_trip(StopEvent(result=Point(x=1, y=2), note="n"))
    assert back.result == Point(x=1, y=2)
    assert back.note == "n"


def test_codec_models_in_dynamic_keys_keep_their_type() -> None:
    ev = Event(p=Point(x=3, y=4), points=[Point(x=0, y=0)], inner=Greeting(text="g", d=1))
    back = _round_trip(ev)
    assert back.p == Point(x=3, y=4)
    assert back.points == [Point(x=0, y=0)]
    assert back.inner == Greeting(text="g", d=1)


def test_codec_custom_stop_event_subclass() -> None:
    ev = Answer(text="t", score=9, extra="e")
    back = _round_trip(ev)
    assert back == ev
    assert back.extra == "e"
    assert event_to_payload(ev) == {"text": "t", "score": 9, "_data": {"extra": "e"}}


def test_codec_step_failed_event() -> None:
    ev = _step_failed(Greeting(text="hi", n=1))
    back = _round_trip(ev)
    assert back.input_event == Greeting(text="hi", n=1)
    assert type(back.exception) is ValueError
    assert str(back.exception) == "bad"
    assert back.failed_at == ev.failed_at
    assert (back.attempts, back.elapsed_seconds) == (3, 2.5)


def test_codec_workflow_failed_event() -> None:
    ev = WorkflowFailedEvent(
        step_name="s", exception=RuntimeError("boom"), attempts=2, elapsed_seconds=0.5
    )
    back = _round_trip(ev)
    assert type(back.exception) is RuntimeError
    assert str(back.exception) == "boom"
    assert (back.step_name, back.attempts, back.elapsed_seconds) == ("s", 2, 0.5)


def test_codec_keeps_dynamic_keys_of_events_inside_fields() -> None:
    payload = event_to_payload(Holder(inner=Event(a=1)))
    assert payload == {"inner": {"_data": {"a": 1}}}


def test_codec_omits_absent_result_and_data() -> None:
    assert event_to_payload(StopEvent()) == {}
    assert event_to_payload(Greeting(text="x")) == {"text": "x"}


def test_codec_refuses_values_json_cannot_hold() -> None:
    with pytest.raises(EventCodecError):
        event_to_payload(Event(thing=object()))


@pytest.mark.parametrize(
    "payload",
    [["not", "a", "dict"], {"_data": [1]}, {"text": 5}, {}],
    ids=["list", "data-not-dict", "wrong-type", "missing-field"],
)
def test_codec_rejects_malformed_payloads(payload: Any) -> None:
    with pytest.raises(EventCodecError):
        event_from_payload(Greeting, payload)


def test_codec_decodes_only_into_the_given_class() -> None:
    payload = event_to_payload(Greeting(text="hi"))
    payload["qualified_name"] = "stalkflow.events.StopEvent"
    back = event_from_payload(Greeting, payload)
    assert type(back) is Greeting


def test_codec_never_imports_modules_named_in_a_payload(unimported_module: str) -> None:
    payload = {
        "_data": {
            "m": {"__is_pydantic": True, "value": {}, "qualified_name": f"{unimported_module}.X"}
        }
    }
    with pytest.raises(EventCodecError):
        event_from_payload(Event, payload)
    assert unimported_module not in sys.modules


def test_codec_refuses_envelopes_naming_non_models() -> None:
    payload = {"result": {"__is_pydantic": True, "value": "x", "qualified_name": "os.system"}}
    with pytest.raises(EventCodecError):
        event_from_payload(StopEvent, payload)
