"""Encoding a context's state for the store, and upstream's ``to_dict`` state format.

Untyped state (``DictState``) is encoded one key at a time with the context's
serializer, so a value that cannot be serialized is reported by its key, at the
moment it is ``set``. Typed state is the Pydantic model's JSON, validated again
whenever it is loaded or changed, so a bad value is rejected when written.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from stalkflow.context.serializers import BaseSerializer, JsonSerializer
from stalkflow.errors import ContextSerdeError, StateSerializationError, UnknownStoreTypeError
from stalkflow.events import DictLikeModel

M = TypeVar("M", bound=BaseModel)


class DictState(DictLikeModel):
    """The default, untyped state: a dict of serializable values, with attribute access."""


class StateCodec(Generic[M]):
    """Turns a state object into a stored blob and back, for one state type."""

    def __init__(self, state_type: type[M], serializer: BaseSerializer | None = None) -> None:
        self.state_type = state_type
        self.serializer = serializer or JsonSerializer()
        self.untyped = issubclass(state_type, DictState)
        self._json = type(self.serializer) is JsonSerializer

    def new(self) -> M:
        """A fresh state from the model's defaults."""
        try:
            return self.state_type()
        except ValidationError as exc:
            raise ValueError("State must have defaults for all fields") from exc

    # --- values and whole states --------------------------------------------------

    def encode_value(self, key: str, value: Any) -> str:
        try:
            return self.serializer.serialize(value)
        except Exception as exc:
            raise StateSerializationError(
                f"Failed to serialize state value for key {key}: {exc}", key=key
            ) from exc

    def check(self, state: M) -> M:
        """Validate a typed state after a change; returns the validated model."""
        if self.untyped:
            return state
        dumped = state.model_dump(warnings=False)
        return self.state_type.model_validate(dumped)

    def encode(self, state: M) -> str:
        if self.untyped:
            data = {str(k): self.encode_value(str(k), v) for k, v in state._data.items()}  # type: ignore[attr-defined]
            return json.dumps(data)
        if self._json:
            try:
                return state.model_dump_json()
            except Exception as exc:
                raise StateSerializationError(
                    f"Failed to serialize state of type {self.state_type.__name__}: {exc}", key=""
                ) from exc
        return self.encode_value("", state)

    def decode(self, blob: str | None) -> M:
        if blob is None:
            return self.new()
        if self.untyped:
            state = self.state_type()
            values = json.loads(blob)
            state._data.update(  # type: ignore[attr-defined]
                {k: self.serializer.deserialize(v) for k, v in values.items()}
            )
            return state
        if self._json:
            return self.state_type.model_validate_json(blob)
        return self._coerce(self.serializer.deserialize(blob))

    def _coerce(self, value: Any) -> M:
        if isinstance(value, self.state_type):
            return value
        if isinstance(value, BaseModel):
            value = value.model_dump()
        return self.state_type.model_validate(value)

    # --- upstream's to_dict format --------------------------------------------------

    def to_payload(self, blob: str | None, serializer: BaseSerializer) -> dict[str, Any]:
        """The ``state`` part of ``Context.to_dict()``, as upstream writes it."""
        state = self.decode(blob)
        if self.untyped:
            data = {
                str(k): _serialize(serializer, str(k), v)
                for k, v in state._data.items()  # type: ignore[attr-defined]
            }
            state_data: Any = {"_data": data}
        else:
            state_data = _serialize(serializer, "", state)
        return {
            "store_type": "in_memory",
            "state_type": self.state_type.__name__,
            "state_module": self.state_type.__module__,
            "state_data": state_data,
        }

    def from_payload(self, payload: dict[str, Any], serializer: BaseSerializer) -> str:
        """Read the ``state`` part of a ``Context.to_dict()`` into a stored blob."""
        store_type = payload.get("store_type", "in_memory")
        if store_type != "in_memory":
            raise UnknownStoreTypeError(store_type)
        state_data = payload.get("state_data")
        if payload.get("state_type", "DictState") == "DictState" or self.untyped:
            if state_data is not None and (
                not isinstance(state_data, dict)
                or (state_data and not isinstance(state_data.get("_data"), dict))
            ):
                # a foreign or corrupted dict: never silently start from an empty state
                raise ContextSerdeError(
                    "Context dict holds an untyped state in an unknown format: 'state_data' "
                    "must be {'_data': {key: serialized value}} as Context.to_dict() writes it, "
                    f"got {_shape(state_data)}"
                )
            values = (state_data or {}).get("_data", {}) if isinstance(state_data, dict) else {}
            state: Any = self.new()
            decoded = {}
            for key, raw in values.items():
                try:
                    decoded[key] = serializer.deserialize(raw)
                except Exception as exc:
                    raise ValueError(
                        f"Failed to deserialize state value for key {key}: {exc}"
                    ) from exc
            if self.untyped:
                state._data.update(decoded)
            else:
                state = self.state_type.model_validate(decoded)
            return self.encode(state)
        if isinstance(state_data, str) and isinstance(serializer, JsonSerializer):
            raw_json = json.loads(state_data)
            if isinstance(raw_json, dict) and raw_json.get("__is_pydantic"):
                return self.encode(self.state_type.model_validate(raw_json["value"]))
        return self.encode(self._coerce(serializer.deserialize(str(state_data))))


def _serialize(serializer: BaseSerializer, key: str, value: Any) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return serializer.serialize(value)
    except Exception as exc:
        raise StateSerializationError(
            f"Failed to serialize state value for key {key}: {exc}", key=key
        ) from exc


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(map(str, value))[:5]}"
    return f"a {type(value).__name__}"
