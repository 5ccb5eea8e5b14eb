"""Awaitable forms of the module lookups: afind_with_capability, alookup_with_capability.

The lookups may activate legacy plugins (a ``Plugin.Activate`` round trip
each, up to the registry's ``activation_timeout``), so their awaitable forms
run the blocking ones in pluginkit's small lookup thread pool (see
:mod:`pluginkit._offload`) and never block the event loop.
:meth:`LegacyRegistry.aget_all <pluginkit.LegacyRegistry.aget_all>` and
:meth:`LegacyRegistry.aget <pluginkit.LegacyRegistry.aget>` do the same.
"""

from __future__ import annotations

from ._lookup import PluginGetter, find_with_capability, lookup_with_capability
from ._offload import offload
from ._plugin import Plugin

__all__ = ["afind_with_capability", "alookup_with_capability"]


async def afind_with_capability(
    capability: str, *, manager: PluginGetter | None = None
) -> list[Plugin]:
    """Awaitable :func:`~pluginkit.find_with_capability`: the same arguments and result."""
    return await offload(find_with_capability, capability, manager=manager)


async def alookup_with_capability(
    name: str, capability: str, *, manager: PluginGetter | None = None
) -> Plugin:
    """Awaitable :func:`~pluginkit.lookup_with_capability`: the same arguments, result, errors."""
    return await offload(lookup_with_capability, name, capability, manager=manager)
