"""The two ports of the engine: where deliveries travel, and where runs live.

``Transport`` carries deliveries to the code that executes them: an asyncio task
in this process (``adapters.local_transport``) or a Celery task on a worker
(``adapters.celery_transport``). ``Store`` keeps everything about a run that must
outlive one step execution: its record, its Context state, its queued and
in-flight deliveries, collect buffers, waiters and its event stream. Every method
that changes more than one of those does it atomically; the contract suites in
``tests/contract`` hold each adapter to these promises.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.events import Event

# --- values exchanged with a Store ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StateSnapshot:
    """A context state as stored: an encoded blob and the version that wrote it."""

    version: int
    blob: str | None


class SaveStatus(enum.Enum):
    SAVED = "saved"
    CONFLICT = "conflict"  # the version changed since it was read
    LOCKED = "locked"  # another holder has the edit lock
    LOST = "lost"  # the caller's lock token no longer holds the lock


class BeginStatus(enum.Enum):
    RUN = "run"  # execute the step: the caller now holds the delivery's claim
    DUPLICATE = "duplicate"  # already committed: a redelivered message
    FINISHED = "finished"  # the run has ended; drop the delivery
    EXPIRED = "expired"  # the run is past its deadline
    MISSING = "missing"  # no such run (never existed, or expired)
    BUSY = "busy"  # another execution holds a live claim on it: drop this copy
    EXHAUSTED = "exhausted"  # started ``max_deliveries`` times without a commit: fail it


@dataclasses.dataclass(frozen=True)
class Begin:
    """What ``Store.begin`` decided.

    ``RUN``: the caller holds the delivery's claim under ``token`` for ``lease_s``
    seconds; it renews it with ``Store.heartbeat`` and commits with it.
    ``begins`` counts the executions started (``RUN``, ``EXHAUSTED``).
    ``DUPLICATE``: ``redispatch`` lists what the earlier commit of this delivery
    released that never started and is overdue (its dispatch failed, and was
    marked with ``redispatch_soon``; or its grace ran out): send them again.
    ``BUSY``: ``holder`` is the token of the live claim (an executor that knows its
    holder is dead may ``begin`` again with ``take_over=holder``).
    ``waiters``: how many waiters the run has (``RUN``), so that an executor routes
    without reading them when there are none; ``waiter_seq`` counts the waiters
    ever registered in the run, for ``Commit.waiter_seq``.
    """

    status: BeginStatus
    run: RunRecord | None = None
    token: str | None = None
    lease_s: float = 0.0
    begins: int = 0
    redispatch: Sequence[Delivery] = ()
    holder: str | None = None
    waiters: int = 0
    waiter_seq: int = 0


@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    """How a store notices deliveries that were lost, and how often one may be started.

    Every released delivery has a deadline. A delivery being executed has a
    claim renewed by its executor's heartbeat; once ``lease_s`` passes with no
    heartbeat (the worker died, or lost the message), ``Store.sweep`` hands it
    out again. A delivery released but never started (its message never
    arrived, or waits behind a backlog) is handed out again after
    ``dispatch_grace_s``. ``max_deliveries`` bounds how many times one delivery
    is started without a commit (a step that kills its own process): the next
    start reports ``EXHAUSTED`` and the executor fails the step.
    """

    lease_s: float = 30.0
    dispatch_grace_s: float = 300.0
    max_deliveries: int = 5


@dataclasses.dataclass(frozen=True)
class Recovered:
    """A delivery ``Store.sweep`` hands out for dispatch.

    ``scheduled``: a retry kept in the store until its delay passed (normal);
    otherwise a delivery presumed lost (no heartbeat, or never started).
    """

    delivery: Delivery
    scheduled: bool = False


@dataclasses.dataclass(frozen=True)
class Commit:
    """Everything one step execution changes, applied atomically by ``Store.commit``.

    ``delivery`` is the executed delivery: its id is recorded so that a second
    commit of it changes nothing, and its step's ``num_workers`` slot is freed
    (unless ``retry`` keeps it). ``None`` means an event sent from outside a step.
    ``token`` fences the commit: when another execution has claimed the delivery
    since (this one's lease ran out), nothing is applied. ``retry_in_store``
    keeps the retry in the store until its delay has passed (``Store.sweep``
    hands it out then) instead of the caller sending it with a countdown;
    ``waiter_timeout_in_store`` does the same for the timeout of ``waiter``: once
    it passes, ``Store.sweep`` expires the waiter and hands out its step's re-run.
    ``waiter_seq``: the run's ``Begin.waiter_seq`` that routing saw; if a waiter
    has been registered since (it might match an output), nothing is applied and
    the result is ``stale``: route again with the run's waiters and commit again.
    """

    delivery: Delivery | None
    routed: Sequence[Delivery] = ()
    resolved: Sequence[tuple[str, Delivery]] = ()
    waiter: Waiter | None = None
    waiter_event: Event | None = None
    retry: Delivery | None = None
    retry_delay_s: float = 0.0
    stream: Sequence[Event] = ()
    outcome: RunOutcome | None = None
    token: str | None = None
    retry_in_store: bool = False
    waiter_timeout_in_store: bool = False
    waiter_seq: int | None = None


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """What a commit released for dispatch, and how busy the run is afterwards.

    ``stale``: nothing was applied because a waiter was registered after the
    commit's ``waiter_seq`` (see ``Commit``).
    """

    committed: bool
    released: Sequence[Delivery] = ()
    status: RunStatus = RunStatus.RUNNING
    in_flight: int = 0
    waiters: int = 0
    hitl: bool = False
    stale: bool = False


@dataclasses.dataclass(frozen=True)
class StreamEntry:
    sequence: int
    event: Event


@dataclasses.dataclass(frozen=True)
class RunSeed:
    """What a new run starts from: caps, state, and work to enqueue.

    A fresh run has one delivery (its StartEvent); a run restored from a
    ``Context.to_dict()`` snapshot brings its queued deliveries, waiters and
    collect buffers.
    """

    caps: Mapping[str, int]
    state: str | None = None
    deliveries: Sequence[Delivery] = ()
    waiters: Sequence[Waiter] = ()
    buffers: Mapping[tuple[str, str], Sequence[Event]] = dataclasses.field(default_factory=dict)
    # published to the stream once the run exists (a restored waiter's prompt)
    stream: Sequence[Event] = ()
    # the ids of ``waiters`` whose timeout (from now) the store keeps, like
    # ``Commit.waiter_timeout_in_store``; the others' timers are the caller's
    timeouts_in_store: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    """Everything about a run at one moment, for ``Context.to_dict()``."""

    run: RunRecord
    state: StateSnapshot
    queued: Sequence[Delivery]
    in_progress: Sequence[Delivery]
    waiters: Sequence[Waiter]
    buffers: Mapping[tuple[str, str], Sequence[Event]]


# --- the ports -----------------------------------------------------------------------


@runtime_checkable
class Store(Protocol):
    """Where runs live between step executions."""

    # runs
    async def create_run(self, run: RunRecord, seed: RunSeed) -> Sequence[Delivery]:
        """Create the run and enqueue its seed deliveries; return those released now.

        Raises ``RunExistsError`` if a run with that id exists.
        """

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self, *, workflow: str | None = None, status: RunStatus | None = None
    ) -> Sequence[RunRecord]: ...

    async def finish_run(self, run_id: str, outcome: RunOutcome) -> bool:
        """End a running run with ``outcome``; False if it had already ended."""

    async def wait_finished(self, run_id: str, timeout_s: float | None) -> RunRecord | None:
        """The run's record once it has finished, or None when ``timeout_s`` passes first."""

    async def snapshot(self, run_id: str) -> RunSnapshot | None: ...

    # execution
    async def begin(
        self,
        delivery: Delivery,
        token: str | None = None,
        take_over: str | None = None,
        running: Event | None = None,
    ) -> Begin:
        """Check that ``delivery`` should run now, and claim it.

        Run live, not yet committed, not claimed by another live execution,
        started fewer than ``max_deliveries`` times. ``token`` names the claim
        (re-using one this caller holds: an execution retried in place);
        ``take_over`` is a holder's token the caller knows to be dead.
        ``running`` is appended to the run's stream, in the same operation, when
        the answer is ``RUN`` (the step's ``StepStateChanged`` notice).
        """

    async def heartbeat(self, run_id: str, delivery_id: str, token: str) -> bool:
        """Renew the claim's lease; False once the claim is no longer ``token``'s."""

    async def commit(self, run_id: str, commit: Commit) -> CommitResult:
        """Apply ``commit`` atomically, once per delivery id."""

    async def sweep(self, limit: int = 100, workflows: Sequence[str] = ()) -> Sequence[Recovered]:
        """Deliveries to dispatch again: retries now due, and those presumed lost.

        Each is handed out once per deadline (its deadline moves on, its claim is
        dropped), so several processes may sweep at once. ``workflows`` limits
        the sweep to runs of those workflows (empty: all).
        """

    async def redispatch_soon(
        self, run_id: str, delivery_ids: Sequence[str], delay_s: float = 0.0
    ) -> None:
        """Make released, unstarted deliveries due for ``sweep`` in ``delay_s`` (their
        dispatch failed)."""

    async def expire_waiter(self, run_id: str, waiter_id: str) -> CommitResult:
        """Time a waiter out: remove it and release its step's re-run, if still waiting."""

    def collect(
        self,
        run_id: str,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[Event] | None:
        """Buffer ``event``; return the complete set, in ``expected`` order, exactly once.

        Synchronous, because upstream's ``ctx.collect_events`` is.
        """

    async def waiters(self, run_id: str) -> Sequence[Waiter]: ...

    # state
    async def load_state(self, key: str) -> StateSnapshot: ...

    async def save_state(
        self, key: str, blob: str, expected_version: int, token: str | None = None
    ) -> SaveStatus:
        """Write ``blob`` if the version is still ``expected_version`` and no other holder
        has the edit lock (or ``token`` holds it)."""

    async def acquire_lock(self, key: str, token: str, lease_s: float, wait_s: float) -> bool: ...

    async def renew_lock(self, key: str, token: str, lease_s: float) -> bool: ...

    async def release_lock(self, key: str, token: str) -> None: ...

    # stream
    async def append_stream(self, run_id: str, events: Sequence[Event]) -> bool:
        """Publish events to the run's stream; False (nothing written) once it has ended."""

    async def read_stream(
        self, run_id: str, after: int, timeout_s: float | None
    ) -> Sequence[StreamEntry]:
        """Entries with a sequence above ``after`` (``-1`` for all); waits up to ``timeout_s``
        for at least one."""


#: Executes one delivery where it arrives; returns the waiter its step registered
#: when it ended in ``wait_for_event`` (a transport may show the task as waiting).
Executor = Callable[[Delivery], Awaitable[Waiter | None]]
#: Told about deliveries a transport accepted (``dispatch`` returned) and then
#: failed to send, with their delay and the error: the store marks them for a resend.
Unsent = Callable[[Sequence[Delivery], float, BaseException], Awaitable[None]]


@runtime_checkable
class Transport(Protocol):
    """Carries deliveries to the code that executes them."""

    def start(self, execute: Executor) -> None:
        """Bind the function that executes a delivery where it arrives."""

    async def dispatch(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Send deliveries for execution, after ``delay_s`` seconds.

        Raises ``BackendError`` when sending fails (but see ``SendsLater``).
        """

    def run_finished(self, run_id: str) -> None:
        """The run ended: executions of it still under way may be abandoned."""


@runtime_checkable
class SendsLater(Protocol):
    """A transport that sends what an execution dispatched once that execution has ended.

    Called while a delivery executes on a worker, its ``dispatch`` may return at
    once and leave the sending to the worker's step task, after the execution
    (as a Celery task sends its follow-ups), sparing a thread handoff per
    message. Should that sending fail, it tells ``unsent`` (the store then
    marks those deliveries to be sent again soon) and has the delivery executed
    again: its ``begin`` is ``DUPLICATE`` and re-sends them from the outbox.
    """

    def on_unsent(self, unsent: Unsent) -> None:
        """Bind the function to tell about deliveries accepted but not sent."""
