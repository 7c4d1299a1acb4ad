"""Claims of dead processes, and time limits, without a cluster.

A claim token names its process (host, PID namespace, pid): a worker takes over
at once a delivery whose holder is a process of this machine that is gone or a
zombie, and waits for the lease of any other. The executor's time limit fails a
step on the embedded engine as on the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from stalkflow import Workflow, step
from stalkflow.decorators import catch_error
from stalkflow.errors import StepTimeoutError
from stalkflow.events import StartEvent, StepFailedEvent, StopEvent
from stalkflow.execution import claim_token, holder_is_dead


def token_of(pid: int) -> str:
    machine = claim_token().split("/")[0]
    return f"{machine}/{pid}/0123456789ab"


def test_a_live_process_holds_its_claim() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert holder_is_dead(token_of(sleeper.pid)) is False
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_killed_process_no_longer_holds_its_claim() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    os.kill(sleeper.pid, signal.SIGKILL)
    # not reaped yet: a zombie is dead too
    deadline = time.monotonic() + 5
    while not holder_is_dead(token_of(sleeper.pid)):
        assert time.monotonic() < deadline, "a killed, unreaped process still counts as alive"
        time.sleep(0.01)
    sleeper.wait()
    assert holder_is_dead(token_of(sleeper.pid)) is True


def test_holders_elsewhere_or_unknown_count_as_alive() -> None:
    assert holder_is_dead(claim_token()) is False, "this very process"
    assert holder_is_dead("another-host~pid:[1]/12345/ab") is False
    assert holder_is_dead("not a token") is False
    assert holder_is_dead(None) is False


class Sleepy(Workflow):
    @step(soft_time_limit=0.3)
    async def nap(self, ev: StartEvent) -> StopEvent:
        import asyncio

        await asyncio.sleep(10)
        return StopEvent(result="woke")


class SleepyRescued(Sleepy):
    @catch_error
    async def rescue(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result=type(ev.exception).__name__)


async def test_the_embedded_engine_enforces_a_steps_time_limit() -> None:
    started = time.monotonic()
    with pytest.raises(StepTimeoutError, match=r"'nap' .* time limit of 0.3 s"):
        await Sleepy(timeout=10).run()
    assert time.monotonic() - started < 3

    assert await SleepyRescued(timeout=10).run() == "StepTimeoutError"
