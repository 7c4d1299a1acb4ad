"""The Context of a run: its state store, its events, its serialization."""

from stalkflow.context.context import Context
from stalkflow.context.serializers import (
    BaseSerializer,
    JsonPickleSerializer,
    JsonSerializer,
    PickleSerializer,
)

__all__ = [
    "BaseSerializer",
    "Context",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
]
