"""Executing one delivery: begin, run the step body, commit, dispatch.

This is the same code on every engine: the embedded one calls it from an
asyncio task, a Celery worker from its task. Its decisions (where outputs go,
whether to retry, whether the run is done or stalled) are the pure functions of
``stalkflow.core``; the store applies them atomically. One module per phase:

- ``begin``: the store's ``begin`` claims the delivery (and publishes the step's
  RUNNING notice in the same operation); a dead holder's claim is taken over;
- ``body``: the step body runs with a Context bound to the delivery, under its
  time limit; its outcome is ``Returned``, ``Waiting`` or ``Failed``;
- ``commit``: the outcome becomes one ``Commit`` (routing, retry, recovery,
  completion), applied atomically by the store;
- ``dispatch``: what the commit released is sent; stalled runs are failed;
- ``sweep``: workers re-send deliveries presumed lost, and retries now due;
- ``claims``: claim tokens, and the heartbeat that renews a claim's lease;
- ``executor``: the ``Executor`` that strings the phases together.

What survives failures (see ``docs/guarantees.md``):

- ``begin`` claims the delivery under a lease that a heartbeat renews while the
  body runs; another copy of the message meanwhile is dropped (``BUSY``), and
  the commit is fenced by the claim;
- a redelivered message of a committed delivery re-sends what that commit
  released and never started (its dispatch failed): the store's outbox;
- ``sweep_once`` (run periodically by workers) re-sends deliveries whose worker
  died or whose message was lost, retries kept in the store until due, and
  expires waiters whose timeout is kept in the store;
- a delivery started ``max_deliveries`` times without a commit fails its step
  with ``DeliveryLimitError``; a body past its time limit fails with
  ``StepTimeoutError``; both follow the ``@catch_error`` rules of any step
  exception (and a timeout the retry policy too).
"""

from __future__ import annotations

from stalkflow.execution.claims import claim_token, holder_is_dead
from stalkflow.execution.executor import Executor
from stalkflow.execution.settings import ExecutionSettings, describe

__all__ = ["ExecutionSettings", "Executor", "claim_token", "describe", "holder_is_dead"]
