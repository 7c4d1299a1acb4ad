"""How the Redis store's values look inside Redis and in its Lua scripts' arguments.

Pure translation, no I/O: ``RedisWire`` turns ports values into the JSON specs
the scripts take, with an :class:`~stalkflow.core.codec.EventCodec` for every
event, delivery, waiter and run record. The scripts never parse an encoded
value: each travels as an opaque string next to the few fields a script acts on
(a delivery's id and step). The way back, from script replies to ports values,
is :mod:`stalkflow.adapters._redis_replies`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from stalkflow.core.codec import EventCodec, type_name
from stalkflow.core.collect import expected_counts
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord
from stalkflow.events import Event, StepState, StepStateChanged
from stalkflow.ports import Commit, DeliveryPolicy, RunSeed

#: State notices the wire keeps encoded, at most.
_MEMO_MAX = 1024


class RedisWire:
    """Encodes script arguments for one store."""

    def __init__(
        self,
        codec: EventCodec,
        finished_ttl_s: float,
        policy: DeliveryPolicy | None = None,
        finished_channel: str | None = None,
    ) -> None:
        self.codec = codec
        self.finished_channel = finished_channel
        self._ttl_ms = max(1, round(finished_ttl_s * 1000))
        self.policy = policy or DeliveryPolicy()
        self.lease_ms = _ms(self.policy.lease_s)
        # a delivery never gets a shorter grace than a lease: sweeps look at a run
        # at least once a lease, and every deadline must be at least that far off
        self.grace_ms = max(self.lease_ms, _ms(self.policy.dispatch_grace_s))
        self._enqueued: dict[tuple[str, str], str] = {}
        self._notices: dict[tuple[Any, ...], str] = {}

    # --- values ---------------------------------------------------------------------

    def dumps(self, obj: Any) -> str:
        return self.codec.dumps(obj)

    def event(self, ev: Event) -> str:
        if type(ev) is StepStateChanged and not (ev.__pydantic_private__ or {}).get("_data"):
            return self._notice(ev)  # one without dynamic keys
        return self.dumps(self.codec.encode_event(ev))

    def _notice(self, ev: StepStateChanged) -> str:
        """A step's state notice: two per execution, from a handful of distinct values."""
        key = (
            ev.name,
            ev.step_state,
            ev.worker_id,
            ev.input_event_name,
            ev.output_event_name,
        )
        found = self._notices.get(key)
        if found is None:
            found = self.dumps(self.codec.encode_event(ev))
            if len(self._notices) >= _MEMO_MAX:
                self._notices.clear()
            self._notices[key] = found
        return found

    def delivery(self, d: Delivery) -> dict[str, str]:
        """A delivery as the scripts handle it: id, step, encoded form, queued notice."""
        return {
            "id": d.delivery_id,
            "step": d.step,
            "json": self.dumps(self.codec.encode_delivery(d)),
            "enq": self._enqueued_notice(d.step, type(d.event).__name__),
        }

    def _enqueued_notice(self, step: str, event_name: str) -> str:
        # What the stream shows when a delivery waits for a num_workers slot
        # (as the memory store does).
        found = self._enqueued.get((step, event_name))
        if found is None:
            found = self.event(
                StepStateChanged(
                    name=step,
                    step_state=StepState.PREPARING,
                    worker_id="<enqueued>",
                    input_event_name=event_name,
                )
            )
            self._enqueued[(step, event_name)] = found
        return found

    def waiter(self, w: Waiter, *, stored: bool = False) -> dict[str, Any]:
        """A waiter, with the re-run its step gets if it times out (pre-encoded).

        ``stored``: its timeout is kept in the store (``due_ms`` from now).
        """
        spec: dict[str, Any] = {
            "id": w.waiter_id,
            "json": self.dumps(self.codec.encode_waiter(w)),
            "timeout": self.dumps(self.delivery(w.timeout_redelivery())),
        }
        if stored and w.timeout_s is not None:
            spec["due_ms"] = _ms(max(0.0, w.timeout_s))
        return spec

    def finish(self, outcome: RunOutcome) -> dict[str, str]:
        result = outcome.result
        spec = {
            "status": outcome.status.value,
            "now": repr(time.time()),
            "outcome": self.dumps(
                {
                    "result": None if result is None else self.codec.encode_event(result),
                    "error": None if outcome.error is None else outcome.error.to_json(),
                }
            ),
            "ttl_ms": str(self._ttl_ms),
        }
        if self.finished_channel is not None:
            spec["channel"] = self.finished_channel
        if outcome.terminal_event is not None:
            spec["terminal"] = self.event(outcome.terminal_event)
        return spec

    # --- script arguments ---------------------------------------------------------------

    def create_spec(self, run: RunRecord, seed: RunSeed) -> str:
        spec: dict[str, Any] = {
            "record": self.dumps(self.codec.encode_run(run)),
            "workflow": run.workflow,
            "updated_at": repr(run.updated_at),
            "hitl": "1" if run.hitl else "0",
            "caps": {step: str(cap) for step, cap in seed.caps.items()},
            "waiters": [
                self.waiter(w, stored=w.waiter_id in seed.timeouts_in_store) for w in seed.waiters
            ],
            "buffers": [
                [self.buffer_key(key), self._seed_buffer(events)]
                for key, events in seed.buffers.items()
            ],
            "deliveries": [self.delivery(d) for d in seed.deliveries],
            "grace_ms": self.grace_ms,
        }
        if seed.state is not None:
            spec["state"] = seed.state
        return self.dumps(spec)

    def _seed_buffer(self, events: Sequence[Event]) -> list[list[str]]:
        return [[f"seed-{i}", type_name(type(ev)), self.event(ev)] for i, ev in enumerate(events)]

    def commit_spec(self, commit: Commit) -> str:
        spec: dict[str, Any] = {
            "routed": [self.delivery(d) for d in commit.routed],
            "resolved": [{"wid": wid, "d": self.delivery(d)} for wid, d in commit.resolved],
            "stream": [self.event(ev) for ev in commit.stream],
            "grace_ms": self.grace_ms,
        }
        if commit.token is not None:
            spec["tok"] = commit.token
        if commit.waiter_seq is not None:
            spec["wseq"] = commit.waiter_seq
        if commit.delivery is not None:
            spec["d"] = {
                "id": commit.delivery.delivery_id,
                "lid": commit.delivery.lineage_id,
                "step": commit.delivery.step,
            }
        if commit.retry is not None:
            retry = commit.retry
            spec["retry"] = {
                "id": retry.delivery_id,
                "json": self.dumps(self.codec.encode_delivery(retry)),
                "delay_ms": _ms(max(0.0, commit.retry_delay_s)),
                "stored": commit.retry_in_store,
            }
        if commit.waiter is not None:
            waiter = self.waiter(commit.waiter, stored=commit.waiter_timeout_in_store)
            if commit.waiter_event is not None:
                waiter["ev"] = self.event(commit.waiter_event)
            spec["waiter"] = waiter
        if commit.outcome is not None:
            spec["finish"] = self.finish(commit.outcome)
        return self.dumps(spec)

    def buffer_key(self, key: tuple[str, str]) -> str:
        return self.dumps(list(key))

    def collect_args(
        self,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[str]:
        counts = expected_counts(expected)
        eligible = type(event) in counts
        return [
            self.buffer_key(key),
            delivery_id,
            type_name(type(event)) if eligible else "",
            self.event(event) if eligible else "",
            self.dumps({type_name(kind): n for kind, n in counts.items()}),
        ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
