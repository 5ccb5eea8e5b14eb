"""The base of every cattrs converter between pluginkit's attrs models and Docker's JSON.

Both model families - the ``config.json`` models of :mod:`pluginkit._config`
and the SDK's protocol models of :mod:`pluginkit.sdk._convert` - share:

- **field names**: Python fields are snake_case, the JSON carries Docker's
  names, derived from the field name (``network_id`` -> ``NetworkID``,
  ``ipv4_data`` -> ``IPv4Data``, ``propagated_mount`` -> ``PropagatedMount``);
  a field that does not follow the rule says so in its metadata
  (:func:`json_name`);
- **objects**: a JSON ``null`` object is an empty one (every field takes its
  default), anything else than an object is an error worded by the format,
  unknown keys are ignored (as by Go's decoder);
- **Go's ``omitempty``**: a field whose metadata carries :data:`OMITEMPTY` is
  left out of the JSON when it holds its default;
- cattrs' detailed validation, so that errors name the path to the field.

What differs is added per format through :func:`make_converter`'s options
(case-insensitive keys and sorted output for config.json; ``None`` dropped
both ways for the SDK's protocol) and by registering the format's own scalar
hooks, whose error texts differ, on the converter it returns.

This module imports neither the config models nor the SDK, so both can build
on it without loading each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

__all__ = [
    "METADATA_KEY",
    "OMITEMPTY",
    "fold",
    "json_name",
    "make_converter",
    "wire_name",
]

METADATA_KEY: Final = "pluginkit.json"
"""Field metadata key of an explicit Docker JSON name."""

OMITEMPTY: Final = "pluginkit.omitempty"
"""Field metadata key of Go's ``omitempty``: left out of the JSON when at its default."""

_TOKENS: Final = {"id": "ID", "ipv4": "IPv4", "ipv6": "IPv6"}

FieldHooks = Callable[
    [cattrs.Converter, type[Any], "attrs.Attribute[Any]"],
    tuple[Callable[[Any, Any], Any] | None, Callable[[Any], Any] | None],
]
"""``(converter, class, field) -> (structure hook, unstructure hook)``; None keeps the default."""

NotObject = Callable[[type[Any], Any], Exception]
"""``(class, value) -> exception`` for a value that should have been a JSON object."""


def json_name(name: str) -> dict[str, str]:
    """Field metadata giving the field's Docker JSON name explicitly."""
    return {METADATA_KEY: name}


def wire_name(attribute: attrs.Attribute[Any]) -> str:
    """Return the Docker JSON name of an attrs field."""
    explicit = attribute.metadata.get(METADATA_KEY)
    if explicit:
        return str(explicit)
    return "".join(_TOKENS.get(part, part.capitalize()) for part in attribute.name.split("_"))


def fold(key: str) -> str:
    """Case-fold a key the way Go's encoding/json matches field names.

    ASCII letters fold to lower case; Go also matches the Kelvin sign and the
    long s to ``k`` and ``s``. Anything else stays as is (and so never matches
    one of our ASCII field names).
    """
    return key.lower().replace("\u017f", "s")


def _no_field_hooks(
    conv: cattrs.Converter, cls: type[Any], attribute: attrs.Attribute[Any]
) -> tuple[None, None]:
    return None, None


def _not_object(cls: type[Any], value: Any) -> Exception:
    return TypeError(f"{cls.__name__} expects a JSON object, got {type(value).__name__}")


def make_converter(
    *,
    case_insensitive: bool = False,
    drop_none: bool = False,
    sort_keys: bool = False,
    not_object: NotObject = _not_object,
    is_model: Callable[[Any], bool] = attrs.has,
    field_hooks: FieldHooks = _no_field_hooks,
) -> cattrs.Converter:
    """Build a cattrs converter for attrs models and Docker's JSON.

    Args:
        case_insensitive: match JSON keys as Go does (``"interface"``,
            ``"Interface"`` and ``"INTERFACE"`` are one key; a repeated
            object key merges into the first, later keys winning).
        drop_none: ``null`` values of an object are read as absent (the
            field's default), and ``None`` fields are left out of the JSON.
        sort_keys: write an object's keys sorted (Go's order for structs
            whose fields are alphabetical).
        not_object: the error for a model given something else than an object.
        is_model: which types get the model hooks (default: attrs classes).
        field_hooks: per-field hooks, for the format's special fields.
    """
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)

    def structure_model(cls: type[Any]) -> Callable[[Any, Any], Any]:
        # Field types are strings (postponed annotations) until resolved.
        attrs.resolve_types(cls)
        names = {a.name: wire_name(a) for a in attrs.fields(cls)}
        overrides = {
            a.name: override(rename=names[a.name], struct_hook=field_hooks(conv, cls, a)[0])
            for a in attrs.fields(cls)
        }
        inner = make_dict_structure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

        if case_insensitive:
            exact = frozenset(names.values())
            by_fold = {fold(key): key for key in exact}
            # Docker's spelling and the docs' all-lower-case one are found
            # without folding each key: known[k] == by_fold[fold(k)].
            known = {**by_fold, **{key: key for key in exact}}

            def structure_folded(value: Any, target: Any) -> Any:
                if value is None:
                    value = {}
                if not isinstance(value, dict):
                    raise not_object(cls, value)
                if exact.issuperset(value):
                    return inner(value, target)  # Docker's own spelling: nothing to fold
                canonical: dict[str, Any] = {}
                for key, item in value.items():
                    name = known.get(key)
                    if name is None and isinstance(key, str):
                        name = by_fold.get(fold(key))
                    if name is None:
                        continue  # unknown keys are tolerated, as by Go's decoder
                    previous = canonical.get(name)
                    if isinstance(previous, dict) and isinstance(item, dict):
                        # Go decodes a second "interface" into the same struct:
                        # keys of the later object win, the others stay.
                        item = {**previous, **item}
                    canonical[name] = item
                return inner(canonical, target)

            return structure_folded

        if drop_none:

            def structure_dropping(value: Any, target: Any) -> Any:
                if value is None:
                    value = {}
                if not isinstance(value, dict):
                    raise not_object(cls, value)
                return inner({k: v for k, v in value.items() if v is not None}, target)

            return structure_dropping

        def structure_plain(value: Any, target: Any) -> Any:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise not_object(cls, value)
            return inner(value, target)

        return structure_plain

    def unstructure_model(cls: type[Any]) -> Callable[[Any], Any]:
        attrs.resolve_types(cls)
        overrides = {
            a.name: override(
                rename=wire_name(a),
                omit_if_default=bool(a.metadata.get(OMITEMPTY)),
                unstruct_hook=field_hooks(conv, cls, a)[1],
            )
            for a in attrs.fields(cls)
        }
        inner = make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

        if sort_keys and drop_none:
            return lambda value: {k: v for k, v in sorted(inner(value).items()) if v is not None}
        if sort_keys:
            return lambda value: dict(sorted(inner(value).items()))
        if drop_none:
            return lambda value: {k: v for k, v in inner(value).items() if v is not None}
        return inner

    conv.register_structure_hook_factory(is_model, structure_model)
    conv.register_unstructure_hook_factory(is_model, unstructure_model)
    return conv
