"""Exceptions raised by stalkflow.

Every exception has one root, :class:`StalkflowError`, so that callers can catch
everything stalkflow raises in one place. The names that llama-index-workflows
defines (``WorkflowValidationError``, ``WorkflowTimeoutError`` ...) are kept with
the same meaning, so code written for it catches the same conditions here.
Exceptions carry the data a caller needs (``run_id``, ``step``, ``key``) as
attributes, not only in their message.
"""

from __future__ import annotations


class StalkflowError(Exception):
    """The root of every exception stalkflow raises."""


# --- the names of llama-index-workflows ---------------------------------------


class WorkflowValidationError(StalkflowError):
    """The workflow's step signatures, event graph or error handlers are invalid."""


class WorkflowConfigurationError(StalkflowError):
    """A configuration error detected before a run (no steps, no start/stop event)."""


class WorkflowTimeoutError(StalkflowError):
    """A run exceeded its workflow's timeout."""


class WorkflowRuntimeError(StalkflowError):
    """An error while routing events or executing steps."""


class WorkflowDone(StalkflowError):
    """Internal: the run ended while a step was still executing."""


class WorkflowCancelledByUser(StalkflowError):
    """The run was cancelled through its handler, its handle or the HTTP API."""


class WorkflowStepDoesNotExistError(StalkflowError):
    """A step name that the workflow does not have."""


class ContextSerdeError(StalkflowError):
    """A context could not be serialized or restored (``to_dict``/``from_dict``)."""


class ContextStateError(StalkflowError):
    """A context method was called in a phase where it is not available."""


# --- beyond upstream ----------------------------------------------------------


class WorkflowStalledError(WorkflowRuntimeError):
    """A run has nothing running, queued or waiting, and produced no StopEvent.

    Upstream hangs until the timeout in this situation; stalkflow fails the run at
    once with this error so that the caller learns why.
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class StepTimeoutError(WorkflowRuntimeError, TimeoutError):
    """A step body ran past its time limit (``@step(soft_time_limit=...)`` or the
    engine's ``step_timeout_s``).

    It is the step's failure: its retry policy and ``@catch_error`` apply as for
    any exception the step raises.
    """


class DeliveryLimitError(WorkflowRuntimeError):
    """One delivery was started too many times without ever finishing.

    Its worker process died each time (a step that kills its process, a hard
    ``time_limit``, the OOM killer) or lost the message. stalkflow stops
    redelivering it after ``max_deliveries`` starts and fails the step with this
    error instead of looping forever; ``@catch_error`` applies, the retry policy
    does not (the redeliveries were the retries).
    """


class StateError(StalkflowError):
    """The root of errors about a context's state."""


class StateSerializationError(StateError, ValueError):
    """A state value cannot be serialized by the context's serializer.

    Raised by ``ctx.store.set`` at once (upstream fails only at ``to_dict()``).
    It is a ``ValueError`` so that code written against upstream still catches it.
    """

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class StateLockTimeoutError(StateError, TimeoutError):
    """``edit_state()`` could not acquire the state lock within its wait bound."""


class StateLockLostError(StateError):
    """The ``edit_state()`` lease expired before the block ended.

    The block's writes were not committed: another holder may have written newer
    state since, and a fenced write never overwrites it.
    """


class UnknownStoreTypeError(ContextSerdeError, ValueError):
    """A serialized state names a ``store_type`` other than ``"in_memory"``.

    Such a state belongs to another kind of store (upstream's durable stores),
    which an in-memory state cannot be read from. It is a ``ValueError`` with
    upstream's message, as llama-index-workflows raises, so code written against
    it still catches it.
    """

    def __init__(self, store_type: object) -> None:
        super().__init__(
            f"Cannot parse store_type '{store_type}' as InMemorySerializedState. "
            "Use the appropriate store's from_dict() method."
        )
        self.store_type = store_type


class EventCodecError(StalkflowError, ValueError):
    """An event could not be encoded or decoded.

    Raised for a malformed message, a payload that fails validation, or an event
    type that the workflow does not register (such a type is never imported).
    """


class UnknownWorkflowError(StalkflowError, LookupError):
    """No workflow is registered under the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No workflow is registered under the name {name!r}")
        self.name = name


class WorkflowNotServedError(UnknownWorkflowError):
    """A worker received a step of a workflow it does not have.

    Its module is missing from the worker's ``STALKFLOW_WORKFLOWS`` (or the
    worker consumes a queue meant for others). The run fails with this error,
    naming the workflow and the worker, instead of waiting for its timeout.
    """

    def __init__(self, message: str, *, name: str = "") -> None:
        Exception.__init__(self, message)  # the message as given: it round-trips
        self.name = name


class RunError(StalkflowError):
    """The root of errors about a run addressed by id."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunNotFoundError(RunError, LookupError):
    """No run exists with the given id (it never existed, or it expired)."""


class RunFinishedError(RunError):
    """The run has already finished (completed, failed, cancelled or timed out)."""


class BackendError(StalkflowError):
    """The root of errors from the infrastructure (store, broker)."""


class StoreUnavailableError(BackendError, ConnectionError):
    """The state store cannot be reached."""


class BrokerUnavailableError(BackendError, ConnectionError):
    """The message broker cannot be reached."""


class MessageRejectedError(StalkflowError, ValueError):
    """A worker refused a message (malformed body, unknown step, pickle content)."""


class RunExistsError(RunError, RuntimeError):
    """A run with this id already exists."""
