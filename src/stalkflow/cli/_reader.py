"""An engine over the shared store that reads and cancels runs, and dispatches nothing.

``runs list``, ``runs show`` and ``cancel`` reach runs that other processes
started; they need the store, not the broker. Their engine reads every stored
event without importing anything the store names: a class this process knows
(stalkflow's, the registered workflows', the modules named with ``-m``) decodes as
itself, any other as a stand-in ``Event`` of the same name carrying the stored data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from stalkflow.cli._app import require_distributed, store_location, wait
from stalkflow.cli._loading import load_modules

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.events import Event
    from stalkflow.ports import Executor
    from stalkflow.settings import Settings


@contextlib.contextmanager
def store_reader(settings: Settings, command: str, modules: Sequence[str]) -> Iterator[Engine]:
    """An engine that reads and cancels runs of the shared store, for ``command``.

    It registers the workflows of ``modules`` (and of STALKFLOW_WORKFLOWS), whose
    event classes then decode as themselves; the store is closed on the way out.
    """
    require_distributed(settings, command)
    url = _store_url(settings)
    from stalkflow.adapters.redis_store import RedisStore
    from stalkflow.core.codec import EventCodec
    from stalkflow.distributed import event_types_of
    from stalkflow.engine import Engine, WorkflowRegistry

    registry = WorkflowRegistry()
    known = event_types_of(registry)
    stand_ins: dict[str, type[Event]] = {}  # one class per unknown name, for this reader

    def lookup(workflow: str) -> Mapping[str, type[Event]]:
        try:
            types = known(workflow)
        except LookupError:
            types = {}
        return _AnyEventTypes(types, stand_ins)

    store = RedisStore.from_url(
        url, prefix=settings.prefix, codec=EventCodec(lookup), finished_ttl_s=settings.result_ttl_s
    )
    engine = Engine(store, _NoDispatch(), registry=registry)
    load_modules(modules, engine)
    try:
        yield engine
    finally:
        with contextlib.suppress(Exception):
            wait(store.aclose)


def _store_url(settings: Settings) -> str:
    url = store_location(settings)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise click.ClickException(
            "The distributed engine keeps runs in Redis: set STALKFLOW_REDIS_URL (or "
            "--redis-url); a non-Redis broker cannot be the store"
        )
    return url


class _NoDispatch:
    """The transport of an engine that only reads and cancels runs."""

    def start(self, execute: Executor) -> None:
        pass

    async def dispatch(self, deliveries: Sequence[Any], delay_s: float = 0.0) -> None:
        raise RuntimeError("this engine only reads and cancels runs")

    def run_finished(self, run_id: str) -> None:
        pass


class _AnyEventTypes(Mapping[str, "type[Event]"]):
    """Known event classes by name; any other name gets a stand-in class (for display)."""

    def __init__(self, known: Mapping[str, type[Event]], stand_ins: dict[str, type[Event]]) -> None:
        self._known = known
        self._stand_ins = stand_ins

    def __getitem__(self, name: str) -> type[Event]:
        found = self._known.get(name)
        if found is not None:
            return found
        stand_in = self._stand_ins.get(name)
        if stand_in is None:
            from stalkflow.events import Event

            module, _, qualname = name.rpartition(".")
            stand_in = type(
                qualname or name,
                (Event,),
                {"__module__": module or "<unknown>", "__qualname__": qualname or name},
            )
            self._stand_ins[name] = stand_in
        return stand_in

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)
