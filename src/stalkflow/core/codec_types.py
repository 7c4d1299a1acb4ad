"""Which event class a type name on the wire stands for, without importing anything.

:class:`~stalkflow.core.codec.EventCodec` resolves the ``"type"`` of an encoded
event with these: the name a class travels under (:func:`type_name`),
stalkflow's own events (:data:`FRAMEWORK_EVENTS`), and the search of classes
already loaded in this process (:func:`find_loaded`), which only ever walks the
live subclasses of a base, so a name can never make a module load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stalkflow.core.names import qualified_name
from stalkflow.events import Event, HumanResponseEvent, InputRequiredEvent

__all__ = ["FRAMEWORK_EVENTS", "HUMAN_INPUT_BASES", "find_loaded", "type_name"]

#: Subclasses a client may bring for human input (upstream lets it send its own).
HUMAN_INPUT_BASES: tuple[type[Event], ...] = (HumanResponseEvent, InputRequiredEvent)


def type_name(cls: type[Any]) -> str:
    """The name a class travels under: ``"module.QualName"`` (see ``core.names``)."""
    return qualified_name(cls)


def _framework_events() -> dict[str, type[Event]]:
    import stalkflow.events as events_module

    found: dict[str, type[Event]] = {}
    for value in vars(events_module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Event)
            and value.__module__ == events_module.__name__
        ):
            found[type_name(value)] = value
    return found


#: stalkflow's own events (``StartEvent``, ``StopEvent``, ``StepStateChanged`` ...) by name.
FRAMEWORK_EVENTS = _framework_events()


def _loaded_subclasses(base: type[Event]) -> Iterator[type[Event]]:
    """Every live subclass of ``base``: classes already defined, so already imported."""
    pending = list(base.__subclasses__())
    seen: set[type[Event]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        pending.extend(cls.__subclasses__())


def find_loaded(name: str, bases: tuple[type[Event], ...]) -> type[Event] | None:
    """The already-loaded class named ``name`` among ``bases`` and their subclasses, if any."""
    for base in bases:
        if type_name(base) == name:
            return base
        for cls in _loaded_subclasses(base):
            if type_name(cls) == name:
                return cls
    return None
