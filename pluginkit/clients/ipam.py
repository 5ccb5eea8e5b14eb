"""Typed clients of IPAM plugins: :class:`IpamDriverClient` and its async twin.

Requests and replies are :mod:`pluginkit.sdk.ipam`'s models (libnetwork's
IPAM remote API). As libnetwork does, ``get_capabilities`` of a plugin
without that endpoint (404) is the default (no MAC address needed).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..sdk import ipam as models
from ._base import AsyncBase, Call, SyncBase, endpoint, ignore_reply, model_reply, request

__all__ = ["AsyncIpamDriverClient", "IpamDriverClient"]


class _IpamDriver:
    """The ``IpamDriver`` protocol, once for both clients."""

    capability = "IpamDriver"

    @endpoint
    def get_capabilities(self) -> Call[models.CapabilitiesResponse]:
        """Ask whether the driver needs MAC addresses."""
        return Call(
            "IpamDriver.GetCapabilities",
            None,
            model_reply(models.CapabilitiesResponse),
            reply_type=models.CapabilitiesResponse,
            missing=models.CapabilitiesResponse,
        )

    @endpoint
    def get_default_address_spaces(self) -> Call[models.AddressSpacesResponse]:
        """Ask the names of the driver's default local and global address spaces."""
        return Call(
            "IpamDriver.GetDefaultAddressSpaces",
            None,
            model_reply(models.AddressSpacesResponse),
            reply_type=models.AddressSpacesResponse,
        )

    @endpoint
    def request_pool(
        self,
        address_space: str = "",
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> Call[models.RequestPoolResponse]:
        """Allocate an address pool (``pool`` in CIDR form when the user chose one)."""
        body = models.RequestPoolRequest(address_space, pool, sub_pool, dict(options or {}), v6)
        return Call(
            "IpamDriver.RequestPool",
            request(body),
            model_reply(models.RequestPoolResponse),
            reply_type=models.RequestPoolResponse,
        )

    @endpoint
    def release_pool(self, pool_id: str) -> Call[None]:
        """Release pool ``pool_id``."""
        body = request(models.ReleasePoolRequest(pool_id))
        return Call("IpamDriver.ReleasePool", body, ignore_reply)

    @endpoint
    def request_address(
        self, pool_id: str, address: str = "", options: Mapping[str, str] | None = None
    ) -> Call[models.RequestAddressResponse]:
        """Allocate an address of pool ``pool_id`` (``address`` when a given one is wanted)."""
        body = models.RequestAddressRequest(pool_id, address, dict(options or {}))
        return Call(
            "IpamDriver.RequestAddress",
            request(body),
            model_reply(models.RequestAddressResponse),
            reply_type=models.RequestAddressResponse,
        )

    @endpoint
    def release_address(self, pool_id: str, address: str) -> Call[None]:
        """Release ``address`` of pool ``pool_id``."""
        body = request(models.ReleaseAddressRequest(pool_id, address))
        return Call("IpamDriver.ReleaseAddress", body, ignore_reply)


class IpamDriverClient(_IpamDriver, SyncBase):
    """Call an IPAM plugin with typed arguments and results, blocking.

    Takes a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an
    address; errors are the client's (:class:`~pluginkit.PluginCallError`
    also for a 200 reply with a non-empty ``Err``).
    """


class AsyncIpamDriverClient(_IpamDriver, AsyncBase):
    """:class:`IpamDriverClient` for asyncio: the same methods, as coroutines."""
