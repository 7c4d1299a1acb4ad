"""The distributed engine end to end: real ``celery worker`` processes, real Redis.

Runs are started in this process (the client), executed by the session's worker
processes (see ``conftest.py``), and read back here or from other processes by
run id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import textwrap
import uuid
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import redis_test_url, require_service
from tests.fixtures import distributed_workflows as flows
from tests.integration._cluster import (
    Cluster,
    WorkerProcess,
    amqp_ping,
    amqp_test_url,
    broker_test_url,
    delete_keys,
    delete_queue_keys,
    redis_ping,
    running_cluster,
    session_settings,
    wait_ready,
)

from stalkflow import Context, get_run
from stalkflow.events import InputRequiredEvent

pytestmark = [pytest.mark.redis, pytest.mark.celery]

RESULT_TIMEOUT_S = 30.0
#: Short: the test waits it out once, after killing a worker mid-step.
CRASH_VISIBILITY_TIMEOUT_S = 4.0


def test_fan_out_runs_on_every_worker(distributed: Cluster) -> None:
    handle = flows.fan_out.submit(count=24, work_s=0.05)

    result = handle.get(timeout=RESULT_TIMEOUT_S)

    assert sorted(result["indexes"]) == list(range(24))
    pids = result["pids"]
    assert len(pids) == 24  # one entry per item: no step ran twice
    assert os.getpid() not in pids  # the client only submits
    assert len(set(pids)) >= 2, f"all items ran in one process: {pids}"


def test_collect_events_returns_each_complete_set_once(distributed: Cluster) -> None:
    handle = flows.batches.submit(batches=3, size=10)

    sets = handle.get(timeout=RESULT_TIMEOUT_S)

    assert len(sets) == 3
    assert all(len(indexes) == 10 for indexes in sets)
    assert sorted(index for indexes in sets for index in indexes) == list(range(30))


def test_edit_state_from_concurrent_steps_loses_no_increment(distributed: Cluster) -> None:
    handle = flows.counter.submit(ticks=40)

    result = handle.get(timeout=RESULT_TIMEOUT_S)

    assert result["count"] == 40
    assert len(result["pids"]) >= 2, result


def test_human_answers_from_another_process(distributed: Cluster) -> None:
    handle = flows.greeting.submit()

    asked = next(
        event for event in get_run(handle.run_id).events() if isinstance(event, InputRequiredEvent)
    )
    assert asked.prefix == "Your name?"  # type: ignore[attr-defined]

    # A later web request, in another process, answers the run by its id ...
    distributed.python(
        textwrap.dedent(
            f"""
            from stalkflow import get_run
            from stalkflow.distributed import register
            from stalkflow.events import HumanResponseEvent
            from tests.fixtures.distributed_workflows import greeting

            register(greeting)
            get_run({handle.run_id!r}).send_event(HumanResponseEvent(response="ada"))
            """
        )
    )
    # ... and a third one, which knows nothing but the id, reads the result.
    out = distributed.python(
        textwrap.dedent(
            f"""
            import json
            from stalkflow import get_run

            print(json.dumps(get_run({handle.run_id!r}).get(timeout={RESULT_TIMEOUT_S})))
            """
        )
    )

    result = json.loads(out)
    assert result["greeting"] == "hello ada"
    assert result["pid"] != os.getpid()
    assert handle.status == "completed"


async def test_typed_state_round_trips_through_redis(distributed: Cluster) -> None:
    ctx: Context[flows.Tally] = Context(flows.typed_tally)
    await ctx.store.set_state(flows.Tally(count=100, names=["seed"]))

    result = await flows.typed_tally.run(ctx=ctx, names=["ada", "grace", "linus"])

    assert result["count"] == 103
    assert result["names"] == ["ada", "grace", "linus", "seed"]
    state = await ctx.store.get_state()
    assert isinstance(state, flows.Tally)
    assert state.count == 103
    assert state.names == ["ada", "grace", "linus", "seed"]
    assert os.getpid() not in state.pids


def test_event_stream_is_readable_by_several_readers(distributed: Cluster) -> None:
    handle = flows.fan_out.submit(count=4, work_s=0.0)
    handle.get(timeout=RESULT_TIMEOUT_S)

    first = [type(event).__name__ for event in get_run(handle.run_id).events()]
    second = [type(event).__name__ for event in get_run(handle.run_id).events()]

    assert first == second
    assert first[-1] == "StopEvent"


async def test_the_quickstart_runs_unchanged_on_the_workers(distributed: Cluster) -> None:
    from examples import quickstart

    handler = quickstart.WordCount(timeout=30).run(text=quickstart.DOCUMENT)
    progress = [
        event.message
        async for event in handler.stream_events()
        if isinstance(event, quickstart.Progress)  # declared in no step's signature
    ]
    summary = await handler

    assert summary["paragraphs"] == 6
    assert len(progress) == 6
    stats = await handler.ctx.store.get_state()
    assert isinstance(stats, quickstart.Stats)
    assert stats.counted == 6
    assert stats.words == summary["words"]


def test_bad_messages_are_dropped_and_the_workers_keep_serving(distributed: Cluster) -> None:
    app = distributed.engine.transport.app  # type: ignore[attr-defined]
    task = f"{flows.fan_out.workflow_name}.work"
    queue = distributed.settings.queue
    secret = f"secret-{uuid.uuid4().hex}"
    unknown = {
        "run_id": "run-bad",
        "workflow": flows.fan_out.workflow_name,
        "step": "work",
        "event": {"type": "os.system", "data": {"command": secret}},
        "delivery_id": "d-bad",
        "attempt": 1,
        "resolved": {},
        "recoveries": 0,
    }

    app.send_task(task, args=["not a delivery"], queue=queue)
    app.send_task(task, args=[unknown], queue=queue, argsrepr="(unknown type)")
    app.send_task(task, args=[{"run_id": "run-pickled"}], queue=queue, serializer="pickle")
    # as stalkflow sends it (argsrepr safe), to a step this worker does not serve
    app.send_task("no.such.Workflow.step", args=[unknown], queue=queue, argsrepr="(run_id=x)")

    result = flows.fan_out.submit(count=4, work_s=0.0).get(timeout=RESULT_TIMEOUT_S)

    assert sorted(result["indexes"]) == [0, 1, 2, 3]
    logs = distributed.wait_for_log(
        f"Dropped a message for task {task} (body is str)",
        "Unknown event type 'os.system'",
        "untrusted content of type pickle",
        "Received unregistered task of type 'no.such.Workflow.step'",
    )
    assert secret not in logs
    assert all(worker.process.poll() is None for worker in distributed.workers)


# --- a worker dies mid-step ------------------------------------------------------------


def test_the_step_of_a_killed_worker_is_redelivered_after_the_visibility_timeout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    broker_url, redis_url = broker_test_url(), redis_test_url()
    require_service("Redis", redis_ping(redis_url))
    settings = dataclasses.replace(
        session_settings(broker_url, redis_url), visibility_timeout_s=CRASH_VISIBILITY_TIMEOUT_S
    )
    log_dir = Path(tmp_path_factory.mktemp("crash-workers"))
    try:
        with running_cluster(
            settings, log_dir, {f"victim-{settings.prefix}": ["--pool=solo"]}
        ) as cluster:
            handle = flows.CrashOnce(timeout=60, engine=cluster.engine).submit()
            hanging = next(e for e in handle.events() if isinstance(e, flows.Hanging))
            victim = cluster.workers[0]
            assert hanging.pid == victim.process.pid

            os.kill(victim.process.pid, signal.SIGKILL)  # no ack, no goodbye
            victim.process.wait(5)
            rescuer = WorkerProcess(
                f"rescuer-{settings.prefix}", ["--pool=solo"], cluster.env, log_dir
            )
            cluster.workers.append(rescuer)
            wait_ready(cluster.engine.transport.app, [rescuer], 30)  # type: ignore[attr-defined]

            result = handle.get(timeout=RESULT_TIMEOUT_S)
    finally:
        delete_keys(redis_url, f"{settings.prefix}*")
        delete_queue_keys(broker_url, settings.queue)

    assert result["pids"] == [victim.process.pid, rescuer.process.pid]


# --- RabbitMQ as the broker ------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbit(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """One prefork worker (two child processes) consuming from RabbitMQ."""
    broker_url = amqp_test_url()
    redis_url = redis_test_url()
    require_service("RabbitMQ", amqp_ping(broker_url))
    require_service("Redis (store)", redis_ping(redis_url))
    settings = session_settings(broker_url, redis_url)
    workers = {f"prefork-{settings.prefix}": ["--pool=prefork", "--concurrency=2"]}
    log_dir = Path(tmp_path_factory.mktemp("rabbit-workers"))
    try:
        with running_cluster(settings, log_dir, workers) as running:
            yield running
    finally:
        delete_keys(redis_url, f"{settings.prefix}*")
        _delete_amqp_queue(broker_url, settings.queue)


def _delete_amqp_queue(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=2) as connection:
        connection.default_channel.queue_delete(queue)


def test_rabbitmq_broker_runs_the_same_fan_out(rabbit: Cluster) -> None:
    workflow = flows.FanOut(timeout=60, engine=rabbit.engine)

    result = workflow.submit(count=12, work_s=0.05).get(timeout=RESULT_TIMEOUT_S)

    assert sorted(result["indexes"]) == list(range(12))
    pids = Tally(result["pids"])
    assert sum(pids.values()) == 12
    assert os.getpid() not in pids
    assert len(pids) >= 2, f"one prefork child did all the work: {pids}"


def test_rabbitmq_redelivers_the_step_of_a_killed_prefork_child(rabbit: Cluster) -> None:
    handle = flows.CrashOnce(timeout=60, engine=rabbit.engine).submit()
    hanging = next(e for e in handle.events() if isinstance(e, flows.Hanging))

    os.kill(hanging.pid, signal.SIGKILL)  # the pool loses a child: reject_on_worker_lost
    result = handle.get(timeout=RESULT_TIMEOUT_S)

    first, second = result["pids"]
    assert first == hanging.pid
    assert second != hanging.pid
