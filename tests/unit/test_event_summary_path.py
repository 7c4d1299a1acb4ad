"""``stalkflow._event_summary.summarize_event``, upstream's module path for event summaries.

The cases are those of llama-index-workflows' tests/test_event_summary.py.
"""

import pytest

from stalkflow._event_summary import summarize_event
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.events import summary as summary_module


class Retrieved(Event):
    query: str
    top_k: int = 5


class Finished(StopEvent):
    summary: str = ""


def test_it_is_the_summary_verbose_output_uses() -> None:
    assert summarize_event is summary_module.summarize_event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (StartEvent(topic="Pirates"), "StartEvent(topic='Pirates')"),
        (StartEvent(), "StartEvent()"),
        (StopEvent(), "StopEvent()"),
    ],
)
def test_exact_summaries(event: Event, expected: str) -> None:
    assert summarize_event(event) == expected


def test_stop_event_shows_its_result_first() -> None:
    text = summarize_event(StopEvent(result="hello"))
    assert text.startswith("StopEvent(result=")
    assert "hello" in text


def test_stop_event_subclass_shows_result_and_fields() -> None:
    text = summarize_event(Finished(result=42, summary="done"))
    assert text.startswith("Finished(")
    assert "result=42" in text
    assert "summary='done'" in text


def test_declared_fields_then_dynamic_keys() -> None:
    text = summarize_event(Retrieved(query="hello world", top_k=3, source="wikipedia", page=7))
    assert text == "Retrieved(query='hello world', top_k=3, source='wikipedia', page=7)"


def test_long_string_is_cut() -> None:
    text = summarize_event(StartEvent(content="a" * 200))
    assert "a" * 200 not in text
    assert "a" * 50 + "..." in text


def test_long_list_and_dict_show_their_size() -> None:
    assert "items=[20 items]" in summarize_event(StartEvent(items=list(range(20))))
    mapping = {f"key_{i}": i for i in range(15)}
    assert "mapping={15 keys}" in summarize_event(StartEvent(mapping=mapping))


def test_short_list_and_dict_are_shown_inline() -> None:
    assert "items=[1, 2, 3]" in summarize_event(StartEvent(items=[1, 2, 3]))
    assert "payload={'a': 1}" in summarize_event(StartEvent(payload={"a": 1}))


def test_whole_summary_is_cut_to_max_length() -> None:
    event = Retrieved(
        query="a very long query string that keeps going and going",
        top_k=10,
        extra_field_1="some data",
        extra_field_2="more data",
    )
    text = summarize_event(event, max_length=50)
    assert len(text) == 50
    assert text.endswith("...")
