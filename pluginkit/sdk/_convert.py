"""The one cattrs converter between the SDK's attrs models and Docker's JSON.

It is :func:`pluginkit._dockerjson.make_converter`'s converter (field names,
objects, unknown keys: see there) with the protocol's additions:

- Docker (Go) sends ``null`` for empty maps and lists, and omits fields it
  has no value for: a ``null`` or missing field takes the field's default;
  ``None`` values are left out of replies;
- scalars are strict, as Go's decoder (:class:`WrongTypeError`);
- ``bytes`` travel as base64 text, as Go's ``[]byte``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from .._dockerjson import json_name, make_converter, wire_name

__all__ = [
    "WrongTypeError",
    "converter",
    "json_name",
    "structure",
    "unstructure",
    "wire_name",
]

_T = TypeVar("_T")

converter = make_converter(drop_none=True)


class WrongTypeError(TypeError):
    """A JSON value whose type does not fit the field (``"false"`` for a bool, 1.7 for an int)."""

    def __init__(self, expected: type, value: Any) -> None:
        self.got = type(value).__name__
        super().__init__(f"expected {expected.__name__}, got {self.got}")


def _strict(expected: type[_T]) -> Callable[[Any, type], _T]:
    # cattrs' default hooks call str()/int()/bool() on anything: {"Name": 5}
    # became "5" and {"V6": "false"} became True. Go's decoder refuses
    # mismatched JSON types; so do we (bool is not an int here either).
    def structure_scalar(value: Any, _: type) -> _T:
        if isinstance(value, expected) and (expected is bool or not isinstance(value, bool)):
            return value
        if expected is float and type(value) is int:
            return float(value)  # type: ignore[return-value]
        raise WrongTypeError(expected, value)

    return structure_scalar


for _scalar in (str, int, float, bool):
    converter.register_structure_hook(_scalar, _strict(_scalar))


def _structure_bytes(value: Any, _: type) -> bytes:
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"expected base64 text, got {type(value).__name__}")


converter.register_structure_hook(bytes, _structure_bytes)
converter.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))


def structure(value: Any, cls: type[_T]) -> _T:
    """Build a model from decoded JSON."""
    return converter.structure(value, cls)


def unstructure(value: Any) -> Any:
    """Turn a model into JSON-ready data with Docker's field names."""
    return converter.unstructure(value)
