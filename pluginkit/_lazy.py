"""Public names loaded on first use (PEP 562), for ``pluginkit`` and its public packages.

A command answered by a daemon, or a plugin that only serves, must not pay
for imports it never uses. A package lists which private module holds each
of its public names; :func:`lazy_exports` gives it the module-level
``__getattr__`` and ``__dir__`` that import a name's module on first access,
cache the name in the package, and give it the package as its
``__module__`` (see :mod:`pluginkit._public`). Type checkers are shown the
eager imports, under ``if TYPE_CHECKING:``, in the package itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], table: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for the package whose globals are ``namespace``.

    Args:
        namespace: The package's ``globals()``.
        table: Public name -> the relative module that defines it (``"._client"``).
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        home = table.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        from ._public import publish

        value = getattr(importlib.import_module(home, package), name)
        publish({"__name__": package, "__all__": [name], name: value})
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
