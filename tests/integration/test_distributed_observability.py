"""Observability in distributed mode: what the client reports, what the workers report.

A step's verbose lines are written by the worker that executes it; the run's
span belongs to the process that awaits the run, here the test process, which
sees no step span (those are made in the workers).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.span import BaseSpan
from llama_index_instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr
from tests.fixtures import distributed_workflows as flows
from tests.integration._cluster import Cluster

pytestmark = [pytest.mark.redis, pytest.mark.celery]


class Names(BaseSpanHandler[BaseSpan]):
    _names: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Names"

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BaseSpan:
        self._names.append(id_.rsplit("-", 5)[0])
        return BaseSpan(id_=id_, parent_id=parent_span_id)

    def prepare_to_exit_span(self, id_: str, *args: Any, **kwargs: Any) -> BaseSpan | None:
        return self.open_spans.get(id_)

    def prepare_to_drop_span(self, id_: str, *args: Any, **kwargs: Any) -> BaseSpan | None:
        return self.open_spans.get(id_)


@pytest.fixture
def names() -> Iterator[Names]:
    handler = Names()
    root = get_dispatcher()
    root.span_handlers.append(handler)
    try:
        yield handler
    finally:
        root.span_handlers.remove(handler)


async def test_workers_write_the_verbose_lines_of_their_steps(
    distributed: Cluster, names: Names, capsys: pytest.CaptureFixture[str]
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
    assert names._names == ["Chatty.run"]
