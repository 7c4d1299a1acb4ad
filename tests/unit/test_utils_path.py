"""``stalkflow.utils``: step inspection helpers under upstream's module path.

The cases are those of llama-index-workflows' tests/test_utils.py and
tests/test_nanoid.py.
"""

import inspect
import string
from typing import Annotated, Any, get_type_hints

import pytest
from pydantic import BaseModel

from stalkflow.context import Context
from stalkflow.decorators import step
from stalkflow.errors import WorkflowValidationError
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.resource import Resource
from stalkflow.utils import (
    StepSignatureSpec,
    _get_param_types,
    _get_return_types,
    _nanoid,
    get_steps_from_class,
    get_steps_from_instance,
    inspect_signature,
    is_free_function,
    validate_step_signature,
)
from stalkflow.workflow import Workflow


class One(Event):
    pass


class Another(Event):
    pass


class Counter(BaseModel):
    count: int = 0


def get_client() -> str:
    return "client"


# --- _nanoid -----------------------------------------------------------------


def test_nanoid_is_ten_alphanumeric_characters_by_default() -> None:
    nid = _nanoid()
    assert len(nid) == 10
    assert set(nid) <= set(string.ascii_letters + string.digits)


@pytest.mark.parametrize(("size", "length"), [(3, 3), (0, 0), (-1, 0), (-10, 0)])
def test_nanoid_size(size: int, length: int) -> None:
    assert len(_nanoid(size)) == length


def test_nanoids_are_unique() -> None:
    assert len({_nanoid() for _ in range(1000)}) == 1000


# --- inspect_signature ---------------------------------------------------------


def test_inspect_signature_reports_what_the_signature_declares() -> None:
    def f(
        self: Any,
        ctx: Context[Counter],
        ev: One | Another,
        client: Annotated[str, Resource(get_client)],
    ) -> One | StopEvent | None:
        return None

    spec = inspect_signature(f)
    assert isinstance(spec, StepSignatureSpec)
    assert spec.accepted_events == {"ev": [One, Another]}
    assert spec.return_types == [One, StopEvent]
    assert spec.context_parameter == "ctx"
    assert spec.context_state_type is Counter
    assert [(r.name, r.type_annotation) for r in spec.resources] == [("client", str)]


def test_inspect_signature_of_bare_context_and_no_return() -> None:
    def f(ctx: Context, ev: One):  # type: ignore[no-untyped-def]
        pass

    spec = inspect_signature(f)
    assert spec.context_parameter == "ctx"
    assert spec.context_state_type is None
    assert spec.return_types == []


def test_inspect_signature_resolves_postponed_names_with_localns() -> None:
    # "Local" is defined only below: get_type_hints finds it through localns.
    def f(ev: "Local") -> "Local":
        return ev

    with pytest.raises(WorkflowValidationError, match="Missing name: Local"):
        inspect_signature(f)

    class Local(Event):
        pass

    assert inspect_signature(f, localns={"Local": Local}).accepted_events == {"ev": [Local]}


def test_inspect_signature_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="Expected a callable object, got str"):
        inspect_signature("foo")  # type: ignore[arg-type]


# --- validate_step_signature ---------------------------------------------------


def test_valid_signatures() -> None:
    def method(self: Any, ev: One) -> One:
        return One()

    def free(ev: One) -> One:
        return One()

    def union(ev: One | Another) -> One:
        return One()

    def with_context(ctx: Context, ev: One) -> One:
        return One()

    for f in (method, free, union, with_context):
        validate_step_signature(inspect_signature(f))


def _no_params() -> None:
    pass


def _unannotated(self, ev) -> None:  # type: ignore[no-untyped-def]
    pass


def _wrong_annotation(self: Any, ev: str) -> None:
    pass


def _union_with_non_event(ev: One | str) -> None:
    pass


def _only_context(self: Any, ctx: Context) -> None:
    pass


@pytest.mark.parametrize(
    "f", [_no_params, _unannotated, _wrong_annotation, _union_with_non_event, _only_context]
)
def test_a_step_needs_an_event_parameter(f: Any) -> None:
    with pytest.raises(
        WorkflowValidationError,
        match="Step signature must have at least one parameter annotated as type Event",
    ):
        validate_step_signature(inspect_signature(f))


def test_a_step_takes_exactly_one_event_parameter() -> None:
    def method(self: Any, ev: One, foo: One) -> None:
        pass

    def free(ev: One, foo: One) -> None:
        pass

    for f in (method, free):
        with pytest.raises(
            WorkflowValidationError,
            match=r"Step signature must contain exactly one parameter of type Event but found 2\.",
        ):
            validate_step_signature(inspect_signature(f))


def test_a_step_annotates_its_return() -> None:
    def f(self: Any, ev: One):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(
        WorkflowValidationError,
        match="Return types of workflows step functions must be annotated with their type",
    ):
        validate_step_signature(inspect_signature(f))


# --- _get_param_types / _get_return_types ----------------------------------------


def _param_types(f: Any) -> list[Any]:
    return _get_param_types(inspect.signature(f).parameters["foo"], get_type_hints(f))


def test_param_types() -> None:
    def plain(foo: str) -> None:
        pass

    def bare(foo) -> None:  # type: ignore[no-untyped-def]
        pass

    def union(foo: str | int) -> None:
        pass

    assert _param_types(plain) == [str]
    assert _param_types(bare) == [Any]
    assert _param_types(union) == [str, int]


def test_return_types() -> None:
    def plain(foo: int) -> str:
        return ""

    def union(foo: int) -> str | int:
        return ""

    def optional(foo: int) -> str | None:
        return ""

    def listed(foo: int) -> list[str]:
        return []

    def none(foo: int) -> None:
        pass

    assert _get_return_types(plain) == [str]
    assert _get_return_types(union) == [str, int]
    assert _get_return_types(optional) == [str]
    assert _get_return_types(listed) == [list[str]]
    assert _get_return_types(none) == [type(None)]


# --- is_free_function ------------------------------------------------------------


@pytest.mark.parametrize(
    ("qualname", "free"),
    [
        ("my_function", True),
        ("MyClass.my_method", False),
        ("some_function.<locals>.my_function", True),
        ("some_function.<locals>.MyClass.my_function", False),
    ],
)
def test_is_free_function(qualname: str, free: bool) -> None:
    assert is_free_function(qualname) is free


def test_is_free_function_rejects_an_empty_name() -> None:
    with pytest.raises(ValueError, match="cannot be empty"):
        is_free_function("")


# --- get_steps_from_class / get_steps_from_instance --------------------------------


class Flow(Workflow):
    @step
    async def start(self, ev: StartEvent) -> One:
        return One()

    @step
    async def finish(self, ev: One) -> StopEvent:
        return StopEvent()

    def not_a_step(self) -> None:
        pass

    @property
    def exploding(self) -> None:
        raise AssertionError("a property must not be evaluated")


def test_get_steps_from_class_and_instance() -> None:
    from_class = get_steps_from_class(Flow)
    assert sorted(from_class) == ["finish", "start"]
    assert from_class["start"] is Flow.start

    flow = Flow()
    from_instance = get_steps_from_instance(flow)
    assert sorted(from_instance) == ["finish", "start"]
    assert from_instance["start"].__self__ is flow  # type: ignore[attr-defined]


def test_free_function_steps_are_not_members_of_the_class() -> None:
    class Open(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    @step(workflow=Open)
    async def extra(ev: One) -> StopEvent:
        return StopEvent()

    assert list(get_steps_from_class(Open)) == ["start"]
    assert sorted(Open()._get_steps()) == ["extra", "start"]
