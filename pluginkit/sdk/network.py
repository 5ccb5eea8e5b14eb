"""Network plugins: :class:`NetworkDriver` and the models of libnetwork's remote API.

Docker calls ``/NetworkDriver.<Method>``. Options given with
``docker network create -o k=v`` arrive nested under
``options["com.docker.network.generic"]``. Example::

    from pluginkit.sdk import network

    class Driver(network.NetworkDriver):
        def create_network(self, request: network.CreateNetworkRequest) -> None: ...
        def delete_network(self, request: network.DeleteNetworkRequest) -> None: ...
        def create_endpoint(self, request: network.CreateEndpointRequest) -> None: ...
        def delete_endpoint(self, request: network.DeleteEndpointRequest) -> None: ...
        def join(self, request: network.JoinRequest) -> network.JoinResponse:
            return network.JoinResponse(
                interface_name=network.InterfaceName(src_name="veth0", dst_prefix="eth")
            )
        def leave(self, request: network.LeaveRequest) -> None: ...
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented

__all__ = [
    "AllocateNetworkRequest",
    "AllocateNetworkResponse",
    "CapabilitiesResponse",
    "CreateEndpointRequest",
    "CreateEndpointResponse",
    "CreateNetworkRequest",
    "DeleteEndpointRequest",
    "DeleteNetworkRequest",
    "DiscoveryNotification",
    "EndpointInterface",
    "FreeNetworkRequest",
    "InfoRequest",
    "InfoResponse",
    "InterfaceName",
    "IPAMData",
    "JoinRequest",
    "JoinResponse",
    "LeaveRequest",
    "NetworkDriver",
    "ProgramExternalConnectivityRequest",
    "RevokeExternalConnectivityRequest",
    "StaticRoute",
]


@attrs.frozen
class CapabilitiesResponse:
    """Reply to ``GetCapabilities``: ``scope`` and ``connectivity_scope`` are local or global."""

    scope: str = "local"
    connectivity_scope: str | None = None


@attrs.frozen
class IPAMData:
    """One address pool of a network, as the IPAM driver gave it."""

    address_space: str = ""
    pool: str = ""
    gateway: str = ""
    aux_addresses: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CreateNetworkRequest:
    """``CreateNetwork``: a network with its options and IPv4/IPv6 pools."""

    network_id: str
    options: dict[str, Any] = attrs.field(factory=dict)
    ipv4_data: list[IPAMData] = attrs.field(factory=list)
    ipv6_data: list[IPAMData] = attrs.field(factory=list)


@attrs.frozen
class AllocateNetworkRequest:
    """``AllocateNetwork`` (swarm managers): reserve resources for a network."""

    network_id: str
    options: dict[str, str] = attrs.field(factory=dict)
    ipv4_data: list[IPAMData] = attrs.field(factory=list)
    ipv6_data: list[IPAMData] = attrs.field(factory=list)


@attrs.frozen
class AllocateNetworkResponse:
    """Reply to ``AllocateNetwork``: options passed on to ``CreateNetwork`` on every node."""

    options: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class DeleteNetworkRequest:
    """``DeleteNetwork``."""

    network_id: str


@attrs.frozen
class FreeNetworkRequest:
    """``FreeNetwork`` (swarm managers): release what ``AllocateNetwork`` reserved."""

    network_id: str


@attrs.frozen
class EndpointInterface:
    """An endpoint's addresses (CIDR notation) and MAC address."""

    address: str = ""
    address_ipv6: str = ""
    mac_address: str = ""


@attrs.frozen
class CreateEndpointRequest:
    """``CreateEndpoint``: ``interface`` holds the addresses Docker already chose, if any."""

    network_id: str
    endpoint_id: str
    interface: EndpointInterface | None = None
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CreateEndpointResponse:
    """Reply to ``CreateEndpoint``: addresses the driver chose (only when Docker gave none)."""

    interface: EndpointInterface | None = None


@attrs.frozen
class InfoRequest:
    """``EndpointOperInfo``: operational data of an endpoint."""

    network_id: str
    endpoint_id: str


@attrs.frozen
class InfoResponse:
    """Reply to ``EndpointOperInfo``."""

    value: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class DeleteEndpointRequest:
    """``DeleteEndpoint``."""

    network_id: str
    endpoint_id: str


@attrs.frozen
class JoinRequest:
    """``Join``: attach an endpoint to the sandbox (network namespace) at ``sandbox_key``."""

    network_id: str
    endpoint_id: str
    sandbox_key: str = ""
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class InterfaceName:
    """The host interface ``src_name`` Docker moves into the sandbox, renamed ``dst_prefix`` + N."""

    src_name: str
    dst_prefix: str


@attrs.frozen
class StaticRoute:
    """A route to add in the sandbox; ``route_type`` 0 = next hop, 1 = connected."""

    destination: str
    route_type: int = 0
    next_hop: str = ""


@attrs.frozen
class JoinResponse:
    """Reply to ``Join``."""

    interface_name: InterfaceName | None = None
    gateway: str = ""
    gateway_ipv6: str = ""
    static_routes: list[StaticRoute] = attrs.field(factory=list)
    disable_gateway_service: bool = False


@attrs.frozen
class LeaveRequest:
    """``Leave``: detach an endpoint from its sandbox."""

    network_id: str
    endpoint_id: str


@attrs.frozen
class DiscoveryNotification:
    """``DiscoverNew`` / ``DiscoverDelete``: a node or datastore came or went."""

    discovery_type: int = 0
    discovery_data: Any = None


@attrs.frozen
class ProgramExternalConnectivityRequest:
    """``ProgramExternalConnectivity``: e.g. set up port mappings of an endpoint."""

    network_id: str
    endpoint_id: str
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RevokeExternalConnectivityRequest:
    """``RevokeExternalConnectivity``: undo ``ProgramExternalConnectivity``."""

    network_id: str
    endpoint_id: str


class NetworkDriver(Driver):
    """Base class of network plugins (capability ``NetworkDriver``).

    Required: ``create_network``, ``delete_network``, ``create_endpoint``,
    ``delete_endpoint``, ``join``, ``leave`` (not overriding one leaves it
    unserved: 404). The others answer success by default:
    ``get_capabilities`` local scope, the swarm, discovery and
    external-connectivity calls no-ops, ``endpoint_oper_info`` empty.
    """

    implements: ClassVar[str] = "NetworkDriver"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("NetworkDriver.GetCapabilities", "get_capabilities", None, required=False),
        Endpoint("NetworkDriver.CreateNetwork", "create_network", CreateNetworkRequest),
        Endpoint(
            "NetworkDriver.AllocateNetwork",
            "allocate_network",
            AllocateNetworkRequest,
            required=False,
        ),
        Endpoint("NetworkDriver.DeleteNetwork", "delete_network", DeleteNetworkRequest),
        Endpoint("NetworkDriver.FreeNetwork", "free_network", FreeNetworkRequest, required=False),
        Endpoint("NetworkDriver.CreateEndpoint", "create_endpoint", CreateEndpointRequest),
        Endpoint(
            "NetworkDriver.EndpointOperInfo", "endpoint_oper_info", InfoRequest, required=False
        ),
        Endpoint("NetworkDriver.DeleteEndpoint", "delete_endpoint", DeleteEndpointRequest),
        Endpoint("NetworkDriver.Join", "join", JoinRequest),
        Endpoint("NetworkDriver.Leave", "leave", LeaveRequest),
        Endpoint(
            "NetworkDriver.DiscoverNew", "discover_new", DiscoveryNotification, required=False
        ),
        Endpoint(
            "NetworkDriver.DiscoverDelete",
            "discover_delete",
            DiscoveryNotification,
            required=False,
        ),
        Endpoint(
            "NetworkDriver.ProgramExternalConnectivity",
            "program_external_connectivity",
            ProgramExternalConnectivityRequest,
            required=False,
        ),
        Endpoint(
            "NetworkDriver.RevokeExternalConnectivity",
            "revoke_external_connectivity",
            RevokeExternalConnectivityRequest,
            required=False,
        ),
    )

    def get_capabilities(self) -> MaybeAwaitable[CapabilitiesResponse]:
        """Say the driver's scope (default: local)."""
        return CapabilitiesResponse()

    @unimplemented
    def create_network(self, request: CreateNetworkRequest) -> MaybeAwaitable[None]:
        """Create a network."""
        raise NotImplementedError

    def allocate_network(
        self, request: AllocateNetworkRequest
    ) -> MaybeAwaitable[AllocateNetworkResponse]:
        """Reserve network resources on a swarm manager (default: nothing)."""
        return AllocateNetworkResponse()

    @unimplemented
    def delete_network(self, request: DeleteNetworkRequest) -> MaybeAwaitable[None]:
        """Delete a network."""
        raise NotImplementedError

    def free_network(self, request: FreeNetworkRequest) -> MaybeAwaitable[None]:
        """Release what ``allocate_network`` reserved (default: nothing)."""

    @unimplemented
    def create_endpoint(
        self, request: CreateEndpointRequest
    ) -> MaybeAwaitable[CreateEndpointResponse | None]:
        """Create an endpoint."""
        raise NotImplementedError

    def endpoint_oper_info(self, request: InfoRequest) -> MaybeAwaitable[InfoResponse]:
        """Return operational data of an endpoint (default: none)."""
        return InfoResponse()

    @unimplemented
    def delete_endpoint(self, request: DeleteEndpointRequest) -> MaybeAwaitable[None]:
        """Delete an endpoint."""
        raise NotImplementedError

    @unimplemented
    def join(self, request: JoinRequest) -> MaybeAwaitable[JoinResponse]:
        """Attach an endpoint to a sandbox."""
        raise NotImplementedError

    @unimplemented
    def leave(self, request: LeaveRequest) -> MaybeAwaitable[None]:
        """Detach an endpoint from its sandbox."""
        raise NotImplementedError

    def discover_new(self, request: DiscoveryNotification) -> MaybeAwaitable[None]:
        """Handle a discovery notification (default: ignore it)."""

    def discover_delete(self, request: DiscoveryNotification) -> MaybeAwaitable[None]:
        """Handle a discovery removal (default: ignore it)."""

    def program_external_connectivity(
        self, request: ProgramExternalConnectivityRequest
    ) -> MaybeAwaitable[None]:
        """Set up external connectivity of an endpoint (default: nothing)."""

    def revoke_external_connectivity(
        self, request: RevokeExternalConnectivityRequest
    ) -> MaybeAwaitable[None]:
        """Undo external connectivity of an endpoint (default: nothing)."""
