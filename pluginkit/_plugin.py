"""The :class:`Plugin` value every lookup returns, legacy or managed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Plugin"]


def _lower_all(capabilities: Iterable[str]) -> tuple[str, ...]:
    return tuple(c.lower() for c in capabilities)


@attrs.define(eq=False)
class Plugin:
    """A plugin found by a lookup: its name, address, client and capabilities.

    Legacy plugins (found by :class:`~pluginkit.LegacyRegistry`) have
    ``id=None`` and ``is_legacy=True``; their capabilities come from the
    ``Plugin.Activate`` handshake. Managed plugins carry their 64-hex id, their
    ``config`` and ``settings``. Capabilities are lower-case.
    """

    name: str
    addr: str
    client: Client
    capabilities: tuple[str, ...] = attrs.field(converter=_lower_all, default=())
    id: str | None = None
    is_legacy: bool = True
    enabled: bool = True
    config: Any = None
    settings: Any = None
    refcount: int = 0

    def implements(self, capability: str) -> bool:
        """Tell whether the plugin implements ``capability`` (case-insensitive)."""
        return capability.lower() in self.capabilities

    def to_dict(self) -> dict[str, Any]:
        """Docker's ``docker plugin inspect`` JSON shape (legacy plugins: what is known)."""
        return {
            "Id": self.id,
            "Name": self.name,
            "Enabled": self.enabled,
            "Addr": self.addr,
            "Implements": list(self.capabilities),
        }
