"""The Celery transport without a broker: kombu's in-memory transport and direct task calls.

What the messages look like on the wire (task name, JSON body, queue, priority,
countdown, what Flower may show), what the step tasks are declared with, and
how a worker's task body treats good and bad messages. End-to-end behaviour
with real brokers and worker processes is in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Reject

from stalkflow import Context, Workflow, step
from stalkflow.adapters import celery_steps as module
from stalkflow.adapters.celery_app import create_app
from stalkflow.adapters.celery_transport import CeleryTransport, describe
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery
from stalkflow.decorators import CeleryOptions
from stalkflow.errors import BrokerUnavailableError, StoreUnavailableError
from stalkflow.events import Event, StartEvent, StopEvent


class Secret(Event):
    password: str


class Routed(Workflow):
    @step(queue="gpu", priority=7, rate_limit="10/s", time_limit=30, soft_time_limit=20)
    async def embed(self, ev: StartEvent) -> Secret:
        return Secret(password="x")

    @step
    async def finish(self, ctx: Context, ev: Secret) -> StopEvent:
        return StopEvent()


@pytest.fixture
def queue() -> str:
    return f"unit-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def transport(queue: str) -> Iterator[CeleryTransport]:
    transport = CeleryTransport.from_url("memory://", queue=queue, codec=EventCodec.permissive())
    try:
        yield transport
    finally:
        transport.close()


def delivery(step: str = "a", event: Event | None = None, workflow: str = "wf") -> Delivery:
    return Delivery(
        run_id="run-1",
        workflow=workflow,
        step=step,
        event=event if event is not None else StartEvent(secret="hunter2"),
        delivery_id=f"d-{uuid.uuid4().hex[:8]}",
    )


def receive(transport: CeleryTransport, queue: str) -> Any:
    with transport.app.connection_for_read() as connection:
        message = connection.SimpleQueue(queue).get(timeout=1)
        message.ack()
        return message


# --- sending ----------------------------------------------------------------------------


async def test_a_delivery_travels_as_json_to_the_task_of_its_step(
    transport: CeleryTransport, queue: str
) -> None:
    sent = delivery()
    transport.register_step("wf", "a")

    await transport.dispatch([sent])

    message = receive(transport, queue)
    assert message.content_type == "application/json"
    assert message.headers["task"] == "wf.a"
    (body,), kwargs, _ = message.payload
    assert kwargs == {}
    assert EventCodec.permissive().decode_delivery(body) == sent


async def test_flower_and_logs_see_ids_step_type_and_attempt_never_the_payload(
    transport: CeleryTransport, queue: str
) -> None:
    await transport.dispatch([delivery()])

    headers = receive(transport, queue).headers
    assert headers["argsrepr"] == "(run_id=run-1 step=a event=StartEvent attempt=1)"
    assert headers["kwargsrepr"] == "{}"
    assert "hunter2" not in repr(headers)


async def test_a_delay_becomes_a_countdown(transport: CeleryTransport, queue: str) -> None:
    await transport.dispatch([delivery()], delay_s=30)

    assert receive(transport, queue).headers["eta"] is not None


async def test_the_step_options_choose_queue_and_priority(transport: CeleryTransport) -> None:
    transport.register_workflow(Routed())
    name = Routed().workflow_name

    await transport.dispatch([delivery("embed", workflow=name)])

    message = receive(transport, "gpu")
    assert message.headers["task"] == f"{name}.embed"
    assert message.properties["priority"] == 7


async def test_a_client_learns_step_options_from_its_workflow_lookup(queue: str) -> None:
    workflow = Routed()
    transport = CeleryTransport.from_url(
        "memory://", queue=queue, workflows={workflow.workflow_name: workflow}.__getitem__
    )
    try:
        await transport.dispatch([delivery("embed", workflow=workflow.workflow_name)])
        assert receive(transport, "gpu").properties["priority"] == 7
        assert f"{workflow.workflow_name}.embed" not in transport.app.tasks  # sends only
    finally:
        transport.close()


async def test_an_unreachable_broker_is_a_broker_error_without_the_password() -> None:
    transport = CeleryTransport.from_url("redis://:s3cret-pw@127.0.0.1:1/0")
    transport.app.conf.task_publish_retry_policy = {"max_retries": 0}
    transport.app.conf.broker_connection_timeout = 1
    try:
        with pytest.raises(BrokerUnavailableError) as caught:
            await transport.dispatch([delivery()])
    finally:
        transport.close()
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
    assert caught.value.__cause__ is not None


# --- step tasks -------------------------------------------------------------------------


def test_each_step_is_a_task_with_the_delivery_guarantees(transport: CeleryTransport) -> None:
    names = transport.register_workflow(Routed())

    workflow = Routed().workflow_name
    assert sorted(names) == [f"{workflow}.embed", f"{workflow}.finish"]
    task = transport.app.tasks[f"{workflow}.embed"]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.ignore_result is True
    assert task.serializer == "json"
    assert (task.rate_limit, task.time_limit, task.soft_time_limit) == ("10/s", 30, 20)
    plain = transport.app.tasks[f"{workflow}.finish"]
    assert (plain.rate_limit, plain.time_limit, plain.soft_time_limit) == (None, None, None)


def test_registering_a_step_twice_keeps_one_task(transport: CeleryTransport) -> None:
    first = transport.register_step("wf", "a", CeleryOptions(queue="q1"))
    task = transport.app.tasks[first]

    assert transport.register_step("wf", "a") == first
    assert transport.app.tasks[first] is task


def test_an_app_it_creates_has_the_worker_settings_of_the_design() -> None:
    app = create_app("redis://127.0.0.1:6379/0", queue="steps", visibility_timeout_s=42)

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert list(conf.accept_content) == ["json"]
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.broker_transport_options["visibility_timeout"] == 42
    assert conf.broker_transport_options["unacked_restore_interval"] == 4
    assert conf.task_default_queue == "steps"
    assert conf.worker_consumer == "stalkflow.adapters.celery_consumer:Consumer"


# --- the task body, as a worker runs it --------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.threads: list[str] = []
        self.loops: set[int] = set()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.threads.append(threading.current_thread().name)
        self.loops.add(id(asyncio.get_running_loop()))


def test_a_task_executes_its_delivery_on_one_persistent_loop(
    transport: CeleryTransport,
) -> None:
    recorder = Recorder()
    transport.start(recorder)
    name = transport.register_step("wf", "a")
    codec = EventCodec.permissive()
    sent = [delivery(), delivery()]

    for item in sent:
        transport.app.tasks[name](codec.encode_delivery(item))

    assert recorder.deliveries == sent
    assert recorder.threads == ["stalkflow-worker-loop"] * 2
    assert len(recorder.loops) == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((), {}, "expected one encoded delivery"),
        (({"run_id": "r"}, 2), {}, "expected one encoded delivery"),
        (("not a delivery",), {}, "must be an object"),
        (({"run_id": "run-9", "step": "a"},), {}, "run_id=run-9 step=a"),
    ],
)
def test_a_malformed_message_is_logged_and_dropped(
    transport: CeleryTransport,
    caplog: pytest.LogCaptureFixture,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    reason: str,
) -> None:
    recorder = Recorder()
    transport.start(recorder)
    name = transport.register_step("wf", "a")

    with caplog.at_level(logging.ERROR, logger="stalkflow.celery"):
        transport.app.tasks[name](*args, **kwargs)

    assert recorder.deliveries == []
    assert "Dropped" in caplog.text
    assert reason in caplog.text


def test_an_unregistered_event_type_is_dropped_without_its_payload(
    caplog: pytest.LogCaptureFixture, queue: str
) -> None:
    strict = CeleryTransport.from_url("memory://", queue=queue)  # built-in events only
    recorder = Recorder()
    strict.start(recorder)
    name = strict.register_step("wf", "a")
    body = EventCodec.permissive().encode_delivery(delivery(event=Secret(password="hunter2")))

    try:
        with caplog.at_level(logging.ERROR, logger="stalkflow.celery"):
            strict.app.tasks[name](body)
    finally:
        strict.close()

    assert recorder.deliveries == []
    assert "Unknown event type" in caplog.text
    assert "hunter2" not in caplog.text


def test_a_message_for_another_step_is_dropped(
    transport: CeleryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    transport.start(recorder)
    name = transport.register_step("wf", "a")
    body = EventCodec.permissive().encode_delivery(delivery(step="b"))

    with caplog.at_level(logging.ERROR, logger="stalkflow.celery"):
        transport.app.tasks[name](body)

    assert recorder.deliveries == []
    assert "carries a delivery for wf.b" in caplog.text


def test_a_store_outage_is_retried_then_the_message_requeued(
    transport: CeleryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "OUTAGE_BACKOFF_S", (0.0, 0.0))
    calls: list[Delivery] = []

    async def failing(item: Delivery) -> None:
        calls.append(item)
        raise StoreUnavailableError("The Redis store at redis://h:6379/0 is unavailable")

    transport.start(failing)
    name = transport.register_step("wf", "a")

    with pytest.raises(Reject) as caught:
        transport.app.tasks[name](EventCodec.permissive().encode_delivery(delivery()))

    assert caught.value.requeue is True
    assert len(calls) == 3  # the first try and two retries


def test_an_unexpected_error_drops_the_message_and_keeps_the_worker(
    transport: CeleryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(item: Delivery) -> None:
        raise KeyError("bug")

    transport.start(broken)
    name = transport.register_step("wf", "a")

    with caplog.at_level(logging.ERROR, logger="stalkflow.celery"):
        transport.app.tasks[name](EventCodec.permissive().encode_delivery(delivery()))

    assert "executing it failed unexpectedly" in caplog.text


def test_run_finished_abandons_the_runs_executions_in_this_process(
    transport: CeleryTransport,
) -> None:
    started = threading.Event()

    async def slow(item: Delivery) -> None:
        started.set()
        await asyncio.sleep(30)

    transport.start(slow)
    name = transport.register_step("wf", "a")
    body = EventCodec.permissive().encode_delivery(delivery())
    worker = threading.Thread(target=transport.app.tasks[name], args=(body,))
    worker.start()
    assert started.wait(5)

    transport.run_finished("run-1")

    worker.join(5)
    assert not worker.is_alive()


def test_describe_names_what_a_delivery_is_about() -> None:
    assert describe(delivery(step="embed")) == (
        "run_id=run-1 step=embed event=StartEvent attempt=1"
    )
