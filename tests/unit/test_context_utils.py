"""``stalkflow.context.utils``: qualified names, as llama-index-workflows' helpers.

The error cases are those of llama-index-workflows' tests/context/test_utils.py.
"""

import pytest

from stalkflow.context.utils import get_qualified_name, import_module_from_qualified_name
from stalkflow.events import StartEvent


class Outer:
    class Inner:
        pass


def test_qualified_name_of_an_instance() -> None:
    assert get_qualified_name(StartEvent()) == f"{StartEvent.__module__}.StartEvent"
    # The class's __name__, not its __qualname__, as upstream.
    assert get_qualified_name(Outer.Inner()) == f"{__name__}.Inner"


def test_qualified_name_needs_a_module() -> None:
    with pytest.raises(
        AttributeError,
        match="Object foo does not have required attributes: "
        "'str' object has no attribute '__module__'",
    ):
        get_qualified_name("foo")


def test_import_from_qualified_name() -> None:
    assert import_module_from_qualified_name("stalkflow.events.StartEvent") is StartEvent
    assert import_module_from_qualified_name(f"{__name__}.Outer") is Outer


@pytest.mark.parametrize("name", ["not containing a dot", ""])
def test_import_needs_a_dotted_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"Qualified name must be in format 'module\.attribute'"):
        import_module_from_qualified_name(name)


def test_import_of_a_missing_module() -> None:
    with pytest.raises(
        ImportError, match="Failed to import module __doesnt: No module named '__doesnt'"
    ):
        import_module_from_qualified_name("__doesnt.exist")


def test_import_of_a_missing_attribute() -> None:
    with pytest.raises(
        AttributeError,
        match="Attribute doesntexist not found in module typing: "
        "module 'typing' has no attribute 'doesntexist'",
    ):
        import_module_from_qualified_name("typing.doesntexist")
