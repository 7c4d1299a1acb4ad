"""Events: the typed messages that steps consume and produce.

Drop-in compatible with ``workflows.events`` of llama-index-workflows. An event is
a pydantic model whose declared fields are validated, and which also carries any
undeclared keyword arguments as dynamic keys, reachable as attributes
(``ev.topic``) or as mapping items (``ev["topic"]``).

The module also provides the codec that stalkflow's transport uses to move an
event between processes: :func:`event_to_payload` and :func:`event_from_payload`.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic_core import to_jsonable_python

from stalkflow.context.serializers import (
    JsonSerializer,
    current_serializer,
    qualified_name_of,
    register_framework_type,
    resolve_qualified_name,
)
from stalkflow.errors import EventCodecError

__all__ = [
    "DictLikeModel",
    "Event",
    "EventType",
    "HumanResponseEvent",
    "IdleReleasedEvent",
    "InputRequiredEvent",
    "InternalDispatchEvent",
    "SerializableEvent",
    "SerializableEventType",
    "SerializableException",
    "SerializableOptionalEvent",
    "SerializableOptionalException",
    "StartEvent",
    "StepFailedEvent",
    "StepState",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "UnreconstructedException",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
    "event_from_payload",
    "event_to_payload",
]

# A serialization context carrying this key, mapped to an event, asks that event
# for its declared fields only; the payload codec then adds the dynamic parts
# itself, in a form that keeps their types.
_FIELDS_ONLY = "stalkflow.fields_only"


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class DictLikeModel(BaseModel):
    """A pydantic model that also behaves like a dict of dynamic keys.

    Constructor keywords are sorted three ways: declared fields are validated,
    names of private attributes (``_x``) are set as such, and everything else is
    kept in the private dict ``_data``. Dynamic keys support attribute access,
    ``[]``, ``get``, ``in``, ``keys``/``values``/``items``, ``len`` and iteration;
    ``model_dump()`` adds them under ``"_data"`` when there are any.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _data: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **params: Any) -> None:
        cls = type(self)
        declared: dict[str, Any] = {}
        private: dict[str, Any] = {}
        dynamic: dict[str, Any] = {}
        for key, value in params.items():
            if key in cls.model_fields:
                declared[key] = value
            elif key in cls.__private_attributes__:
                private[key] = value
            else:
                dynamic[key] = value
        super().__init__(**declared)
        for key, value in private.items():
            super().__setattr__(key, value)
        if dynamic:
            self._data.update(dynamic)

    def __getattr__(self, name: str) -> Any:
        cls = type(self)
        if name in cls.__private_attributes__ or name in cls.model_fields or _is_dunder(name):
            # Private attributes live outside __dict__; pydantic knows where.
            # Dunders are never dynamic keys: answering them from _data would
            # recurse while the instance is half built (copy, unpickle).
            return super().__getattr__(name)  # type: ignore[misc]
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"'{cls.__name__}' object has no attribute '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name in cls.__private_attributes__ or name in cls.model_fields:
            super().__setattr__(name, value)
        else:
            self._data[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    # BaseModel iterates (field, value) pairs; a dict-like iterates its keys.
    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._data)

    def __bool__(self) -> bool:
        # With __len__ defined, an event without dynamic keys would be falsy,
        # and `if ev:` would silently skip it.
        return True

    def get(self, key: str, default: Any = None) -> Any:
        """Return the dynamic key ``key``, or ``default`` when it is absent."""
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        """Return the names of the dynamic keys."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """Return the values of the dynamic keys."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """Return the dynamic ``(key, value)`` pairs."""
        return self._data.items()

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Return the dynamic keys (the live dict, not a copy); fields are not included."""
        return self._data

    def _dump_extras(self) -> dict[str, Any]:
        """Return what ``model_dump`` adds beyond the declared fields."""
        return {"_data": self._data} if self._data else {}

    @model_serializer(mode="wrap")
    def _dump_with_extras(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        context = info.context
        if isinstance(context, dict) and context.get(_FIELDS_ONLY) is self:
            return dumped
        dumped.update(self._dump_extras())
        return dumped


class Event(DictLikeModel):
    """Base class of every workflow event.

    Subclass it with typed fields; undeclared keywords become dynamic keys.

    Example:
        >>> class Scored(Event):
        ...     score: int
        >>> ev = Scored(score=3, source="test")
        >>> (ev.score, ev.source, ev["source"])
        (3, 'test', 'test')
    """


# --- field types that survive serialization ------------------------------------


class UnreconstructedException(Exception):
    """Stands in for a serialized exception whose class cannot be rebuilt.

    A serialized exception keeps only its type name and message. When that type
    is not already imported, is not an ``Exception`` subclass, or cannot be built
    from the message alone, this is returned instead, so reading never fails.
    ``str()`` is the original message; ``original_type`` names the lost type and
    is written back out when the exception is serialized again.
    """

    def __init__(self, message: str, *, original_type: str | None = None) -> None:
        super().__init__(message)
        self.original_type = original_type

    def __repr__(self) -> str:
        return f"UnreconstructedException({self.args[0]!r}, original_type={self.original_type!r})"


def _event_to_json(event: Event | None) -> Any:
    return None if event is None else current_serializer().serialize_value(event)


def _event_from_json(data: Any) -> Event:
    event = data if isinstance(data, Event) else current_serializer().deserialize_value(data)
    if not isinstance(event, Event):
        raise ValueError("expected a serialized Event")
    return event


def _optional_event_from_json(data: Any) -> Event | None:
    return None if data is None else _event_from_json(data)


def _exception_to_json(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    name = qualified_name_of(type(exc))
    if isinstance(exc, UnreconstructedException) and exc.original_type:
        name = exc.original_type
    return {"exception_type": name, "exception_message": str(exc)}


def _exception_from_json(data: Any) -> Exception:
    if isinstance(data, Exception):
        return data
    if not isinstance(data, dict) or not isinstance(data.get("exception_type"), str):
        raise ValueError("expected {'exception_type': str, 'exception_message': str}")
    type_name: str = data["exception_type"]
    message = str(data.get("exception_message", ""))
    try:
        # Never import here: the name comes from data, and importing runs code.
        exc_cls = resolve_qualified_name(type_name, allow_import=False)
    except (ImportError, AttributeError, ValueError):
        exc_cls = None
    if exc_cls is UnreconstructedException:
        return UnreconstructedException(message)
    # Only exception classes are called: a name like "os.system" must not be.
    if isinstance(exc_cls, type) and issubclass(exc_cls, Exception):
        try:
            rebuilt: Exception = exc_cls(message)
            return rebuilt
        except Exception:
            pass  # needs more than a message; fall through to the stand-in
    return UnreconstructedException(message, original_type=type_name)


def _optional_exception_from_json(data: Any) -> Exception | None:
    return None if data is None else _exception_from_json(data)


def _event_type_to_json(event_type: type[Event]) -> str:
    return qualified_name_of(event_type)


def _event_type_from_json(data: Any) -> type[Event]:
    found = data if isinstance(data, type) else current_serializer().resolve_class(str(data))
    if not issubclass(found, Event):
        raise ValueError(f"{data!r} is not an Event class")
    return found


#: An event field stored with its class name, so it is rebuilt as the same type.
SerializableEvent = Annotated[
    Event,
    PlainSerializer(_event_to_json, return_type=Any),
    PlainValidator(_event_from_json),
]
#: Like :data:`SerializableEvent`, allowing None.
SerializableOptionalEvent = Annotated[
    Event | None,
    PlainSerializer(_event_to_json, return_type=Any),
    PlainValidator(_optional_event_from_json),
]
#: An exception field stored as ``{"exception_type", "exception_message"}``.
SerializableException = Annotated[
    Exception,
    PlainSerializer(_exception_to_json, return_type=dict[str, Any]),
    PlainValidator(_exception_from_json),
]
#: Like :data:`SerializableException`, allowing None.
SerializableOptionalException = Annotated[
    Exception | None,
    PlainSerializer(_exception_to_json, return_type=Any),
    PlainValidator(_optional_exception_from_json),
]
#: An event class stored as its ``"module.QualName"``.
SerializableEventType = Annotated[
    type[Event],
    PlainSerializer(_event_type_to_json, return_type=str),
    PlainValidator(_event_type_from_json),
]


# --- the events of a run -------------------------------------------------------


class StartEvent(Event):
    """The event a run starts with; ``Workflow.run(**kwargs)`` puts kwargs on it."""


class StopEvent(Event):
    """The event that ends a run; its ``result`` is what the run returns.

    ``StopEvent(result=value)`` keeps ``value`` in a private attribute. A run
    that ends with a subclass of StopEvent returns the event itself, so
    subclasses may declare fields, or override :meth:`_get_result`.
    """

    _result: Any = PrivateAttr(default=None)

    def __init__(self, result: Any = None, **kwargs: Any) -> None:
        super().__init__(_result=result, **kwargs)

    def _get_result(self) -> Any:
        """Return the run's result; override to derive it from the fields."""
        return self._result

    @property
    def result(self) -> Any:
        """The value the run returns (see :meth:`_get_result`)."""
        return self._get_result()

    def _dump_extras(self) -> dict[str, Any]:
        extras = super()._dump_extras()
        if self._result is not None:
            extras["result"] = self._result
        return extras

    def __repr__(self) -> str:
        shown = dict(self._data)
        shown.update((name, getattr(self, name)) for name in type(self).model_fields)
        if self._result is not None:
            shown["result"] = self._result
        arguments = ", ".join(f"{key}={value!r}" for key, value in shown.items())
        return f"{type(self).__name__}({arguments})"

    def __str__(self) -> str:
        return str(self._result)


class WorkflowTimedOutEvent(StopEvent):
    """Streamed when a run exceeds its timeout, before ``WorkflowTimeoutError``."""

    timeout: float = Field(description="The timeout, in seconds, that was exceeded.")
    active_steps: list[str] = Field(description="Steps still running at that moment.")


class WorkflowCancelledEvent(StopEvent):
    """Streamed when a run is cancelled, before ``WorkflowCancelledByUser``."""


class IdleReleasedEvent(StopEvent):
    """Returned (not streamed) when a server releases an idle run."""


class WorkflowFailedEvent(StopEvent):
    """Streamed when a step fails for good (retries exhausted, or no handler)."""

    step_name: str = Field(description="The step that failed.")
    exception: SerializableException = Field(description="What it raised.")
    attempts: int | None = Field(default=None, description="Attempts made, if a step failed.")
    elapsed_seconds: float | None = Field(
        default=None, description="Seconds from the first attempt to the final failure."
    )


class StepFailedEvent(Event):
    """Given to a ``@catch_error`` handler when a step has exhausted its retries.

    The handler may return a StopEvent to end the run successfully, another
    event to go on, or raise to fail the run.
    """

    step_name: str = Field(description="The step that failed.")
    input_event: SerializableEvent = Field(description="The event the step was given.")
    exception: SerializableException = Field(description="What the last attempt raised.")
    attempts: int = Field(description="Attempts made in total.")
    elapsed_seconds: float = Field(description="Seconds from the first attempt to the last.")
    failed_at: datetime = Field(description="When the last attempt failed (aware, UTC).")


class InputRequiredEvent(Event):
    """A step asks a human for input; the caller answers with a HumanResponseEvent.

    It is written to the event stream and need not be consumed by any step.
    """


class HumanResponseEvent(Event):
    """A human's answer to an :class:`InputRequiredEvent`, sent by the caller."""


class InternalDispatchEvent(Event):
    """Base of the events that describe the engine's own activity.

    They are streamed only to readers that ask for them
    (``stream_events(expose_internal=True)``).
    """


class WorkflowIdleEvent(InternalDispatchEvent):
    """The run waits on outside input only: nothing is queued or running."""


class UnhandledEvent(InternalDispatchEvent):
    """An event arrived that no step and no waiter accepts; it was dropped."""

    event_type: str = Field(description="Class name of the dropped event.")
    qualified_name: str = Field(description="Module and class name of the dropped event.")
    step_name: str | None = Field(default=None, description="The step it was addressed to.")
    idle: bool = Field(description="Whether the run is idle afterwards.")


class StepState(Enum):
    """Where one execution of a step stands."""

    PREPARING = "preparing"  # queued, waiting for a free worker slot
    RUNNING = "running"
    NOT_RUNNING = "not_running"


class StepStateChanged(InternalDispatchEvent):
    """A step execution was queued, started or finished."""

    name: str = Field(description="The step's name.")
    step_state: StepState = Field(description="Its new state.")
    worker_id: str = Field(description="The worker slot it runs on.")
    input_event_name: str = Field(description="The name of the event it was given.")
    output_event_name: str | None = Field(default=None, description="The event it produced.")


#: The type of an event class, as used in step signatures and routing tables.
EventType = type[Event]


# --- the wire codec --------------------------------------------------------------


def event_to_payload(ev: Event) -> dict[str, Any]:
    """Encode ``ev`` as a JSON-compatible dict (its class is sent separately).

    Declared fields are dumped in JSON mode. Dynamic keys go under ``"_data"`` and
    a StopEvent's result under ``"result"``; pydantic models among those keep
    their type through the serializer's envelope. Other values arrive as their
    JSON form (a tuple comes back as a list, a datetime as a string).

    Raises:
        EventCodecError: a field or value cannot be represented in JSON.
    """
    codec = JsonSerializer()
    try:
        payload: dict[str, Any] = ev.model_dump(mode="json", context={_FIELDS_ONLY: ev})
        for key, value in ev._dump_extras().items():
            payload[key] = to_jsonable_python(codec.serialize_value(value))
    except (ValueError, TypeError) as exc:
        raise EventCodecError(f"Cannot encode {type(ev).__name__}: {exc}") from exc
    return payload


def event_from_payload(cls: type[Event], payload: dict[str, Any]) -> Event:
    """Rebuild an instance of exactly ``cls`` from :func:`event_to_payload` output.

    The caller chooses ``cls`` (from the workflow's own event types); nothing in
    the payload can choose another event class. Typed values inside the payload
    are rebuilt only from classes whose module is already imported, so decoding
    never imports a module.

    Raises:
        EventCodecError: the payload is malformed or fails validation.
    """
    if not isinstance(payload, dict):
        raise EventCodecError(f"An event payload must be a dict, not {type(payload).__name__}")
    codec = JsonSerializer(import_modules=False)
    arguments = dict(payload)
    try:
        dynamic = arguments.pop("_data", None) or {}
        if not isinstance(dynamic, dict):
            raise EventCodecError("'_data' of an event payload must be a dict")
        arguments["_data"] = codec.deserialize_value(dynamic)
        if issubclass(cls, StopEvent) and "result" in arguments:
            arguments["result"] = codec.deserialize_value(arguments["result"])
        with codec.validation_context():
            event = cls(**arguments)
    except EventCodecError:
        raise
    except (ValueError, TypeError, AttributeError, LookupError, ImportError) as exc:
        raise EventCodecError(f"Cannot decode a {cls.__name__} payload: {exc}") from exc
    return event


for _event_cls in (
    Event,
    StartEvent,
    StopEvent,
    WorkflowTimedOutEvent,
    WorkflowCancelledEvent,
    IdleReleasedEvent,
    WorkflowFailedEvent,
    StepFailedEvent,
    InputRequiredEvent,
    HumanResponseEvent,
    InternalDispatchEvent,
    WorkflowIdleEvent,
    UnhandledEvent,
    StepStateChanged,
):
    register_framework_type(_event_cls)
