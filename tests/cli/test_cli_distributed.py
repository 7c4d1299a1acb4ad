"""The ``stalkflow`` command on the distributed engine: real workers, real Redis.

The command runs as a subprocess with the workers' environment
(``STALKFLOW_REDIS_URL`` ...); the workers (``conftest.py``) execute the steps.
"""

from __future__ import annotations

import json

import pytest
from tests.cli._harness import Background, Workers, run_id_of, stalkflow, stalkflow_all

pytestmark = [pytest.mark.redis, pytest.mark.celery]

FLOWS = "tests.cli.cli_flows"


def test_run_submits_to_the_workers_and_runs_list_and_show_find_it(
    cli_workers: Workers,
) -> None:
    env = cli_workers.env
    done = stalkflow(
        "run", f"{FLOWS}:Pipeline", "--kw", "text=a b c d e f g", "--kw", "parts=3", env=env
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"words": 7, "label": "pipeline"}
    assert f"of {FLOWS}.Pipeline (distributed, redis://" in done.stderr
    assert done.stderr.count("step count started (Chunk)") == 3
    assert 'event Progress {"message": "counting chunk 2"}' in done.stderr
    assert "step total finished -> StopEvent" in done.stderr
    run_id = run_id_of(done.stderr)

    listed, listed_json, shown, shown_json = stalkflow_all(
        [
            ["runs", "list", "--workflow", "Pipeline"],
            ["runs", "list", "--status", "completed", "--json"],
            ["runs", "show", run_id],
            ["runs", "show", run_id, "--json"],
        ],
        env=env,
    )

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["RUN", "ID", "STATUS", "WORKFLOW", "STARTED", "DURATION"]
    row = next(line for line in rows if line.startswith(run_id))
    assert row.split()[1:3] == ["completed", f"{FLOWS}.Pipeline"]
    assert run_id in {run["run_id"] for run in json.loads(listed_json.stdout)}

    assert shown.returncode == 0, shown.stderr
    assert f"run       {run_id}" in shown.stdout
    assert "status    completed" in shown.stdout
    assert 'result    {"words": 7, "label": "pipeline"}' in shown.stdout
    assert '"words": 7' in shown.stdout  # the state
    assert "     0  step split started (StartEvent)" in shown.stdout

    document = json.loads(shown_json.stdout)
    assert document["status"] == "completed"
    assert document["duration_s"] > 0
    assert document["state"] == {"parts": 3, "label": "pipeline", "words": 7}
    events = document["events"]
    assert [event["sequence"] for event in events] == list(range(len(events)))
    kinds = [event["type"].rpartition(".")[2] for event in events]
    assert kinds.count("Progress") == 3
    assert kinds[-1] == "StopEvent"


def test_send_answers_a_run_waiting_for_a_human(cli_workers: Workers) -> None:
    env = cli_workers.env
    running = Background("run", f"{FLOWS}:approval", "--kw", "item=invoice-7", env=env)
    run_id = running.run_id
    running.wait_for("input required: Approve invoice-7?")
    hint = running.wait_for("answer with: stalkflow send")
    assert run_id in hint

    shown, refused, unknown = stalkflow_all(
        [
            ["runs", "show", run_id],
            ["send", run_id, '{"type": "os.system", "value": {"command": "true"}}'],
            ["send", "no-such-run", '{"type": "HumanResponseEvent", "value": {}}'],
        ],
        env=env,
    )
    assert "status    running" in shown.stdout
    assert "waiting   step ask for HumanResponseEvent, timeout 60 s" in shown.stdout
    assert refused.returncode == 1
    assert "Unknown event type 'os.system'" in refused.stderr
    assert unknown.returncode == 1
    assert "No workflow run with id 'no-such-run'" in unknown.stderr

    sent = stalkflow(
        "send",
        run_id,
        '{"qualified_name": "stalkflow.events.HumanResponseEvent", "value": {"response": "ok"}}',
        env=env,
    )

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"sent HumanResponseEvent to run {run_id}"
    status, stdout, stderr = running.finish()
    assert status == 0, stderr
    assert stdout == "invoice-7: ok\n"
    assert stderr.count("step ask started (StartEvent)") == 2  # re-run from the top


def test_cancel_ends_a_running_run(cli_workers: Workers) -> None:
    env = cli_workers.env
    running = Background("run", f"{FLOWS}:ticker", env=env)
    run_id = running.run_id
    running.wait_for("step tick started (Tick)")

    cancelled = stalkflow("cancel", run_id, env=env)

    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancelled run {run_id}"
    status, stdout, stderr = running.finish()
    assert status == 1
    assert stdout == ""
    assert "Error: the run was cancelled" in stderr
    again, shown = stalkflow_all([["cancel", run_id], ["runs", "show", run_id]], env=env)
    assert again.returncode == 1
    assert f"Run {run_id} already ended (cancelled)" in again.stderr
    assert "status    cancelled" in shown.stdout


def test_a_step_failing_on_a_worker_exits_1_with_its_error(cli_workers: Workers) -> None:
    done = stalkflow("run", f"{FLOWS}:broken", "--kw", "what=eggs", env=cli_workers.env)

    assert done.returncode == 1
    assert "Error: step explode failed: ValueError: cannot handle eggs" in done.stderr
    shown = stalkflow("runs", "show", run_id_of(done.stderr), env=cli_workers.env)
    assert "status    failed" in shown.stdout
    assert "error     ValueError: cannot handle eggs (step explode)" in shown.stdout
