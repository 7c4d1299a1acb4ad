"""A short, one-line description of an event, for people reading logs and traces.

``summarize_event(ev)`` is what ``Workflow(verbose=True)`` prints and what the
instrumentation attaches to spans and events; its format is llama-index-workflows'::

    >>> summarize_event(Mid(text="hi", n=3))
    "Mid(text='hi', n=3)"

A StopEvent shows its result first; declared fields, then dynamic keys, follow.
A string value is cut at 50 characters, a list or dict of more than three
entries shows only its size, and the whole line is cut at ``max_length``.
Summarizing never raises: an event whose fields cannot be read falls back to
its ``repr``, then to its class name.
"""

from __future__ import annotations

from typing import Any

from stalkflow.events import Event, StopEvent

#: A string value longer than this is cut (and ends in "...").
MAX_VALUE_CHARS = 50
#: A list or dict with more entries than this shows only its size.
MAX_ITEMS = 3


def summarize_value(value: Any) -> str:
    """One field's value, short: a long string cut, a long list or dict as its size."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            value = value[:MAX_VALUE_CHARS] + "..."
    elif isinstance(value, list) and len(value) > MAX_ITEMS:
        return f"[{len(value)} items]"
    elif isinstance(value, dict) and len(value) > MAX_ITEMS:
        return f"{{{len(value)} keys}}"
    return repr(value)


def summarize_event(event: Event, max_length: int = 200) -> str:
    """``Name(field=value, ...)``, at most ``max_length`` characters."""
    try:
        return _cut(_summary(event), max_length)
    except Exception:
        try:
            return repr(event)
        except Exception:
            return type(event).__name__


def _summary(event: Event) -> str:
    # Private attributes read from pydantic's dict: ``event._data`` costs 40 times
    # more, through ``__getattr__``, and steps summarize their input on every run.
    private = event.__pydantic_private__ or {}
    parts = []
    result = private.get("_result")
    if isinstance(event, StopEvent) and result is not None:
        parts.append(f"result={summarize_value(result)}")
    for name in type(event).__pydantic_fields__:
        parts.append(f"{name}={summarize_value(getattr(event, name, None))}")
    for key, value in private.get("_data", {}).items():
        parts.append(f"{key}={summarize_value(value)}")
    return f"{type(event).__name__}({', '.join(parts)})"


def _cut(text: str, max_length: int) -> str:
    if len(text) <= max_length:
        return text
    return text[: max_length - 3] + "..."
