"""Give public names the module users import them from.

Classes and functions live in private modules (``pluginkit._errors``) and are
re-exported by a public one (``pluginkit``). :func:`publish` sets their
``__module__`` to the public module, so that tracebacks, ``repr`` and
``help()`` show ``pluginkit.ErrNotFound``, not ``pluginkit._errors.ErrNotFound``
(httpx does the same). Pickle still finds them: the public module has them.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["publish"]


def publish(namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` of the classes and functions in ``namespace["__all__"]``.

    Only names defined in a private submodule of that module (a ``_`` name,
    at any depth) are changed; those of public submodules keep theirs.
    """
    module = namespace["__name__"]
    for name in namespace["__all__"]:
        obj = namespace.get(name)  # absent: loaded lazily (module __getattr__)
        # (isinstance, not inspect: importing inspect costs an SDK plugin ~10 ms)
        if not isinstance(obj, (type, types.FunctionType)):
            continue
        home = getattr(obj, "__module__", "") or ""
        if not home.startswith(f"{module}.") or not any(
            part.startswith("_") for part in home[len(module) + 1 :].split(".")
        ):
            continue
        if isinstance(obj, type) and attrs.has(obj):
            # Postponed annotations are resolved in the globals of the class's
            # module: resolve them while that is still the defining one.
            with contextlib.suppress(NameError):  # names imported for type checking only
                attrs.resolve_types(obj)
        obj.__module__ = module
