"""Collect buffers: how they fill and hand out a set, and how a resumed run sees them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

E = TypeVar("E")
BufferKey = tuple[str, str]
Entry = tuple[str, E]  # (the lineage id of the delivery that buffered it, the event)


def resumable_buffers(
    buffers: Mapping[BufferKey, Sequence[Entry[E]]],
    completed: Mapping[str, Mapping[BufferKey, Sequence[Entry[E]]]],
    running: Collection[str],
) -> dict[BufferKey, list[E]]:
    """The buffers to restore, given the lineages of the deliveries still in progress.

    A delivery in progress re-runs on resume and buffers its event again, so its
    own entry is left out. A set that such a delivery completed but has not
    committed goes back into its buffer, less that delivery's own event, so the
    re-run completes it again.
    """
    restored: dict[BufferKey, list[E]] = {}
    for key, entries in buffers.items():
        kept = [event for owner, event in entries if owner not in running]
        if kept:
            restored[key] = kept
    for owner, sets in completed.items():
        if owner not in running:
            continue
        for key, picked in sets.items():
            returned = [event for other, event in picked if other != owner]
            if returned:
                restored.setdefault(key, [])[:0] = returned
    return restored


K = TypeVar("K", bound=Hashable)


def expected_counts(expected: Sequence[K]) -> dict[K, int]:
    """How many events of each kind ``collect_events(..., expected)`` waits for."""
    if expected and expected.count(expected[0]) == len(expected):
        return {expected[0]: len(expected)}  # the common ``[Kind] * n``, at C speed
    return dict(Counter(expected))


class Buffer(Generic[K, E]):
    """One collect buffer: adding an event and checking for a complete set are O(1).

    Entries keep their arrival order (snapshots restore them so); each kind
    keeps the positions of its entries, and each owner (the lineage id of the
    delivery that buffered it) is counted once, so a re-executed delivery never
    adds its event twice. A complete set takes, for the i-th occurrence of a
    kind in ``expected``, the i-th entry of that kind (first come, first
    collected), in ``expected``'s order.
    """

    __slots__ = ("_kinds", "_owners", "entries")

    def __init__(self, entries: Iterable[tuple[str, K, E]] = ()) -> None:
        self.entries: list[Entry[E]] = []
        self._kinds: dict[K, list[int]] = {}
        self._owners: set[str] = set()
        for owner, kind, event in entries:
            self.add(owner, kind, event)

    def add(self, owner: str, kind: K, event: E) -> bool:
        """Buffer ``event``; False (nothing changes) if ``owner`` buffered one already."""
        if owner in self._owners:
            return False
        self._owners.add(owner)
        self._kinds.setdefault(kind, []).append(len(self.entries))
        self.entries.append((owner, event))
        return True

    def complete(self, counts: Mapping[K, int]) -> bool:
        """Whether the buffer holds a set for ``counts`` (see :func:`expected_counts`)."""
        return all(len(self._kinds.get(kind, ())) >= n for kind, n in counts.items())

    def pick(self, expected: Sequence[K]) -> list[Entry[E]]:
        """The entries of a complete set, in ``expected``'s order."""
        taken: dict[K, int] = {}
        picked = []
        for kind in expected:
            index = taken.get(kind, 0)
            taken[kind] = index + 1
            picked.append(self.entries[self._kinds[kind][index]])
        return picked
