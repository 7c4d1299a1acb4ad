"""The JSON layer under the wire codec: text in and out, and checked field reading.

:func:`dumps` and :func:`loads` are the only way the codec turns values into
text and back (JSON only: pickle and other bytes are refused); they are also
:meth:`EventCodec.dumps <stalkflow.core.codec.EventCodec.dumps>` and
:meth:`~stalkflow.core.codec.EventCodec.loads`. :class:`Fields` is what the codec
decodes deliveries, waiters and run records with: a missing field or one of the
wrong type fails with an :class:`~stalkflow.errors.EventCodecError` that names
the field and the value's kind, never the value.
"""

from __future__ import annotations

import json
from typing import Any

from stalkflow.core.deliveries import ErrorInfo
from stalkflow.errors import EventCodecError

__all__ = ["Fields", "dumps", "error_from", "kind_of", "loads"]


def dumps(obj: Any) -> str:
    """Compact JSON text.

    Raises:
        EventCodecError: ``obj`` holds a value JSON cannot represent.
    """
    try:
        return json.dumps(obj, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise EventCodecError(f"Cannot encode as JSON: {exc}") from exc


def loads(text: str | bytes) -> Any:
    """Parse JSON text; anything else (pickle bytes among them) is refused.

    Raises:
        EventCodecError: the text is not UTF-8 JSON.
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        if not isinstance(text, str):
            raise EventCodecError(f"Expected JSON text, got {kind_of(text)}")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventCodecError(f"Not a JSON document (pickle is never accepted): {exc}") from None


def kind_of(value: Any) -> str:
    """What a value is, for a message: its type's name, never the value itself."""
    return type(value).__name__


def error_from(value: Any) -> ErrorInfo | None:
    """An ``ErrorInfo`` from its JSON (``ErrorInfo.to_json``), checked; None stays None."""
    if value is None:
        return None
    fields = Fields(value, "error")
    fields.text("type_name")
    fields.text("message")
    fields.optional_text("step")
    fields.optional_text("traceback")
    return ErrorInfo.from_json(value)


class Fields:
    """Typed access to the fields of a decoded JSON object, failing with EventCodecError."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise EventCodecError(f"An encoded {what} must be an object, not {kind_of(obj)}")
        self._obj: dict[str, Any] = obj
        self._what = what

    def get(self, name: str) -> Any:
        if name not in self._obj:
            raise EventCodecError(f"An encoded {self._what} lacks the field {name!r}")
        return self._obj[name]

    def _bad(self, name: str, expected: str) -> EventCodecError:
        got = kind_of(self._obj.get(name))
        return EventCodecError(f"Field {name!r} of a {self._what} must be {expected}, not {got}")

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self._obj.get(name)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a string or null")
        return value

    def integer(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer")
        return value

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def number(self, name: str) -> float:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(name, "a number")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        value = self._obj.get(name)
        if value is None:
            return None
        return self.number(name)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value
