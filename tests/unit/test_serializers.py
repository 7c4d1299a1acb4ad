"""Behaviour of stalkflow.context.serializers: JSON envelopes, pickle fallback, class lookup."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stalkflow.context.serializers import (
    BaseSerializer,
    JsonPickleSerializer,
    JsonSerializer,
    PickleSerializer,
    resolve_qualified_name,
)
from stalkflow.events import Event, StartEvent, StopEvent


class Person(BaseModel):
    name: str
    age: int = 0


class Team(BaseModel):
    members: list[Person]


class Box:
    class Inner(BaseModel):
        v: int


class Component:
    """Stands in for a LlamaIndex component: class_name, to_dict, from_dict."""

    def __init__(self, size: int) -> None:
        self.size = size

    @classmethod
    def class_name(cls) -> str:
        return "Component"

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Component:
        return cls(data["size"])


class Opaque:
    """JSON cannot hold it; pickle can."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.x == self.x


def _envelope(name: str, value: Any = None) -> dict[str, Any]:
    return {"__is_pydantic": True, "value": value or {}, "qualified_name": name}


@pytest.fixture
def unimported_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of an importable module (defining ``Model``) that nothing has imported."""
    name = "stalkflow_probe_serializers_mod"
    (tmp_path / f"{name}.py").write_text(
        "from pydantic import BaseModel\nclass Model(BaseModel):\n    x: int = 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# --- BaseSerializer ------------------------------------------------------------


def test_base_serializer_is_abstract() -> None:
    with pytest.raises(TypeError):
        BaseSerializer()  # type: ignore[abstract]


def test_base_serializer_can_be_implemented() -> None:
    class Upper(BaseSerializer):
        def serialize(self, value: Any) -> str:
            return str(value).upper()

        def deserialize(self, value: str) -> Any:
            return value.lower()

    s = Upper()
    assert s.deserialize(s.serialize("ab")) == "ab"
    with s.validation_context():
        pass


# --- JsonSerializer ------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2.5, "s", None, True, [1, [2]], {"a": {"b": [1, None]}}])
def test_json_round_trips_plain_values(value: Any) -> None:
    s = JsonSerializer()
    encoded = s.serialize(value)
    assert json.loads(encoded) == value
    assert s.deserialize(encoded) == value


def test_json_turns_tuples_into_lists() -> None:
    s = JsonSerializer()
    assert s.deserialize(s.serialize((1, 2))) == [1, 2]


def test_json_pydantic_envelope_format() -> None:
    encoded = json.loads(JsonSerializer().serialize(Person(name="Ada", age=36)))
    assert encoded == {
        "__is_pydantic": True,
        "value": {"name": "Ada", "age": 36},
        "qualified_name": f"{__name__}.Person",
    }


def test_json_round_trips_models_inside_containers() -> None:
    s = JsonSerializer()
    value = {"team": Team(members=[Person(name="a")]), "list": [Person(name="b", age=2)]}
    back = s.deserialize(s.serialize(value))
    assert back == value
    assert type(back["list"][0]) is Person


def test_json_round_trips_nested_classes() -> None:
    s = JsonSerializer()
    back = s.deserialize(s.serialize(Box.Inner(v=3)))
    assert type(back) is Box.Inner
    assert back.v == 3


def test_json_round_trips_events_with_dynamic_keys_and_results() -> None:
    s = JsonSerializer()
    start = s.deserialize(s.serialize(StartEvent(topic="t", n=2)))
    assert type(start) is StartEvent
    assert start.to_dict() == {"topic": "t", "n": 2}
    stop = s.deserialize(s.serialize(StopEvent(result={"a": 1}, extra="e")))
    assert type(stop) is StopEvent
    assert stop.result == {"a": 1}
    assert stop.extra == "e"


def test_json_component_envelope_round_trips() -> None:
    s = JsonSerializer()
    encoded = json.loads(s.serialize(Component(4)))
    assert encoded == {
        "__is_component": True,
        "value": {"size": 4},
        "qualified_name": f"{__name__}.Component",
    }
    back = s.deserialize(json.dumps(encoded))
    assert type(back) is Component
    assert back.size == 4


def test_event_with_a_class_name_key_is_not_a_component() -> None:
    s = JsonSerializer()
    back = s.deserialize(s.serialize(Event(class_name="c")))
    assert back == Event(class_name="c")


def test_json_serialize_failure_message() -> None:
    with pytest.raises(ValueError, match=r"^Failed to serialize value: <class 'set'>: \{1\}$"):
        JsonSerializer().serialize({1})


def test_json_failure_is_reported_for_values_deep_inside() -> None:
    with pytest.raises(ValueError, match="Failed to serialize value"):
        JsonSerializer().serialize({"ok": 1, "bad": [Opaque(1)]})


def test_json_reading_may_import_the_named_module(unimported_module: str) -> None:
    back = JsonSerializer().deserialize(json.dumps(_envelope(f"{unimported_module}.Model")))
    assert unimported_module in sys.modules
    assert type(back).__name__ == "Model"


def test_json_without_imports_refuses_unimported_modules(unimported_module: str) -> None:
    s = JsonSerializer(import_modules=False)
    with pytest.raises(ImportError):
        s.deserialize(json.dumps(_envelope(f"{unimported_module}.Model")))
    assert unimported_module not in sys.modules
    assert s.deserialize(s.serialize(Person(name="x"))) == Person(name="x")


def test_json_unknown_class_names_raise() -> None:
    s = JsonSerializer()
    with pytest.raises(ImportError):
        s.deserialize_value(_envelope("no_such_module_anywhere.Model"))
    with pytest.raises(AttributeError):
        s.deserialize_value(_envelope(f"{__name__}.Missing"))


@pytest.mark.parametrize(
    "name",
    ["os.system", "builtins.__import__", f"{__name__}.Component"],
    ids=["function", "dunder", "not-a-model"],
)
def test_json_envelopes_only_build_pydantic_models(name: str) -> None:
    with pytest.raises(ValueError):
        JsonSerializer().deserialize_value(_envelope(name))


def test_json_ignores_envelope_keys_without_a_name() -> None:
    data = {"__is_pydantic": True, "value": {"a": 1}}
    assert JsonSerializer().deserialize_value(data) == data


# --- allowed_types -------------------------------------------------------------


def test_allowed_types_accepts_listed_classes_only() -> None:
    writer = JsonSerializer()
    reader = JsonSerializer(allowed_types=[Person])
    assert reader.deserialize(writer.serialize(Person(name="a"))) == Person(name="a")
    with pytest.raises(ValueError, match="allowed_types"):
        reader.deserialize(writer.serialize(Team(members=[])))


def test_allowed_types_always_admits_stalkflow_events() -> None:
    reader = JsonSerializer(allowed_types=[])
    back = reader.deserialize(JsonSerializer().serialize(StopEvent(result=1)))
    assert type(back) is StopEvent


def test_allowed_types_reads_upstream_style_names_of_nested_classes() -> None:
    # llama-index-workflows writes module.__name__, which loses the outer class.
    reader = JsonSerializer(allowed_types=[Box.Inner])
    back = reader.deserialize_value(_envelope(f"{__name__}.Inner", {"v": 1}))
    assert back == Box.Inner(v=1)


def test_allowed_types_accepts_names_as_strings() -> None:
    reader = JsonSerializer(allowed_types=[f"{__name__}.Person"])
    assert reader.deserialize_value(_envelope(f"{__name__}.Person", {"name": "n"})).name == "n"


def test_with_types_extends_a_restricted_serializer() -> None:
    reader = JsonSerializer(allowed_types=[Person]).with_types(Team)
    assert reader.deserialize(JsonSerializer().serialize(Team(members=[]))) == Team(members=[])
    unrestricted = JsonSerializer()
    assert unrestricted.with_types(Team) is unrestricted


def test_allowed_types_rejects_bad_entries() -> None:
    with pytest.raises(TypeError):
        JsonSerializer(allowed_types=[list[int]])
    other_person = type("Person", (BaseModel,), {"__module__": __name__})
    with pytest.raises(ValueError):
        JsonSerializer(allowed_types=[Person, other_person])


# --- PickleSerializer ----------------------------------------------------------


def test_pickle_serializer_prefers_json() -> None:
    s = PickleSerializer()
    encoded = s.serialize({"a": Person(name="p")})
    assert json.loads(encoded)["a"]["__is_pydantic"] is True
    assert s.deserialize(encoded) == {"a": Person(name="p")}


@pytest.mark.parametrize("value", [Opaque(3), {1, 2}, {"k": Opaque(1)}])
def test_pickle_serializer_falls_back_to_pickle(value: Any) -> None:
    s = PickleSerializer()
    encoded = s.serialize(value)
    with pytest.raises(ValueError):
        json.loads(encoded)
    assert s.deserialize(encoded) == value


@pytest.mark.parametrize("document", ["1234", "true", '"abcd"', "[1, 2]", "null"])
def test_pickle_serializer_reads_json_documents(document: str) -> None:
    assert PickleSerializer().deserialize(document) == json.loads(document)


def test_pickle_serializer_fails_on_unpicklable_values() -> None:
    def make() -> Any:
        return lambda: 1

    with pytest.raises(ValueError, match="Failed to serialize value"):
        PickleSerializer().serialize(make())


def test_json_pickle_serializer_is_the_old_name() -> None:
    assert JsonPickleSerializer is PickleSerializer


# --- resolve_qualified_name ----------------------------------------------------


@pytest.mark.parametrize("name", ["", "nodots", "a..b", ".a"])
def test_resolve_rejects_malformed_names(name: str) -> None:
    with pytest.raises(ValueError):
        resolve_qualified_name(name)


def test_resolve_finds_nested_attributes_without_importing() -> None:
    assert resolve_qualified_name(f"{__name__}.Box.Inner", allow_import=False) is Box.Inner
    assert resolve_qualified_name("json.JSONDecodeError") is json.JSONDecodeError


def test_resolve_does_not_hide_broken_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stalkflow_probe_broken_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        resolve_qualified_name("stalkflow_probe_broken_mod.Thing")
    sys.modules.pop("stalkflow_probe_broken_mod", None)
