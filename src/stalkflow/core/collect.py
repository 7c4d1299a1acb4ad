"""Collect buffers as a run resumed from a snapshot must see them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

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
