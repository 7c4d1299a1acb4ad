"""Observability in distributed mode: what the client reports, what the workers report.

A step's verbose lines are written by the worker that executes it; the run's
span belongs to the process that awaits the run, here the test process, which
sees no step span (those are made in the workers).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tests.fixtures import distributed_workflows as flows
from tests.fixtures.instrumentation import Handlers, recording
from tests.integration._cluster import Cluster

pytestmark = [pytest.mark.redis, pytest.mark.celery]


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    with recording() as attached:
        yield attached


async def test_workers_write_the_verbose_lines_of_their_steps(
    distributed: Cluster, handlers: Handlers, capsys: pytest.CaptureFixture[str]
) -> None:
    word = f"hi-{uuid.uuid4().hex[:8]}"

    assert await flows.chatty.run(word=word) == word.upper()

    # the run's start is the client's; its steps are the workers'
    assert f"[tick] add: ShoutStart(word='{word}')" in capsys.readouterr().out
    distributed.wait_for_log(
        "[shout:0] started from ShoutStart",
        "[shout:0] complete with Shouted",
        f"[tick] add: Shouted(text='{word.upper()}')",
        "[finish:0] started from Shouted",
        f"[result] StopEvent(result='{word.upper()}')",
        "[finish:0] complete with StopEvent",
    )
    assert [span.name for span in handlers.spans.spans] == ["Chatty.run"]
