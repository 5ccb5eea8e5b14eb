"""Module-level plugin lookups, like Docker's ``plugingetter`` entry points.

``find_with_capability`` / ``lookup_with_capability`` ask a manager when one
is given or set as the default (the manager looks at its managed plugins and
falls back to its legacy registry); with none, they ask a module-level
:class:`~pluginkit.LegacyRegistry` over Docker's default directories.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from ._legacy import LegacyRegistry
from ._plugin import Plugin

__all__ = [
    "FindWithCapability",
    "LookupWithCapability",
    "PluginGetter",
    "find_with_capability",
    "get_default_manager",
    "lookup_with_capability",
    "set_default_manager",
]


@runtime_checkable
class PluginGetter(Protocol):
    """What the lookups need from a manager (:class:`~pluginkit.Manager` has it)."""

    def find_with_capability(self, capability: str) -> list[Plugin]:
        """Return every enabled plugin with ``capability``."""
        ...

    def lookup_with_capability(self, name: str, capability: str) -> Plugin:
        """Return the plugin ``name`` if it has ``capability``, else raise."""
        ...


_lock = threading.Lock()
_default_manager: PluginGetter | None = None
_default_registry: LegacyRegistry | None = None


def set_default_manager(manager: PluginGetter | None) -> None:
    """Make ``manager`` the one lookups use when none is passed (``None`` unsets it)."""
    global _default_manager
    if manager is not None and not isinstance(manager, PluginGetter):
        raise TypeError(
            f"{type(manager).__name__} has no find_with_capability/lookup_with_capability"
        )
    _default_manager = manager


def get_default_manager() -> PluginGetter | None:
    """Return the manager set with :func:`set_default_manager`, or ``None``."""
    return _default_manager


def _legacy_registry() -> LegacyRegistry:
    """Return the registry used without a manager (Docker's dirs; made on first use)."""
    global _default_registry
    with _lock:
        if _default_registry is None:
            _default_registry = LegacyRegistry()
        return _default_registry


def find_with_capability(capability: str, *, manager: PluginGetter | None = None) -> list[Plugin]:
    """Return every plugin that implements ``capability``.

    Args:
        capability: e.g. ``"VolumeDriver"`` (case-insensitive).
        manager: ask this manager; default: the default manager, else the
            legacy registry over Docker's directories.
    """
    manager = manager if manager is not None else _default_manager
    if manager is not None:
        return manager.find_with_capability(capability)
    return _legacy_registry().get_all(capability)


def lookup_with_capability(
    name: str, capability: str, *, manager: PluginGetter | None = None
) -> Plugin:
    """Return the plugin ``name`` if it implements ``capability``.

    Args:
        name: the plugin's name.
        capability: e.g. ``"VolumeDriver"`` (case-insensitive).
        manager: ask this manager; default: the default manager, else the
            legacy registry over Docker's directories.

    Raises:
        ErrNotFound: no such plugin (``ErrDisabled`` from a manager when it is
            disabled).
        ErrInadequateCapability: it does not implement ``capability``.
    """
    manager = manager if manager is not None else _default_manager
    if manager is not None:
        return manager.lookup_with_capability(name, capability)
    return _legacy_registry().get(name, capability)


#: Docker's name for :func:`find_with_capability`.
FindWithCapability = find_with_capability
#: Docker's name for :func:`lookup_with_capability`.
LookupWithCapability = lookup_with_capability
