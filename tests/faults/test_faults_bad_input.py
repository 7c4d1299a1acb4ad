"""Bad input, for real, on the shared ``pair`` of workers: each refused with a clear
error naming the problem, nothing imported or unpickled, the workers serving on;
and what Flower and the logs may show of a run (ids, step, event type, attempt),
never its payload or state.
"""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import signals
from tests.conftest import redis_test_url
from tests.faults import fault_workflows as flows
from tests.faults._harness import (
    RESULT_TIMEOUT_S,
    FaultCluster,
    RedisServer,
    hanging_event,
    wait_until,
)

from stalkflow import Context, Workflow, get_run, step
from stalkflow.adapters.redis_store import RedisStore
from stalkflow.errors import (
    BackendError,
    ContextSerdeError,
    RunFinishedError,
    RunNotFoundError,
    UnknownWorkflowError,
    WorkflowNotServedError,
)
from stalkflow.events import StartEvent, StopEvent

pytestmark = [pytest.mark.redis, pytest.mark.celery]


def delivery_body(workflow: str, step_name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": f"run-{uuid.uuid4().hex[:8]}",
        "workflow": workflow,
        "step": step_name,
        "event": event,
        "delivery_id": uuid.uuid4().hex,
        "attempt": 1,
        "first_attempt_at": None,
        "last_error": None,
        "last_failed_at": None,
        "resolved": {},
        "expires_waiter": None,
        "recoveries": 0,
    }


def publish_raw(pair: FaultCluster, body: bytes, content_type: str, task: str) -> None:
    """A message as any broker client could send it: raw body, Celery's headers."""
    task_id = str(uuid.uuid4())
    with pair.app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange="",
            routing_key=pair.settings.queue,
            content_type=content_type,
            content_encoding="binary" if content_type != "application/json" else "utf-8",
            headers={"task": task, "id": task_id, "lang": "py", "argsrepr": "(raw)"},
        )


def test_bad_messages_are_refused_logged_and_never_imported_or_unpickled(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    task = f"{flows.echo.workflow_name}.double"
    queue = pair.settings.queue
    secret = f"secret-{uuid.uuid4().hex}"
    probe = redis.Redis.from_url(redis_test_url())
    canary = f"{pair.settings.prefix}:canary:imported"
    try:
        # an event type the workflow does not register: never imported
        unregistered = delivery_body(
            flows.echo.workflow_name,
            "double",
            {"type": "tests.faults.canary.Boom", "data": {"command": secret}},
        )
        pair.app.send_task(task, args=[unregistered], queue=queue, argsrepr="(unregistered)")
        # malformed: not JSON at all; JSON missing fields; the wrong arguments
        publish_raw(pair, b"{this is not json", "application/json", task)
        missing = {"run_id": "run-missing", "step": "double"}
        pair.app.send_task(task, args=[missing], queue=queue, argsrepr="(missing)")
        pair.app.send_task(task, args=[1, 2], queue=queue, argsrepr="(two)")
        # pickle: would import the canary if ever unpickled
        payload = pickle.dumps(_Importer(), protocol=2)
        publish_raw(pair, payload, "application/x-python-serialize", task)

        logs = pair.wait_for_log(
            "Unknown event type 'tests.faults.canary.Boom'",
            "cannot be decoded",
            "lacks the field 'workflow'",
            "got 2 positional",
            "untrusted content of type pickle",
        )
        result = pair.workflow(flows.Echo).submit(n=5).get(timeout=RESULT_TIMEOUT_S)
        imported = probe.get(canary)
    finally:
        probe.close()

    assert result == {"n": 5, "double": 10}, "the workers serve on"
    assert imported is None, "a message made a worker import a module"
    assert secret not in logs
    assert all(worker.process.poll() is None for worker in pair.workers)


class _Importer:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import tests.faults.canary",))


def test_payloads_and_state_never_show_in_task_arguments_or_logs(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    secret = f"secret-{uuid.uuid4().hex}"
    published: list[dict[str, Any]] = []

    def capture(sender: Any = None, headers: Any = None, **_: Any) -> None:
        published.append(dict(headers or {}))

    signals.before_task_publish.connect(capture, weak=False)
    try:
        handle = pair.workflow(flows.Secretive).submit(secret=secret, hold_s=3.0)
        hanging_event(handle)
        active = wait_until(
            lambda: [
                task
                for tasks in (pair.app.control.inspect(timeout=1.0).active() or {}).values()
                for task in tasks
                if handle.run_id in str(task.get("args"))
            ],
            what="the step in `celery inspect active`",
        )
        assert handle.get(timeout=RESULT_TIMEOUT_S) == "kept"
    finally:
        signals.before_task_publish.disconnect(capture)
    logs = pair.logs()

    (shown,) = active
    assert secret not in str(shown)
    args = str(shown["args"])
    assert f"run_id={handle.run_id}" in args and "step=hold" in args
    assert "event=StartEvent" in args and "attempt=1" in args
    mine = [h for h in published if handle.run_id in str(h.get("argsrepr"))]
    assert mine, published
    for headers in mine:
        assert secret not in str(headers.get("argsrepr")) + str(headers.get("kwargsrepr"))
        assert headers.get("kwargsrepr") == "{}"
    assert secret not in logs


def test_state_that_cannot_be_stored_fails_at_once_naming_the_problem(
    use_pair: FaultCluster,
) -> None:
    typed = use_pair.workflow(flows.BadState).submit().get(timeout=RESULT_TIMEOUT_S)
    untyped = use_pair.workflow(flows.BadValue).submit().get(timeout=RESULT_TIMEOUT_S)

    assert typed["errors"]["typed"].startswith("ValidationError")
    assert "count" in typed["errors"]["typed"] and "valid integer" in typed["errors"]["typed"]
    assert typed["count"] == 0, "nothing was written"
    assert untyped["error"].startswith("StateSerializationError")
    assert "for key handle" in untyped["error"]
    assert untyped["keys"] == ["kept"], "nothing was written"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not a dict", "expected a dict, got str"),
        ({"state": 5}, "'state' must be a dict"),
        ({"version": 99}, "version=99"),
        (
            {"state": {"state_type": "os.system", "state_data": {"x": "raw"}}},
            "untyped state in an unknown format",
        ),
    ],
)
def test_from_dict_of_a_corrupted_or_foreign_dict_names_the_problem(
    data: Any, problem: str
) -> None:
    with pytest.raises(ContextSerdeError, match=problem.replace("(", r"\(")):
        Context.from_dict(flows.echo, data)


def test_events_to_finished_cancelled_or_unknown_runs_are_refused(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    done = pair.workflow(flows.Echo).submit(n=1)
    done.get(timeout=RESULT_TIMEOUT_S)
    cancelled = pair.workflow(flows.Locker).submit(writers=1, rounds=1, wait_for_go=True)
    wait_until(lambda: pair.probe(cancelled.run_id, "wrote"), what="the writer")
    assert cancelled.cancel() is True

    with pytest.raises(RunFinishedError, match=f"'{done.run_id}' already completed"):
        done.send_event(flows.Go(response="late"))
    with pytest.raises(RunFinishedError, match=f"'{cancelled.run_id}' already cancelled"):
        get_run(cancelled.run_id).send_event(flows.Go(response="late"))
    with pytest.raises(RunNotFoundError, match="'no-such-run'"):
        get_run("no-such-run")
    with pytest.raises(UnknownWorkflowError, match=r"'no\.such\.Workflow'"):
        pair.cluster.engine.registry.get("no.such.Workflow")


class NotOnTheWorkers(Workflow):
    """Defined here only: no worker has it."""

    @step
    async def only_here(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="never")


def test_a_run_of_a_workflow_no_worker_serves_fails_naming_it(use_pair: FaultCluster) -> None:
    handle = use_pair.workflow(NotOnTheWorkers).submit()

    with pytest.raises(WorkflowNotServedError, match="NotOnTheWorkers") as failed:
        handle.get(timeout=RESULT_TIMEOUT_S)

    assert "STALKFLOW_WORKFLOWS" in str(failed.value)
    assert "only_here" in str(failed.value)
    assert handle.status == "failed"


async def test_a_wrong_password_is_never_shown(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    wrong = f"wrong-{uuid.uuid4().hex}"
    store = RedisStore.from_url(f"redis://:{wrong}@127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(BackendError) as failed:
            await store.get_run("any")
    finally:
        await store.aclose()
        server.stop()

    message = str(failed.value)
    assert wrong not in message and server.password not in message
    assert "***" in message
    assert wrong not in repr(store) and os.environ.get("NOPE") is None
