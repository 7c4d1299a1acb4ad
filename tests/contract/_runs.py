"""Runs of the contract workflow, for the suites that hold a ``Store`` to its promises.

A run is created straight in the store (no ``Workflow``, no executor): its seed
deliveries carry ``Ping`` events to the contract steps ``"a"`` and ``"b"``.
"""

from __future__ import annotations

import time
import uuid

from stalkflow.core.deliveries import Delivery
from stalkflow.core.runs import RunRecord
from stalkflow.events import Event
from stalkflow.ports import RunSeed, Store


class Ping(Event):
    n: int = 0


def delivery(run_id: str, step: str = "a", n: int = 0) -> Delivery:
    """A delivery of ``Ping(n=n)`` to ``step`` of the run, with a fresh id."""
    return Delivery(run_id, "contract", step, Ping(n=n), f"d-{uuid.uuid4().hex[:12]}")


async def start(store: Store, *steps: str) -> tuple[str, list[Delivery]]:
    """Create a run seeded with one delivery to each of ``steps`` (``Ping(n=i)`` for the i-th).

    Each step may run 4 deliveries at once. Returns the run's id and the seeds.
    """
    now = time.time()
    run = RunRecord(run_id=f"run-{uuid.uuid4().hex[:12]}", workflow="contract", created_at=now)
    seeds = [delivery(run.run_id, step, i) for i, step in enumerate(steps)]
    await store.create_run(run, RunSeed(caps={"a": 4, "b": 4}, deliveries=seeds))
    return run.run_id, seeds
