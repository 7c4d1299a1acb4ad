"""The scripts of ``examples/`` run unchanged on Celery + Redis, with real workers.

Each script runs in a client subprocess configured for the session's workers
(``STALKFLOW_REDIS_URL``, ``STALKFLOW_BROKER_URL``, prefix and queue; see
``_cluster.py``), which serve every example module (``STALKFLOW_WORKFLOWS``).
Its output must equal what the same script prints on the embedded engine.

The client imports the example module and runs its ``main()`` (what the script's
``if __name__ == "__main__"`` block does) instead of ``python examples/x.py``: a
workflow class defined in ``__main__`` is named ``__main__.MyWorkflow``, a name
no worker serves (``test_a_script_run_directly_runs_on_the_workers``, an
expected failure until workflow and event names of ``__main__`` are resolved).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter as Tally
from collections.abc import Mapping, Sequence

import pytest
from tests.integration._cluster import EXAMPLE_MODULES, REPO_ROOT, Cluster

from stalkflow.core.runs import RunStatus
from stalkflow.engine import Engine

pytestmark = [pytest.mark.redis, pytest.mark.celery]

SCRIPT_TIMEOUT_S = 45.0
NAMES = [module.removeprefix("examples.") for module in EXAMPLE_MODULES]
#: Runs each script starts (``context_across_runs*`` run their workflow twice).
RUNS_PER_SCRIPT = {"context_across_runs": 2, "context_across_runs_to_dict": 2}
#: The workflow class of each script, as workers name it.
WORKFLOW_CLASS = {"quickstart": "WordCount"}

QUICKSTART_STREAMED = re.compile(r"(streamed: paragraph \d+: \d+ words) \((\d+)/6 done\)")
QUICKSTART_PEAK = re.compile(r"^(\d+) paragraphs were counted at once at most", re.M)
QUICKSTART_STATE_PEAK = re.compile(r"peak_in_flight=(\d+)")
QUICKSTART_TOOK = re.compile(r"the run took \d+\.\d\d s")


def embedded_env() -> dict[str, str]:
    """A user's environment with nothing configured: the embedded engine."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STALKFLOW_")}


def distributed_env(cluster: Cluster) -> dict[str, str]:
    """The session workers' settings, with the repository root importable (``examples``)."""
    env = dict(cluster.env)
    paths = [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_all(commands: Mapping[str, Sequence[str]], env: Mapping[str, str]) -> dict[str, str]:
    """Run the commands at once from the repository root; each one's stdout.

    Each must exit 0 and write nothing to stderr.
    """
    procs = {
        name: subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in commands.items()
    }
    outputs: dict[str, str] = {}
    deadline = time.monotonic() + SCRIPT_TIMEOUT_S
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{out}\n{err}"
            assert err == "", f"{name} wrote to stderr:\n{err}"
            outputs[name] = out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


def comparable(name: str, out: str) -> str:
    """The output with what legitimately varies between two runs masked.

    Only the quickstart varies: how many paragraphs were counted at once, the
    order in which paragraphs finish, and the time the run took.
    """
    if name != "quickstart":
        return out
    lines = out.splitlines()
    streamed = [QUICKSTART_STREAMED.fullmatch(line) for line in lines[:6]]
    assert all(streamed), out
    assert sorted(int(m[2]) for m in streamed if m) == [1, 2, 3, 4, 5, 6], out
    peak = QUICKSTART_PEAK.search(out)
    assert peak is not None, out
    assert 1 <= int(peak[1]) <= 3, out  # num_workers=3 caps the step
    assert QUICKSTART_STATE_PEAK.findall(out) == [peak[1]], out
    masked = sorted(f"{m[1]} (<k>/6 done)" for m in streamed if m)
    rest = "\n".join(lines[6:])
    rest = QUICKSTART_PEAK.sub("<peak> paragraphs were counted at once at most", rest)
    rest = QUICKSTART_STATE_PEAK.sub("peak_in_flight=<peak>", rest)
    rest = QUICKSTART_TOOK.sub("the run took <t> s", rest)
    return "\n".join([*masked, rest])


def completed_runs(engine: Engine) -> Tally[str]:
    """Completed runs in the session's store, by workflow name."""

    async def listing() -> Tally[str]:
        runs = await engine.store.list_runs(status=RunStatus.COMPLETED)
        return Tally(run.workflow for run in runs)

    return asyncio.run(listing())


def test_every_example_prints_the_same_on_the_workers_as_embedded(cluster: Cluster) -> None:
    assert sorted(f"{name}.py" for name in NAMES) == sorted(
        path.name for path in (REPO_ROOT / "examples").glob("*.py") if path.name != "__init__.py"
    ), "an example is missing from _cluster.EXAMPLE_MODULES"
    before = completed_runs(cluster.engine)

    embedded = run_all(
        {name: [sys.executable, f"examples/{name}.py"] for name in NAMES}, embedded_env()
    )
    distributed = run_all(
        {
            name: [
                sys.executable,
                "-c",
                f"import asyncio\nfrom examples.{name} import main\nasyncio.run(main())",
            ]
            for name in NAMES
        },
        distributed_env(cluster),
    )

    for name in NAMES:
        assert comparable(name, distributed[name]) == comparable(name, embedded[name]), name
    # The runs were executed by the workers, and kept in the session's Redis.
    ran = completed_runs(cluster.engine) - before
    assert ran == {
        f"examples.{name}.{WORKFLOW_CLASS.get(name, 'MyWorkflow')}": RUNS_PER_SCRIPT.get(name, 1)
        for name in NAMES
    }


def test_a_script_run_directly_runs_on_the_workers(cluster: Cluster) -> None:
    unserved = "unregistered task of type '__main__.MyWorkflow.my_step'"
    proc = subprocess.Popen(
        [sys.executable, "examples/state_counter.py"],
        cwd=REPO_ROOT,
        env=distributed_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + SCRIPT_TIMEOUT_S
        while proc.poll() is None:
            # fail fast instead of waiting out the run's 45 s timeout
            assert unserved not in cluster.worker_logs(), f"the workers logged: {unserved}"
            assert time.monotonic() < deadline, "the script did not finish"
            time.sleep(0.1)
        out, err = proc.communicate()
        assert (proc.returncode, err, out) == (0, "", "count after one run: 1\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
