"""The memory store's deliveries of one run: claims, commits, the sweep, collect.

Each function carries out one ``Store`` operation on one :class:`RunEntry`, which
the store has looked up and whose lock it holds: ``begin`` claims a delivery
under a lease (or says why it may not run), ``commit`` applies an execution's
outcome once and fenced by its claim, ``sweep`` recovers what missed its
deadline, ``collect`` buffers an event until a set is complete. Deadlines are
``time.monotonic()`` seconds; ``policy`` gives the lease, the dispatch grace and
the start limit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from stalkflow.adapters._memory_run import RunEntry
from stalkflow.adapters._waiting import wake
from stalkflow.core.collect import Buffer, expected_counts
from stalkflow.core.deliveries import Delivery
from stalkflow.events import Event
from stalkflow.ports import Begin, BeginStatus, Commit, CommitResult, DeliveryPolicy, Recovered

# --- claims -------------------------------------------------------------------------


def begin(
    entry: RunEntry,
    delivery: Delivery,
    token: str,
    take_over: str | None,
    running: Event | None,
    policy: DeliveryPolicy,
) -> Begin:
    """Whether ``delivery`` may run, and if so claim it for ``token``."""
    delivery_id = delivery.delivery_id
    record = entry.record
    if record.finished:
        return Begin(BeginStatus.FINISHED, record)
    if delivery_id in entry.committed:
        return Begin(
            BeginStatus.DUPLICATE, record, redispatch=_unstarted(entry, delivery_id, policy)
        )
    if record.deadline is not None and time.time() >= record.deadline:
        return Begin(BeginStatus.EXPIRED, record)
    if delivery_id not in entry.in_progress:
        # not released here: nothing to claim
        return _run(entry, running, Begin(BeginStatus.RUN, record))
    now = time.monotonic()
    holder = entry.claims.get(delivery_id)
    live = entry.deadlines.get(delivery_id, 0) > now
    if holder is not None and holder not in (token, take_over) and live:
        return Begin(BeginStatus.BUSY, record, holder=holder)
    begins = entry.begins.get(delivery_id, 0)
    if holder != token:
        begins += 1
        entry.begins[delivery_id] = begins
    limit = policy.max_deliveries
    if limit > 0 and begins > limit:
        return Begin(BeginStatus.EXHAUSTED, record, begins=begins)
    entry.claims[delivery_id] = token
    entry.deadlines[delivery_id] = now + policy.lease_s
    entry.scheduled.discard(delivery_id)
    claimed = Begin(BeginStatus.RUN, record, token, policy.lease_s, begins)
    return _run(entry, running, claimed)


def _run(entry: RunEntry, running: Event | None, begin: Begin) -> Begin:
    """A ``RUN`` answer: the notice published, the run's waiters counted."""
    if running is not None:
        entry.stream.append(running)
        wake(entry.stream_waiters)
    return dataclasses.replace(begin, waiters=len(entry.waiters), waiter_seq=entry.waiter_seq)


def _unstarted(entry: RunEntry, delivery_id: str, policy: DeliveryPolicy) -> list[Delivery]:
    """What the commit of ``delivery_id`` released, never started, and is overdue.

    Each one handed out gets a fresh grace (as a sweep gives it).
    """
    now = time.monotonic()
    overdue = [
        child
        for child in entry.outbox.get(delivery_id, ())
        if child in entry.in_progress
        and child not in entry.claims
        and child not in entry.scheduled
        and entry.deadlines.get(child, float("inf")) <= now
    ]
    for child in overdue:
        entry.deadlines[child] = now + policy.dispatch_grace_s
    return [entry.in_progress[child] for child in overdue]


def heartbeat(entry: RunEntry, delivery_id: str, token: str, policy: DeliveryPolicy) -> bool:
    """Renew ``token``'s lease on ``delivery_id``; False if the claim is not its own."""
    if entry.record.finished or entry.claims.get(delivery_id) != token:
        return False
    entry.deadlines[delivery_id] = time.monotonic() + policy.lease_s
    return True


# --- lost and delayed deliveries ----------------------------------------------------


def sweep(
    entry: RunEntry, now: float, limit: int, recovered: list[Recovered], policy: DeliveryPolicy
) -> bool:
    """Add what of the run is due to ``recovered``, up to ``limit`` in all; False once full.

    Waiters whose timeout is kept here expire (their step's re-run is recovered
    as scheduled); deliveries past their deadline are handed out again with a
    fresh grace, unclaimed.
    """
    for waiter_id, deadline in list(entry.waiter_deadlines.items()):
        if deadline <= now and len(recovered) < limit:
            released: list[Delivery] = []
            entry.expire(waiter_id, released, policy.dispatch_grace_s)
            recovered.extend(Recovered(d, scheduled=True) for d in released)
    for delivery_id, deadline in list(entry.deadlines.items()):
        if len(recovered) >= limit:
            return False
        delivery = entry.in_progress.get(delivery_id)
        if delivery is None:
            del entry.deadlines[delivery_id]
            continue
        if deadline > now:
            continue
        scheduled = delivery_id in entry.scheduled
        entry.scheduled.discard(delivery_id)
        entry.claims.pop(delivery_id, None)
        entry.deadlines[delivery_id] = now + policy.dispatch_grace_s
        recovered.append(Recovered(delivery, scheduled))
    return True


def redispatch_soon(entry: RunEntry, delivery_ids: Sequence[str], due: float) -> None:
    """Make the unclaimed ones of ``delivery_ids`` due for the sweep at ``due``."""
    if entry.record.finished:
        return
    for delivery_id in delivery_ids:
        if delivery_id in entry.in_progress and delivery_id not in entry.claims:
            entry.deadlines[delivery_id] = due


# --- commits ------------------------------------------------------------------------


def commit(entry: RunEntry, commit: Commit, policy: DeliveryPolicy) -> CommitResult:
    """Apply one execution's outcome to the run, at most once per delivery."""
    if entry.record.finished:
        return entry.result(False, [])
    stream_length = len(entry.stream)
    delivery = commit.delivery
    if delivery is not None:
        delivery_id = delivery.delivery_id
        if delivery_id in entry.committed:
            return entry.result(False, [])
        holder = entry.claims.get(delivery_id)
        if commit.token is not None and holder is not None and holder != commit.token:
            return entry.result(False, [])  # fenced: another execution claimed it
    if commit.waiter_seq is not None and commit.waiter_seq != entry.waiter_seq:
        # a waiter registered since the caller routed might take an output
        return dataclasses.replace(entry.result(False, []), stale=True)
    if delivery is not None:
        entry.committed.add(delivery_id)
        entry.in_progress.pop(delivery_id, None)
        for bookkeeping in (entry.deadlines, entry.claims, entry.begins):
            bookkeeping.pop(delivery_id, None)
        entry.scheduled.discard(delivery_id)
        if commit.retry is None:
            entry.completed_sets.pop(delivery.lineage_id, None)
    grace_s = policy.dispatch_grace_s
    released: list[Delivery] = []
    if commit.retry is not None:
        retry_id = commit.retry.delivery_id
        entry.in_progress[retry_id] = commit.retry
        due = time.monotonic() + max(0.0, commit.retry_delay_s)
        if commit.retry_in_store:
            entry.scheduled.add(retry_id)
            entry.deadlines[retry_id] = due
        else:
            entry.deadlines[retry_id] = due + grace_s
    elif delivery is not None:
        entry.free_slot(delivery.step, released, grace_s)
    waiter = commit.waiter
    if waiter is not None:
        first = entry.register(waiter)
        if first and commit.waiter_event is not None:
            entry.stream.append(commit.waiter_event)
        if commit.waiter_timeout_in_store and waiter.timeout_s is not None:
            due = time.monotonic() + max(0.0, waiter.timeout_s)
            entry.waiter_deadlines[waiter.waiter_id] = due
    for waiter_id, redelivery in commit.resolved:
        if entry.unregister(waiter_id) is not None:
            entry.admit(redelivery, released, grace_s)
    for routed in commit.routed:
        entry.admit(routed, released, grace_s)
    entry.stream.extend(commit.stream)
    if delivery is not None and released:
        entry.outbox[delivery.delivery_id] = [d.delivery_id for d in released]
    if commit.outcome is not None:
        entry.finish(commit.outcome)
    elif len(entry.stream) != stream_length:
        # also the notices of deliveries queued behind a cap
        wake(entry.stream_waiters)
    return entry.result(True, released)


def expire_waiter(entry: RunEntry, waiter_id: str, policy: DeliveryPolicy) -> CommitResult:
    """Time a waiter out; ``committed`` is False if it was not waiting."""
    if entry.record.finished:
        return entry.result(False, [])
    released: list[Delivery] = []
    expired = entry.expire(waiter_id, released, policy.dispatch_grace_s)
    return entry.result(expired, released)


# --- collect ------------------------------------------------------------------------


def collect(
    entry: RunEntry,
    key: tuple[str, str],
    delivery_id: str,
    event: Event,
    expected: Sequence[type[Event]],
) -> list[Event] | None:
    """Buffer ``event`` under ``key``; the complete set once ``expected`` is met, else None."""
    done = entry.completed_sets.get(delivery_id, {}).get(key)
    if done is not None:
        return [event for _, event in done]
    if (key, delivery_id) in entry.consumed:
        return None
    buffer = entry.buffers.get(key)
    if buffer is None:
        buffer = entry.buffers[key] = Buffer()
    counts = expected_counts(expected)
    if type(event) in counts:
        buffer.add(delivery_id, type(event), event)
    if not buffer.complete(counts):
        return None
    picked = buffer.pick(expected)
    del entry.buffers[key]
    entry.consumed.update((key, buffered) for buffered, _ in buffer.entries)
    entry.completed_sets.setdefault(delivery_id, {})[key] = picked
    return [event for _, event in picked]
