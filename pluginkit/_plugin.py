"""The :class:`Plugin` value every lookup returns, legacy or managed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import PluginError

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from ._config import PluginConfig, Settings

__all__ = ["Plugin"]


def _lower_all(capabilities: Iterable[str]) -> tuple[str, ...]:
    return tuple(c.lower() for c in capabilities)


@attrs.define(eq=False)
class Plugin:
    """A plugin found by a lookup: its name, address, client and capabilities.

    Legacy plugins (found by :class:`~pluginkit.LegacyRegistry`) have
    ``id=None`` and ``is_legacy=True``; their capabilities come from the
    ``Plugin.Activate`` handshake. Managed plugins carry their 64-hex id, their
    ``config`` (:class:`~pluginkit.PluginConfig`), ``settings`` and
    ``plugin_reference``; their capabilities come from ``config.json``.
    Capabilities are lower-case.

    The ``client`` of a managed plugin is created on first use (a disabled
    plugin has nothing listening yet) and closed when the plugin is
    disabled, removed or its manager shuts down; the next use of ``client``
    creates a fresh one. ``enabled``, ``refcount`` and ``health`` of a managed
    plugin are kept current by its manager: ``health`` is ``None`` unless the
    manager has a :class:`~pluginkit.HealthCheck` and the plugin runs, then
    ``"starting"`` (not answered yet), ``"healthy"`` or ``"unhealthy"``.
    """

    name: str
    addr: str
    _client: Client | None = attrs.field(default=None, alias="client", repr=False)
    capabilities: tuple[str, ...] = attrs.field(converter=_lower_all, default=())
    id: str | None = None
    is_legacy: bool = True
    enabled: bool = True
    config: PluginConfig | None = attrs.field(default=None, repr=False)
    settings: Settings | None = attrs.field(default=None, repr=False)
    refcount: int = 0
    plugin_reference: str = ""
    health: str | None = attrs.field(default=None, init=False)
    # Set by the manager that owns the plugin, not by callers.
    _client_factory: Callable[[], Client] | None = attrs.field(default=None, init=False, repr=False)
    _client_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _async_client: AsyncClient | None = attrs.field(default=None, init=False, repr=False)
    _stable_path: str | None = attrs.field(default=None, init=False, repr=False)

    @property
    def stable_address(self) -> str | None:
        """A ``unix://`` URL that reaches this plugin by its *name*, while it is enabled.

        The path is derived from the plugin's name only (not its id), so it is
        the same after a remove and re-create or an upgrade: other programs
        (Podman's ``containers.conf``, a systemd unit) are configured once.
        ``None`` for legacy plugins and disabled managed plugins.
        """
        if self.is_legacy or not self.enabled or self._stable_path is None:
            return None
        return f"unix://{self._stable_path}"

    @property
    def client(self) -> Client:
        """The :class:`~pluginkit.Client` that talks to this plugin."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                if self._client_factory is None:
                    raise PluginError(f"plugin {self.name} has no client")
                self._client = self._client_factory()
            return self._client

    @property
    def async_client(self) -> AsyncClient:
        """An :class:`~pluginkit.AsyncClient` for this plugin, with the settings of ``client``.

        Made on first use, and closed and renewed together with ``client``.
        """
        async_client = self._async_client
        if async_client is not None:
            return async_client
        client = self.client
        with self._client_lock:
            if self._async_client is None:
                from ._async_client import AsyncClient  # here: asyncio is loaded when used

                self._async_client = AsyncClient(
                    client.addr,
                    tls=client.tls,
                    timeout=client.timeout,
                    retry_timeout=client.retry_timeout,
                    max_response_size=client.max_response_size,
                    backoff_unit=client.backoff_unit,
                )
            return self._async_client

    def _drop_client(self) -> None:
        """Close a managed plugin's clients; the next use of ``client`` makes a new one."""
        if self._client_factory is None:
            return  # legacy plugins share their registry's client
        with self._client_lock:
            client, self._client = self._client, None
            async_client, self._async_client = self._async_client, None
        if client is not None:
            client.close()
        if async_client is not None:
            async_client.close()

    def implements(self, capability: str) -> bool:
        """Tell whether the plugin implements ``capability`` (case-insensitive)."""
        return capability.lower() in self.capabilities

    def to_dict(self) -> dict[str, Any]:
        """Docker's ``docker plugin inspect`` JSON shape.

        Managed plugins: ``Id``, ``Name``, ``Enabled``, ``PluginReference``,
        ``Settings`` (``Mounts``, ``Env``, ``Args``, ``Devices``) and
        ``Config`` exactly as Docker prints them, plus pluginkit's own
        ``Health`` (``{"Status": health}``) while :attr:`health` is not
        ``None``. Legacy plugins have no config: their dict says what is
        known (``Addr``, ``Implements``).
        """
        if self.is_legacy or self.config is None:
            return {
                "Id": self.id,
                "Name": self.name,
                "Enabled": self.enabled,
                "Addr": self.addr,
                "Implements": list(self.capabilities),
            }
        from ._config import Settings, dump_config, dump_settings

        record = {
            "Id": self.id,
            "Name": self.name,
            "Enabled": self.enabled,
            "PluginReference": self.plugin_reference,
            "Settings": dump_settings(self.settings if self.settings is not None else Settings()),
            "Config": dump_config(self.config),
        }
        if self.health is not None:
            record["Health"] = {"Status": self.health}  # pluginkit's own field
        return record
