"""The one cattrs converter between the SDK's attrs models and Docker's JSON.

Python fields are snake_case; on the wire they carry Docker's names. The
name is derived from the field name (``network_id`` -> ``NetworkID``,
``ipv4_data`` -> ``IPv4Data``, ``created_at`` -> ``CreatedAt``); the few that
do not follow the rule say so in their metadata (``json_name("RequiresMACAddress")``).

Docker (Go) sends ``null`` for empty maps and lists, and omits fields it
has no value for: a ``null`` or missing field takes the field's default.
Unknown fields are ignored, so newer engines do not break older plugins.
``None`` values are left out of replies.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

__all__ = ["converter", "json_name", "structure", "unstructure", "wire_name"]

_T = TypeVar("_T")

_TOKENS = {"id": "ID", "ipv4": "IPv4", "ipv6": "IPv6"}
_METADATA_KEY = "pluginkit.json"


def json_name(name: str) -> dict[str, str]:
    """Field metadata giving the field's Docker JSON name explicitly."""
    return {_METADATA_KEY: name}


def wire_name(attribute: attrs.Attribute[Any]) -> str:
    """Return the Docker JSON name of an attrs field."""
    explicit = attribute.metadata.get(_METADATA_KEY)
    if explicit:
        return str(explicit)
    return "".join(_TOKENS.get(part, part.capitalize()) for part in attribute.name.split("_"))


converter = cattrs.Converter()


def _structure_bytes(value: Any, _: type) -> bytes:
    if isinstance(value, str):
        return base64.b64decode(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"expected base64 text, got {type(value).__name__}")


converter.register_structure_hook(bytes, _structure_bytes)
converter.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))


def _structure_factory(cls: type[Any]) -> Callable[[Any, type[Any]], Any]:
    renames = {a.name: override(rename=wire_name(a)) for a in attrs.fields(cls)}
    inner = make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]

    def structure_model(value: Any, target: type[Any]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TypeError(f"{cls.__name__} expects a JSON object, got {type(value).__name__}")
        return inner({k: v for k, v in value.items() if v is not None}, target)

    return structure_model


def _unstructure_factory(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
    renames = {a.name: override(rename=wire_name(a)) for a in attrs.fields(cls)}
    inner = make_dict_unstructure_fn(cls, converter, **renames)  # type: ignore[arg-type]

    def unstructure_model(value: Any) -> dict[str, Any]:
        return {k: v for k, v in inner(value).items() if v is not None}

    return unstructure_model


converter.register_structure_hook_factory(attrs.has, _structure_factory)
converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)


def structure(value: Any, cls: type[_T]) -> _T:
    """Build a model from decoded JSON."""
    return converter.structure(value, cls)


def unstructure(value: Any) -> Any:
    """Turn a model into JSON-ready data with Docker's field names."""
    return converter.unstructure(value)
