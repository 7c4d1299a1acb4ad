"""Running the ``stalkflow`` command and real workers for the CLI and Flower tests.

The command always runs as a subprocess (``python -m stalkflow.cli``, or the
``stalkflow`` console script), from the repository root, so that it imports
``tests.cli.cli_flows`` exactly as the workers do. Workers are the integration
harness's ``celery -A worker.app worker`` processes (``tests/integration/_cluster.py``),
serving the workflows of ``tests.cli.cli_flows``, with a key prefix and a queue of
their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests.integration._cluster import (
    WorkerProcess,
    cluster_env,
    delete_keys,
    delete_queue_keys,
    wait_ready,
)

from stalkflow.distributed import build_engine
from stalkflow.engine import Engine
from stalkflow.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The workflows the CLI tests' workers serve.
CLI_FLOWS = "tests.cli.cli_flows"
COMMAND_TIMEOUT_S = 30.0

_HEADER = re.compile(r"run (\S+) of ")


def console_script() -> list[str]:
    """The installed ``stalkflow`` entry point, else ``python -m stalkflow.cli``."""
    script = Path(sys.executable).with_name("stalkflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stalkflow.cli"]


def command(*args: str, script: bool = False) -> list[str]:
    base = console_script() if script else [sys.executable, "-m", "stalkflow.cli"]
    return [*base, *args]


def embedded_env() -> dict[str, str]:
    """This environment without any STALKFLOW_* setting: the embedded engine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STALKFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stalkflow(
    *args: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    script: bool = False,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the command to its end; its exit status, stdout and stderr."""
    return subprocess.run(
        command(*args, script=script),
        cwd=REPO_ROOT,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def stalkflow_all(
    commands: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str],
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> list[subprocess.CompletedProcess[str]]:
    """Run several commands at once (they are independent); their outcomes, in order."""
    processes = [
        subprocess.Popen(
            command(*args),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    for args, process in zip(commands, processes, strict=True):
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        done.append(subprocess.CompletedProcess(list(args), process.returncode, stdout, stderr))
    return done


def run_id_of(stderr: str) -> str:
    """The run id of ``stalkflow run``'s first progress line."""
    match = _HEADER.search(stderr)
    assert match, f"no run header in:\n{stderr}"
    return match.group(1)


class Background:
    """A ``stalkflow`` command running in the background; its stderr read as it comes."""

    def __init__(self, *args: str, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            command(*args),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, fragment: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """The first stderr line containing ``fragment`` (fails after ``timeout_s``)."""
        for line in self.lines:
            if fragment in line:
                return line
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(0.0, remaining))
            except queue.Empty:
                line = None
            if line is None:  # timed out, or the command ended
                self.stop()
                raise AssertionError(f"never printed {fragment!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if fragment in line:
                return line

    @property
    def run_id(self) -> str:
        return run_id_of(self.wait_for(" of "))

    def finish(self, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str]:
        """Wait for the command's end: its exit status, stdout and the whole stderr."""
        assert self.process.stdout is not None
        try:
            stdout = self.process.stdout.read()
            status = self.process.wait(timeout_s)
        finally:
            self.stop()
        self._reader.join(5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return status, stdout, "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


# --- workers --------------------------------------------------------------------------


@dataclasses.dataclass
class Workers:
    """Worker processes serving ``tests.cli.cli_flows``, and how to reach them."""

    settings: Settings
    engine: Engine
    env: dict[str, str]
    processes: list[WorkerProcess]

    @property
    def nodes(self) -> list[str]:
        return [worker.node for worker in self.processes]

    def logs(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.processes)


@contextlib.contextmanager
def running_workers(
    settings: Settings,
    log_dir: Path,
    workers: Mapping[str, Sequence[str]],
    modules: str = CLI_FLOWS,
) -> Iterator[Workers]:
    """Worker processes (name -> extra ``celery worker`` arguments), ready; cleaned up after."""
    env = cluster_env(settings)
    env["STALKFLOW_WORKFLOWS"] = modules
    engine = build_engine(settings)
    app = engine.transport.app  # type: ignore[attr-defined]
    started: list[WorkerProcess] = []
    try:
        for name, args in workers.items():
            started.append(WorkerProcess(name, args, env, log_dir))
        wait_ready(app, started, 30.0)
        yield Workers(settings, engine, env, started)
    finally:
        for worker in started:
            worker.terminate()
        for worker in started:
            worker.stop()
        engine.transport.close()  # type: ignore[attr-defined]
        assert settings.redis_url is not None and settings.broker_url is not None
        delete_keys(settings.redis_url, f"{settings.prefix}*")
        delete_queue_keys(settings.broker_url, settings.queue)
