"""Typed clients of network plugins: :class:`NetworkDriverClient` and its async twin.

The requests are libnetwork's remote driver API (``NetworkID``,
``EndpointID``, ``Options``...), built from :mod:`pluginkit.sdk.network`'s
models; replies are returned as those models. As libnetwork does,
``program_external_connectivity`` and ``revoke_external_connectivity``
succeed when the plugin does not implement them (404).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..sdk import network as models
from ._base import AsyncBase, Call, SyncBase, endpoint, ignore_reply, model_reply, request

__all__ = ["AsyncNetworkDriverClient", "NetworkDriverClient"]


def _none() -> None:
    return None


class _NetworkDriver:
    """The ``NetworkDriver`` protocol, once for both clients."""

    capability = "NetworkDriver"

    @endpoint
    def get_capabilities(self) -> Call[models.CapabilitiesResponse]:
        """Ask the driver's scope (``local`` or ``global``) and connectivity scope."""
        return Call(
            "NetworkDriver.GetCapabilities",
            None,
            model_reply(models.CapabilitiesResponse),
            reply_type=models.CapabilitiesResponse,
        )

    @endpoint
    def create_network(
        self,
        network_id: str,
        options: Mapping[str, Any] | None = None,
        ipv4_data: Sequence[models.IPAMData] = (),
        ipv6_data: Sequence[models.IPAMData] = (),
    ) -> Call[None]:
        """Create network ``network_id`` with its options and address pools."""
        body = models.CreateNetworkRequest(
            network_id, dict(options or {}), list(ipv4_data), list(ipv6_data)
        )
        return Call("NetworkDriver.CreateNetwork", request(body), ignore_reply)

    @endpoint
    def allocate_network(
        self,
        network_id: str,
        options: Mapping[str, str] | None = None,
        ipv4_data: Sequence[models.IPAMData] = (),
        ipv6_data: Sequence[models.IPAMData] = (),
    ) -> Call[models.AllocateNetworkResponse]:
        """Reserve a network's resources (swarm managers); return options for ``create_network``."""
        body = models.AllocateNetworkRequest(
            network_id, dict(options or {}), list(ipv4_data), list(ipv6_data)
        )
        return Call(
            "NetworkDriver.AllocateNetwork",
            request(body),
            model_reply(models.AllocateNetworkResponse),
            reply_type=models.AllocateNetworkResponse,
        )

    @endpoint
    def delete_network(self, network_id: str) -> Call[None]:
        """Delete network ``network_id``."""
        body = request(models.DeleteNetworkRequest(network_id))
        return Call("NetworkDriver.DeleteNetwork", body, ignore_reply)

    @endpoint
    def free_network(self, network_id: str) -> Call[None]:
        """Release what ``allocate_network`` reserved."""
        body = request(models.FreeNetworkRequest(network_id))
        return Call("NetworkDriver.FreeNetwork", body, ignore_reply)

    @endpoint
    def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        interface: models.EndpointInterface | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Call[models.CreateEndpointResponse]:
        """Create an endpoint; the reply holds the addresses the driver chose, if any."""
        body = models.CreateEndpointRequest(network_id, endpoint_id, interface, dict(options or {}))
        return Call(
            "NetworkDriver.CreateEndpoint",
            request(body),
            model_reply(models.CreateEndpointResponse),
            reply_type=models.CreateEndpointResponse,
        )

    @endpoint
    def endpoint_oper_info(self, network_id: str, endpoint_id: str) -> Call[models.InfoResponse]:
        """Return operational data of an endpoint."""
        return Call(
            "NetworkDriver.EndpointOperInfo",
            request(models.InfoRequest(network_id, endpoint_id)),
            model_reply(models.InfoResponse),
            reply_type=models.InfoResponse,
        )

    @endpoint
    def delete_endpoint(self, network_id: str, endpoint_id: str) -> Call[None]:
        """Delete an endpoint."""
        body = request(models.DeleteEndpointRequest(network_id, endpoint_id))
        return Call("NetworkDriver.DeleteEndpoint", body, ignore_reply)

    @endpoint
    def join(
        self,
        network_id: str,
        endpoint_id: str,
        sandbox_key: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> Call[models.JoinResponse]:
        """Attach an endpoint to the sandbox at ``sandbox_key``; return its interface and routes."""
        body = models.JoinRequest(network_id, endpoint_id, sandbox_key, dict(options or {}))
        return Call(
            "NetworkDriver.Join",
            request(body),
            model_reply(models.JoinResponse),
            reply_type=models.JoinResponse,
        )

    @endpoint
    def leave(self, network_id: str, endpoint_id: str) -> Call[None]:
        """Detach an endpoint from its sandbox."""
        body = request(models.LeaveRequest(network_id, endpoint_id))
        return Call("NetworkDriver.Leave", body, ignore_reply)

    @endpoint
    def discover_new(self, discovery_type: int, discovery_data: Any = None) -> Call[None]:
        """Tell the driver that a node or datastore came."""
        body = request(models.DiscoveryNotification(discovery_type, discovery_data))
        return Call("NetworkDriver.DiscoverNew", body, ignore_reply)

    @endpoint
    def discover_delete(self, discovery_type: int, discovery_data: Any = None) -> Call[None]:
        """Tell the driver that a node or datastore went."""
        body = request(models.DiscoveryNotification(discovery_type, discovery_data))
        return Call("NetworkDriver.DiscoverDelete", body, ignore_reply)

    @endpoint
    def program_external_connectivity(
        self, network_id: str, endpoint_id: str, options: Mapping[str, Any] | None = None
    ) -> Call[None]:
        """Set up an endpoint's external connectivity (e.g. port mappings)."""
        body = models.ProgramExternalConnectivityRequest(
            network_id, endpoint_id, dict(options or {})
        )
        return Call(
            "NetworkDriver.ProgramExternalConnectivity",
            request(body),
            ignore_reply,
            missing=_none,
        )

    @endpoint
    def revoke_external_connectivity(self, network_id: str, endpoint_id: str) -> Call[None]:
        """Undo ``program_external_connectivity``."""
        body = request(models.RevokeExternalConnectivityRequest(network_id, endpoint_id))
        return Call("NetworkDriver.RevokeExternalConnectivity", body, ignore_reply, missing=_none)


class NetworkDriverClient(_NetworkDriver, SyncBase):
    """Call a network plugin with typed arguments and results, blocking.

    Takes a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an
    address; errors are the client's (:class:`~pluginkit.PluginCallError`
    also for a 200 reply with a non-empty ``Err``).
    """


class AsyncNetworkDriverClient(_NetworkDriver, AsyncBase):
    """:class:`NetworkDriverClient` for asyncio: the same methods, as coroutines."""
