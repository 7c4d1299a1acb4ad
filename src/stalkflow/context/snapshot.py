"""``Context.to_dict()`` and ``Context.from_dict()``: a run as upstream's serialized dict.

The format is upstream's (version 2, as llama-index-workflows 2.26 writes it;
versions 0 and 1 are read too), so a dict saved by llama-index-workflows
restores here and the other way round: ``{"version": 2, "state": ..., "is_running": ...,
"workers": {step: {"queue", "in_progress", "collected_events",
"collected_waiters", ...}}, ...}``, events as serializer strings. Steps the
workflow does not have are skipped on restore, as upstream does. A waiter is restored as
a waiter, so an answer sent right after the resume finds it. Its requirements
are written too when the serializer can encode them (an extra key upstream
ignores); a waiter whose requirements could not be written matches its event
type alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from stalkflow._sync import run_blocking
from stalkflow.context.serializers import BaseSerializer, JsonSerializer
from stalkflow.context.state_codec import StateCodec
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.ids import new_delivery_id
from stalkflow.core.runs import RunStatus
from stalkflow.errors import ContextSerdeError
from stalkflow.events import Event, _exception_from_json

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.workflow import Workflow

VERSION = 2
RESUMABLE = (RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.TIMED_OUT)


@dataclasses.dataclass(frozen=True)
class Restored:
    """A parsed ``to_dict()`` payload, ready to seed a run."""

    raw: dict[str, Any]
    is_running: bool
    state: dict[str, Any] | None
    queued: list[tuple[str, Event, int]]
    buffers: dict[tuple[str, str], list[Event]]
    waiters: list[RestoredWaiter] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RestoredWaiter:
    step: str
    waiter_id: str
    event: Event
    event_type: type[Event]
    requirements: dict[str, Any]
    timeout_s: float | None
    waiter_event: Event | None = None


def rebuild_exception(error: ErrorInfo) -> Exception:
    """An exception of the recorded type if it is already imported, else a stand-in."""
    return _exception_from_json(
        {"exception_type": error.type_name, "exception_message": error.message}
    )


def _decoder(workflow: Workflow, serializer: BaseSerializer) -> BaseSerializer:
    if type(serializer) is JsonSerializer:
        return JsonSerializer(allowed_types=list(workflow._plan().event_types.values()))
    return serializer


def _decode_event(serializers: list[BaseSerializer], raw: Any) -> Event:
    error: Exception | None = None
    for serializer in serializers:
        try:
            event = serializer.deserialize(raw)
        except Exception as exc:
            error = exc
            continue
        if isinstance(event, Event):
            return event
    raise ContextSerdeError(f"Context dict holds an event that cannot be restored: {error}")


def parse(workflow: Workflow, data: dict[str, Any], serializer: BaseSerializer) -> Restored:
    """Validate and parse a ``to_dict()`` payload eagerly; state is decoded later."""
    if not isinstance(data, dict):
        raise ContextSerdeError(
            "Context dict specified in an invalid format: expected a dict, "
            f"got {type(data).__name__}"
        )
    serializers = [_decoder(workflow, serializer), serializer]
    try:
        version = data.get("version")
        if version is not None and (not isinstance(version, int) or version > VERSION):
            raise ContextSerdeError(
                f"Cannot load serialized workflow context with version={version!r}; "
                f"this library supports up to version {VERSION}."
            )
        if not version:
            data = _from_v0(data)
        state = data.get("state")
        if state is not None and not isinstance(state, dict):
            raise ContextSerdeError(
                "Context dict specified in an invalid format: 'state' must be a dict"
            )
        if state:
            _check_state(workflow, state, serializer)
        workers = data.get("workers", {})
        if not isinstance(workers, dict):
            raise ContextSerdeError(
                "Context dict specified in an invalid format: 'workers' must be a dict"
            )
        steps = set(workflow._plan().configs)
        queued: list[tuple[str, Event, int]] = []
        waiters: list[RestoredWaiter] = []
        buffers: dict[tuple[str, str], list[Event]] = {}
        for step_name, worker in workers.items():
            if step_name not in steps:
                # A step of another workflow (or one since removed): skipped, as
                # upstream does, so a context can move to a workflow of other steps.
                continue
            for item in worker.get("queue", []):
                raw, attempts = (
                    (item["event"], int(item.get("attempts", 0)))
                    if isinstance(item, dict)
                    else (item, 0)
                )
                queued.append((step_name, _decode_event(serializers, raw), attempts))
            for raw in worker.get("in_progress", []):
                raw_event = raw["event"] if isinstance(raw, dict) else raw
                queued.append((step_name, _decode_event(serializers, raw_event), 0))
            for waiter in worker.get("collected_waiters", []):
                waiters.append(_restore_waiter(workflow, step_name, waiter, serializers))
            for buffer_id, events in worker.get("collected_events", {}).items():
                buffers[(step_name, buffer_id)] = [_decode_event(serializers, e) for e in events]
        return Restored(
            raw=data,
            is_running=bool(data.get("is_running", False)),
            state=state,
            queued=queued,
            buffers=buffers,
            waiters=waiters,
        )
    except ContextSerdeError:
        raise
    except KeyError as exc:
        raise ContextSerdeError(
            f"Error creating a Context instance: the provided payload has a wrong or old format "
            f"(missing {exc})."
        ) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ContextSerdeError(f"Context dict specified in an invalid format: {exc}") from exc


def _restore_waiter(
    workflow: Workflow, step: str, raw: dict[str, Any], serializers: list[BaseSerializer]
) -> RestoredWaiter:
    from stalkflow.context.serializers import resolve_qualified_name

    name = str(raw["waiting_for_event"])
    event_type = workflow._plan().event_types.get(name)
    if event_type is None:  # a type only named in a wait_for_event call; trusted input
        event_type = resolve_qualified_name(name)
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise ContextSerdeError(f"Context dict names a waiter for {name!r}, which is no event")
    requirements: dict[str, Any] = {}
    if raw.get("requirements") is not None:
        requirements = dict(serializers[-1].deserialize(raw["requirements"]))
    timeout = raw.get("timeout")
    prompt = raw.get("waiter_event")
    return RestoredWaiter(
        waiter_event=None if prompt is None else _decode_event(serializers, prompt),
        step=step,
        waiter_id=str(raw["waiter_id"]),
        event=_decode_event(serializers, raw["event"]),
        event_type=event_type,
        requirements=requirements,
        timeout_s=None if timeout is None else float(timeout),
    )


def restored_waiters(restored: Restored, run_id: str, workflow: str) -> list[Waiter]:
    return [
        Waiter(
            waiter_id=w.waiter_id,
            event_type=w.event_type,
            requirements=w.requirements,
            delivery=Delivery(run_id, workflow, w.step, w.event, new_delivery_id()),
            timeout_s=w.timeout_s,
            waiter_event=w.waiter_event,
        )
        for w in restored.waiters
    ]


def _check_state(workflow: Workflow, state: dict[str, Any], serializer: BaseSerializer) -> None:
    """Decode the state once now, so that a corrupted or foreign one fails at ``from_dict``."""
    from stalkflow.context.state_codec import StateCodec
    from stalkflow.context.state_store import infer_state_type

    codec: StateCodec[Any] = StateCodec(infer_state_type(workflow), serializer)
    try:
        codec.from_payload(state, serializer)
    except ContextSerdeError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ContextSerdeError(
            f"Context dict holds a state that cannot be restored: {first}"
        ) from exc


def _from_v0(data: dict[str, Any]) -> dict[str, Any]:
    """The oldest format: queues as JSON strings, in-progress events at the top level."""
    import json

    workers: dict[str, dict[str, Any]] = {}
    for step_name, raw_queue in data.get("queues", {}).items():
        if step_name in data.get("waiting_ids", []):
            continue
        events = json.loads(raw_queue) if isinstance(raw_queue, str) else raw_queue
        workers.setdefault(step_name, {})["queue"] = list(events)
    for step_name, events in data.get("in_progress", {}).items():
        workers.setdefault(step_name, {})["in_progress"] = list(events)
    return {
        "state": data.get("state") or None,
        "is_running": data.get("is_running", False),
        "workers": workers,
    }


def seed_deliveries(restored: Restored, run_id: str, workflow: str) -> list[Delivery]:
    return [
        Delivery(
            run_id=run_id,
            workflow=workflow,
            step=step,
            event=event,
            delivery_id=new_delivery_id(),
            attempt=max(1, attempts),
        )
        for step, event, attempts in restored.queued
    ]


def export(
    workflow: Workflow,
    engine: Engine,
    run_id: str,
    codec: StateCodec[Any],
    serializer: BaseSerializer,
) -> dict[str, Any]:
    snap = run_blocking(lambda: engine.store.snapshot(run_id))
    if snap is None:
        raise ContextSerdeError(f"Workflow run {run_id!r} no longer exists; nothing to export")
    plan = workflow._plan()
    workers = {name: _empty_worker() for name in plan.configs}
    resumable = snap.run.status in RESUMABLE
    if resumable:
        for delivery in snap.queued:
            workers[delivery.step]["queue"].append(_queue_item(delivery, serializer))
        for delivery in snap.in_progress:
            workers[delivery.step]["in_progress"].append(_queue_item(delivery, serializer))
        for waiter in snap.waiters:
            entry: dict[str, Any] = {
                "waiter_id": waiter.waiter_id,
                "event": serializer.serialize(waiter.delivery.event),
                "waiting_for_event": _type_name(waiter.event_type),
                "has_requirements": bool(waiter.requirements),
                "resolved_event": None,
                "timeout": waiter.timeout_s,
            }
            if waiter.waiter_event is not None:
                entry["waiter_event"] = serializer.serialize(waiter.waiter_event)
            if waiter.requirements:
                with contextlib.suppress(Exception):  # not encodable: matched by type alone
                    entry["requirements"] = serializer.serialize(dict(waiter.requirements))
            workers[waiter.delivery.step]["collected_waiters"].append(entry)
        for (step_name, buffer_id), events in snap.buffers.items():
            workers[step_name]["collected_events"][buffer_id] = [
                serializer.serialize(e) for e in events
            ]
    return _document(codec.to_payload(snap.state.blob, serializer), resumable, workers, {})


def export_initial(
    workflow: Workflow, restored: Restored | None, state: dict[str, Any]
) -> dict[str, Any]:
    """``to_dict()`` of a context before its run: the snapshot the run will start from.

    A new context gives every step an empty worker and ``state`` as given (``{}``
    while its store is untouched, as upstream writes it); a restored one keeps
    what it was restored from, steps the workflow does not have left out, so
    ``from_dict`` of the result followed by ``run(ctx=...)`` behaves as the original.
    """
    raw = restored.raw if restored is not None else {}
    raw_workers = raw.get("workers") or {}
    workers: dict[str, dict[str, Any]] = {}
    for name in workflow._plan().configs:
        worker = _empty_worker()
        saved = raw_workers.get(name)
        if isinstance(saved, dict):
            worker.update({key: saved[key] for key in worker if key in saved})
        workers[name] = worker
    is_running = restored is not None and restored.is_running
    return _document(state, is_running, workers, raw)


def _empty_worker() -> dict[str, Any]:
    """One step's entry in ``workers``, with every key upstream 2.26 writes."""
    return {
        "queue": [],
        "in_progress": [],
        "collected_events": {},
        "collect_generations": {},
        "static_collect_events": [],
        "collected_waiters": [],
    }


def _document(
    state: dict[str, Any],
    is_running: bool,
    workers: dict[str, dict[str, Any]],
    saved: dict[str, Any],
) -> dict[str, Any]:
    """The whole ``to_dict()`` payload, keys in upstream 2.26's order.

    After ``workers`` upstream writes counters and buffers of its own runtime.
    stalkflow keeps none of them: it writes the values found in ``saved`` (a
    dict it was restored from) or else upstream's initial ones, which upstream
    also assumes for a missing key, so writing them changes nothing on its side.
    """
    document: dict[str, Any] = {
        "version": VERSION,
        "state": state,
        "is_running": is_running,
        "workers": workers,
    }
    initial: dict[str, Any] = {
        "stream_seq": 0,
        "work_item_seq": 0,
        "invocation_seq": 0,
        "deliveries": [],
        "streams": {},
        "collection_release_states": {},
        "elapsed_alive": 0.0,
        "last_alive_stamp": None,
        "journal_seq": 0,
    }
    for key, value in initial.items():
        document[key] = saved.get(key, value)
    return document


def _type_name(kind: type[Event]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _queue_item(delivery: Delivery, serializer: BaseSerializer) -> dict[str, Any]:
    return {
        "event": serializer.serialize(delivery.event),
        "attempts": delivery.attempt - 1,
        "first_attempt_at": delivery.first_attempt_at,
        "last_exception": None,
        "last_failed_at": delivery.last_failed_at,
        "recovery_counts": dict(delivery.recoveries),
    }
