"""The wire codec: values round-trip as JSON, and only accepted event types are decoded."""

from __future__ import annotations

import pickle
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from stalkflow.core.codec import EventCodec, type_name
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import EventCodecError
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    WorkflowFailedEvent,
)


class Ping(Event):
    n: int = 0


class Answer(Event):
    text: str = ""


class Unregistered(Event):
    """Loaded in this process, but registered for no workflow."""


class Reply(HumanResponseEvent):
    """A client's own human-input event: accepted without registration."""

    text: str = ""


class Outer:
    class Nested(Event):
        value: int = 0


REGISTRY: dict[str, Mapping[str, type[Event]]] = {
    "flow": {type_name(kind): kind for kind in (Ping, Answer)},
}


def lookup(name: str) -> Mapping[str, type[Event]]:
    return REGISTRY[name]  # a KeyError (LookupError) for an unknown workflow


@pytest.fixture
def codec() -> EventCodec:
    return EventCodec(lookup)


def wire(codec: EventCodec, value: dict[str, Any]) -> Any:
    """What arrives on the other side: the value through JSON text."""
    return codec.loads(codec.dumps(value))


def delivery(event: Event | None = None, **fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "workflow": "flow",
        "step": "a",
        "event": event if event is not None else Ping(n=1),
        "delivery_id": "d-1",
        **fields,
    }
    return Delivery(**values)


# --- events --------------------------------------------------------------------------


def test_an_event_travels_as_its_type_name_and_payload(codec: EventCodec) -> None:
    encoded = codec.encode_event(Ping(n=3, topic="x"))

    assert encoded["type"] == f"{__name__}.Ping"
    assert encoded["data"]["n"] == 3
    decoded = codec.decode_event("flow", wire(codec, encoded))
    assert type(decoded) is Ping
    assert decoded == Ping(n=3, topic="x")
    assert decoded.topic == "x"


def test_stalkflow_events_decode_for_any_workflow(codec: EventCodec) -> None:
    events: list[Event] = [
        StartEvent(question="q"),
        StopEvent(result={"answer": [1, 2]}),
        StepStateChanged(
            name="a", step_state=StepState.RUNNING, worker_id="0", input_event_name="Ping"
        ),
        WorkflowFailedEvent(step_name="a", exception=ValueError("boom"), attempts=2),
    ]
    for event in events:
        decoded = codec.decode_event("unknown-workflow", wire(codec, codec.encode_event(event)))
        assert type(decoded) is type(event)
    stop = codec.decode_event("flow", wire(codec, codec.encode_event(events[1])))
    assert isinstance(stop, StopEvent) and stop.result == {"answer": [1, 2]}


def test_an_unregistered_type_is_rejected_by_the_strict_codec(codec: EventCodec) -> None:
    encoded = wire(codec, codec.encode_event(Unregistered()))

    with pytest.raises(EventCodecError, match=r"Unregistered.*not registered"):
        codec.decode_event("flow", encoded)
    with pytest.raises(EventCodecError, match="Ping"):
        codec.decode_event("no-such-workflow", wire(codec, codec.encode_event(Ping())))


def test_the_permissive_codec_accepts_loaded_event_classes() -> None:
    codec = EventCodec.permissive()

    for event in (Unregistered(), Ping(n=2), Outer.Nested(value=4)):
        decoded = codec.decode_event("any", wire(codec, codec.encode_event(event)))
        assert decoded == event


def test_human_response_subclasses_are_accepted_without_registration(codec: EventCodec) -> None:
    decoded = codec.decode_event("flow", wire(codec, codec.encode_event(Reply(text="yes"))))

    assert decoded == Reply(text="yes")


def test_known_types_given_by_the_caller_are_accepted(codec: EventCodec) -> None:
    encoded = wire(codec, codec.encode_event(Unregistered()))

    decoded = codec.decode_event("flow", encoded, known={type_name(Unregistered): Unregistered})

    assert type(decoded) is Unregistered


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_a_type_name_that_is_no_event_class_is_rejected(codec: EventCodec, name: str) -> None:
    for strict_or_not in (codec, EventCodec.permissive()):
        with pytest.raises(EventCodecError, match=name.replace(".", r"\.")):
            strict_or_not.decode_event("flow", {"type": name, "data": {}})


def test_an_unknown_type_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A module that could be imported, and would announce it if it were.
    module = f"stalkflow_codec_probe_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('yes')\n"
        "from stalkflow.events import Event\n"
        "class Evil(Event):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    for codec in (EventCodec(lookup), EventCodec.permissive()):
        with pytest.raises(EventCodecError, match=f"{module}.Evil"):
            codec.decode_event("flow", {"type": f"{module}.Evil", "data": {}})
        with pytest.raises(EventCodecError):
            codec.decode_event("flow", {"type": "some_unimported_module.Evil", "data": {}})

    assert module not in sys.modules
    assert "some_unimported_module" not in sys.modules
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj",
    [
        None,
        "Ping",
        ["Ping", {}],
        {"data": {}},
        {"type": 3, "data": {}},
        {"type": f"{__name__}.Ping"},
        {"type": f"{__name__}.Ping", "data": "n=1"},
        {"type": f"{__name__}.Ping", "data": {"n": "not a number"}},
        {"type": f"{__name__}.Ping", "data": {"_data": [1, 2]}},
    ],
)
def test_a_malformed_event_raises_event_codec_error(codec: EventCodec, obj: Any) -> None:
    with pytest.raises(EventCodecError):
        codec.decode_event("flow", obj)


def test_an_event_json_cannot_hold_fails_to_encode(codec: EventCodec) -> None:
    with pytest.raises(EventCodecError):
        codec.dumps(codec.encode_event(Ping(handle=object())))


# --- deliveries, waiters, run records ------------------------------------------------


def test_a_delivery_round_trips_with_every_field(codec: EventCodec) -> None:
    original = delivery(
        Ping(n=7, extra="x"),
        attempt=3,
        first_attempt_at=1000.125,
        last_error=ErrorInfo("builtins.ValueError", "boom", step="a", traceback="tb"),
        last_failed_at=1001.5,
        resolved={"w0": Answer(text="yes"), "w1": None},
        expires_waiter="w2",
        recoveries={"recover": 2},
    )

    decoded = codec.decode_delivery(wire(codec, codec.encode_delivery(original)))

    assert decoded == original
    assert decoded.last_error is not None and decoded.last_error.traceback == "tb"
    assert type(decoded.resolved["w0"]) is Answer


def test_a_minimal_delivery_round_trips(codec: EventCodec) -> None:
    original = delivery()

    assert codec.decode_delivery(wire(codec, codec.encode_delivery(original))) == original


def test_a_waiter_round_trips_with_its_event_type_by_name(codec: EventCodec) -> None:
    original = Waiter(
        waiter_id="w1",
        event_type=Answer,
        requirements={"text": "yes", "n": [1, 2]},
        delivery=delivery(resolved={"w0": None}),
        timeout_s=30.0,
    )

    encoded = codec.encode_waiter(original)
    decoded = codec.decode_waiter(wire(codec, encoded))

    assert encoded["event_type"] == type_name(Answer)
    assert decoded == original
    assert decoded.event_type is Answer


def test_a_waiter_for_an_unregistered_type_is_rejected(codec: EventCodec) -> None:
    encoded = codec.encode_waiter(Waiter("w1", Unregistered, {}, delivery()))

    with pytest.raises(EventCodecError, match="Unregistered"):
        codec.decode_waiter(wire(codec, encoded))


def test_a_waiter_whose_requirements_json_cannot_hold_fails_to_encode(codec: EventCodec) -> None:
    waiter = Waiter("w1", Answer, {"when": object()}, delivery())

    with pytest.raises(EventCodecError):
        codec.dumps(codec.encode_waiter(waiter))


def test_a_run_record_round_trips_with_result_and_error(codec: EventCodec) -> None:
    records = [
        RunRecord("run-1", "flow", created_at=1.5, updated_at=2.5, deadline=46.5, timeout_s=45.0),
        RunRecord(
            "run-2",
            "flow",
            status=RunStatus.COMPLETED,
            created_at=1.0,
            updated_at=3.0,
            result=StopEvent(result={"total": 3}),
            hitl=True,
        ),
        RunRecord(
            "run-3",
            "flow",
            status=RunStatus.FAILED,
            error=ErrorInfo("builtins.KeyError", "'x'", step="b"),
        ),
    ]
    for original in records:
        decoded = codec.decode_run(wire(codec, codec.encode_run(original)))
        assert decoded == original
    completed = codec.decode_run(wire(codec, codec.encode_run(records[1])))
    assert completed.result is not None and completed.result.result == {"total": 3}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempt", "1"),
        ("attempt", True),
        ("run_id", None),
        ("resolved", []),
        ("first_attempt_at", "yesterday"),
        ("last_error", {"message": "no type"}),
        ("event", {"type": "os.system", "data": {}}),
    ],
)
def test_a_malformed_delivery_raises_event_codec_error(
    codec: EventCodec, field: str, value: Any
) -> None:
    encoded = codec.encode_delivery(delivery())
    encoded[field] = value

    with pytest.raises(EventCodecError):
        codec.decode_delivery(encoded)


def test_a_delivery_missing_a_field_is_malformed(codec: EventCodec) -> None:
    encoded = codec.encode_delivery(delivery())
    del encoded["step"]

    with pytest.raises(EventCodecError, match="step"):
        codec.decode_delivery(encoded)


def test_a_run_record_with_an_unknown_status_is_malformed(codec: EventCodec) -> None:
    encoded = codec.encode_run(RunRecord("run-1", "flow"))
    encoded["status"] = "exploded"

    with pytest.raises(EventCodecError, match="status"):
        codec.decode_run(encoded)


# --- text ------------------------------------------------------------------------------


def test_dumps_writes_compact_json(codec: EventCodec) -> None:
    assert codec.dumps({"a": [1, 2], "b": None}) == '{"a":[1,2],"b":null}'


def test_loads_reads_text_and_utf8_bytes(codec: EventCodec) -> None:
    assert codec.loads('{"a":1}') == {"a": 1}
    assert codec.loads('{"a":"é"}'.encode()) == {"a": "é"}


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_is_refused(codec: EventCodec, protocol: int) -> None:
    payload = pickle.dumps(delivery(), protocol=protocol)

    with pytest.raises(EventCodecError, match="pickle is never accepted"):
        codec.loads(payload)


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe"])
def test_text_that_is_not_json_is_refused(codec: EventCodec, text: str | bytes) -> None:
    with pytest.raises(EventCodecError):
        codec.loads(text)
