"""``ctx.store``: the Context's state, shared by the steps of a run.

The state lives in a ``Store`` (memory or Redis) as a versioned blob. Every
mutation is a compare-and-set on that version, so two steps that ``set``
different keys at the same moment never lose either write. ``edit_state()``
holds the store's edit lock for the whole block: a random token, a lease renewed
while the block runs, a bounded wait, and a fenced write that commits only if
the token still holds the lock.

Differences from upstream, on purpose:
- ``get``/``set`` inside ``edit_state()`` act on the state being edited (upstream
  deadlocks on its non-reentrant lock).
- ``get_state()`` returns an independent copy for untyped state too (upstream
  shares the dict with the store).
- ``set`` of a value the serializer cannot encode fails at once, naming the key
  (upstream accepts it and fails later in ``to_dict()``).
- Typed state is validated on every change, not only with ``validate_assignment``.
- If an exception escapes an ``edit_state()`` block, nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from stalkflow._sync import run_blocking
from stalkflow.context.serializers import BaseSerializer
from stalkflow.context.state_codec import DictState, StateCodec
from stalkflow.core.paths import MAX_DEPTH, get_path, set_path
from stalkflow.errors import StateLockLostError, StateLockTimeoutError
from stalkflow.ports import SaveStatus, Store

if TYPE_CHECKING:
    from stalkflow.workflow import Workflow

__all__ = [
    "MAX_DEPTH",
    "DictState",
    "InMemoryStateStore",
    "LockSettings",
    "StateStore",
    "infer_state_type",
]

MODEL_T = TypeVar("MODEL_T", bound=BaseModel)

# The states being edited by the current task, keyed by store identity and key.
_editing: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "stalkflow_editing", default=None
)


@dataclasses.dataclass(frozen=True)
class LockSettings:
    """How ``edit_state()`` locks: lease length, and how long to wait for the lock."""

    lease_s: float = 15.0
    wait_s: float = 60.0


class StateStore(Generic[MODEL_T]):
    """The state of one context, kept in a ``Store`` under ``key``."""

    def __init__(
        self,
        store: Store,
        key: str,
        codec: StateCodec[MODEL_T],
        locks: LockSettings | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._codec = codec
        self._locks = locks or LockSettings()
        self._identity = f"{id(store)}:{key}"

    @property
    def state_type(self) -> type[MODEL_T]:
        return self._codec.state_type

    @property
    def key(self) -> str:
        return self._key

    # --- reads --------------------------------------------------------------------

    async def get_state(self) -> MODEL_T:
        """A copy of the whole state; changing it changes nothing until ``set_state``."""
        live = self._live()
        if live is not None:
            return copy.deepcopy(live)  # type: ignore[no-any-return]
        return await self._load()

    async def get(self, path: str, default: Any = Ellipsis) -> Any:
        """The value at a dotted ``path`` (``"a.b.0"``).

        Raises ``ValueError("Path '...' not found in state")`` when the path is
        missing and no default is given; any explicit default, ``None`` included,
        is returned instead.
        """
        live = self._live()
        state = live if live is not None else await self._load()
        return get_path(state, path, default)

    async def _load(self) -> MODEL_T:
        snapshot = await self._store.load_state(self._key)
        return self._codec.decode(snapshot.blob)

    # --- writes -------------------------------------------------------------------

    async def set(self, path: str, value: Any) -> None:
        """Set the value at ``path``, creating missing levels as dicts.

        The value is checked at once: one the serializer cannot encode raises
        ``StateSerializationError`` (a ``ValueError``) naming the key; a typed
        state validates the result and raises pydantic's ``ValidationError``.
        """
        if path == "":
            raise ValueError("Path cannot be empty")
        if self._codec.untyped:
            self._codec.encode_value(path, value)
        live = self._live()
        if live is not None:
            set_path(live, path, value)
            return

        def change(state: MODEL_T) -> MODEL_T:
            set_path(state, path, value)
            return state

        await self._update(change)

    async def set_state(self, state: MODEL_T) -> None:
        """Replace the state, or merge a parent-type model into a child-type state."""
        current_type = self.state_type
        if not isinstance(state, BaseModel) or not (
            isinstance(state, current_type) or issubclass(current_type, type(state))
        ):
            raise ValueError(
                f"State must be of type {current_type.__name__} or a parent type, "
                f"got {type(state).__name__}"
            )

        def change(current: MODEL_T) -> MODEL_T:
            if isinstance(state, current_type):
                return copy.deepcopy(state)
            merged = {**current.model_dump(), **state.model_dump()}
            return current_type.model_validate(merged)

        if not self._replace_live(change):
            await self._update(change)

    async def clear(self) -> None:
        """Reset the state to the model's defaults."""
        fresh = self._codec.new()
        if not self._replace_live(lambda _: fresh):
            await self._update(lambda _: fresh)

    def _replace_live(self, change: Any) -> bool:
        """Inside ``edit_state()``: apply a whole-state change to the state being edited.

        The block's object is changed in place (it is what the block writes at its
        end), so ``set_state``/``clear`` inside the block neither wait for the lock
        the block holds nor get overwritten by it.
        """
        live = self._live()
        if live is None:
            return False
        new = self._codec.check(change(live))
        if self._codec.untyped:
            live._data.clear()
            live._data.update(new._data)  # type: ignore[attr-defined]
        else:
            for name in type(live).model_fields:
                setattr(live, name, getattr(new, name))
        return True

    async def _update(self, change: Any) -> None:
        """Read, change and compare-and-set, retrying on a concurrent write."""
        while True:
            snapshot = await self._store.load_state(self._key)
            state = self._codec.check(change(self._codec.decode(snapshot.blob)))
            blob = self._codec.encode(state)
            status = await self._store.save_state(self._key, blob, snapshot.version)
            if status is SaveStatus.SAVED:
                return
            if status is SaveStatus.LOCKED:
                # Someone is inside edit_state(): wait for the lock, write under it.
                async with self._locked() as token:
                    snapshot = await self._store.load_state(self._key)
                    state = self._codec.check(change(self._codec.decode(snapshot.blob)))
                    blob = self._codec.encode(state)
                    status = await self._store.save_state(self._key, blob, snapshot.version, token)
                    if status is SaveStatus.SAVED:
                        return
                    raise StateLockLostError(
                        f"Lost the state lock of {self._key!r} before the write committed"
                    )

    # --- edit_state -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def edit_state(self) -> AsyncIterator[MODEL_T]:
        """Lock the state for a read-modify-write block.

        No other step can change the state while the block runs. The block gets
        the live state; whatever it holds at the end of the block is written,
        fenced by the lock (a holder whose lease ran out raises
        ``StateLockLostError`` and writes nothing). If the block raises, nothing
        is written. Keep slow calls outside the block.
        """
        editing = _editing.get()
        if editing is not None and self._identity in editing:
            yield editing[self._identity]  # nested: the same live state
            return
        async with self._locked() as token:
            snapshot = await self._store.load_state(self._key)
            state = self._codec.decode(snapshot.blob)
            marker = _editing.set({**(editing or {}), self._identity: state})
            try:
                yield state
            finally:
                _editing.reset(marker)
            state = self._codec.check(state)
            blob = self._codec.encode(state)
            status = await self._store.save_state(self._key, blob, snapshot.version, token)
            if status is not SaveStatus.SAVED:
                raise StateLockLostError(
                    f"The edit_state() lease on {self._key!r} expired before the block ended; "
                    "its changes were not written"
                )

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[str]:
        token = secrets.token_hex(16)
        settings = self._locks
        if not await self._store.acquire_lock(self._key, token, settings.lease_s, settings.wait_s):
            raise StateLockTimeoutError(
                f"Could not acquire the state lock of {self._key!r} within {settings.wait_s} s"
            )
        renewer = asyncio.ensure_future(self._renew(token))
        try:
            yield token
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._store.release_lock(self._key, token)

    async def _renew(self, token: str) -> None:
        lease = self._locks.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            if not await self._store.renew_lock(self._key, token, lease):
                return

    def _live(self) -> Any:
        editing = _editing.get()
        return None if editing is None else editing.get(self._identity)

    # --- serialization ----------------------------------------------------------------

    def to_dict(self, serializer: BaseSerializer) -> dict[str, Any]:
        """The state in upstream's ``Context.to_dict()`` format."""
        snapshot = run_blocking(lambda: self._store.load_state(self._key))
        return self._codec.to_payload(snapshot.blob, serializer)


class InMemoryStateStore(StateStore[MODEL_T]):
    """A standalone state store in this process's memory, seeded with ``initial_state``."""

    def __init__(self, initial_state: MODEL_T, serializer: BaseSerializer | None = None) -> None:
        from stalkflow.adapters.memory_store import MemoryStore

        codec: StateCodec[MODEL_T] = StateCodec(type(initial_state), serializer)
        store = MemoryStore()
        blob = codec.encode(initial_state)
        run_blocking(lambda: store.save_state("state", blob, 0))
        super().__init__(store, "state", codec)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], serializer: BaseSerializer, state_type: type[Any] = DictState
    ) -> InMemoryStateStore[Any]:
        codec: StateCodec[Any] = StateCodec(state_type, serializer)
        blob = codec.from_payload(data, serializer) if data else None
        return cls(codec.decode(blob), serializer)


def infer_state_type(workflow: Workflow) -> type[BaseModel]:
    """The state model of a workflow: the most derived ``Context[T]`` of its steps.

    Steps that annotate plain ``Context`` share the same state. Models that are
    not in one inheritance chain raise ``ValueError``.
    """
    types = {
        config.context_state_type
        for config in workflow.step_configs().values()
        if config.context_state_type is not None
    }
    if not types:
        return DictState
    for candidate in types:
        if all(issubclass(candidate, other) for other in types):
            return candidate
    names = ", ".join(sorted(t.__name__ for t in types))
    raise ValueError(
        f"Multiple state types are not in a compatible inheritance hierarchy. Found: {names}"
    )
