"""IPAM plugins: :class:`IpamDriver` and the models of libnetwork's IPAM remote API.

Docker calls ``/IpamDriver.<Method>``. Example::

    from pluginkit.sdk import ipam

    class Driver(ipam.IpamDriver):
        def request_pool(self, request: ipam.RequestPoolRequest) -> ipam.RequestPoolResponse:
            return ipam.RequestPoolResponse(pool_id="p1", pool="10.9.0.0/24")
        def release_pool(self, request: ipam.ReleasePoolRequest) -> None: ...
        def request_address(
            self, request: ipam.RequestAddressRequest
        ) -> ipam.RequestAddressResponse:
            return ipam.RequestAddressResponse(address="10.9.0.2/24")
        def release_address(self, request: ipam.ReleaseAddressRequest) -> None: ...
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._convert import json_name
from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented

__all__ = [
    "AddressSpacesResponse",
    "CapabilitiesResponse",
    "IpamDriver",
    "ReleaseAddressRequest",
    "ReleasePoolRequest",
    "RequestAddressRequest",
    "RequestAddressResponse",
    "RequestPoolRequest",
    "RequestPoolResponse",
]


@attrs.frozen
class CapabilitiesResponse:
    """Reply to ``GetCapabilities``."""

    requires_mac_address: bool = attrs.field(
        default=False, metadata=json_name("RequiresMACAddress")
    )


@attrs.frozen
class AddressSpacesResponse:
    """Reply to ``GetDefaultAddressSpaces``."""

    local_default_address_space: str = "LocalDefault"
    global_default_address_space: str = "GlobalDefault"


@attrs.frozen
class RequestPoolRequest:
    """``RequestPool``: a pool in ``address_space``, ``pool`` (CIDR) when the user chose one."""

    address_space: str = ""
    pool: str = ""
    sub_pool: str = ""
    options: dict[str, str] = attrs.field(factory=dict)
    v6: bool = attrs.field(default=False, metadata=json_name("V6"))


@attrs.frozen
class RequestPoolResponse:
    """Reply to ``RequestPool``: the pool's id and CIDR."""

    pool_id: str
    pool: str
    data: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ReleasePoolRequest:
    """``ReleasePool``."""

    pool_id: str


@attrs.frozen
class RequestAddressRequest:
    """``RequestAddress``: an address from pool ``pool_id``, ``address`` when one is asked."""

    pool_id: str
    address: str = ""
    options: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class RequestAddressResponse:
    """Reply to ``RequestAddress``: the address in CIDR form (``10.0.0.2/24``)."""

    address: str
    data: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ReleaseAddressRequest:
    """``ReleaseAddress``."""

    pool_id: str
    address: str


class IpamDriver(Driver):
    """Base class of IPAM plugins (capability ``IpamDriver``).

    Required: ``request_pool``, ``release_pool``, ``request_address``,
    ``release_address``. ``get_capabilities`` defaults to not requiring MAC
    addresses and ``get_default_address_spaces`` to Docker's
    ``LocalDefault``/``GlobalDefault``.
    """

    implements: ClassVar[str] = "IpamDriver"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("IpamDriver.GetCapabilities", "get_capabilities", None, required=False),
        Endpoint(
            "IpamDriver.GetDefaultAddressSpaces",
            "get_default_address_spaces",
            None,
            required=False,
        ),
        Endpoint("IpamDriver.RequestPool", "request_pool", RequestPoolRequest),
        Endpoint("IpamDriver.ReleasePool", "release_pool", ReleasePoolRequest),
        Endpoint("IpamDriver.RequestAddress", "request_address", RequestAddressRequest),
        Endpoint("IpamDriver.ReleaseAddress", "release_address", ReleaseAddressRequest),
    )

    def get_capabilities(self) -> MaybeAwaitable[CapabilitiesResponse]:
        """Say whether the driver needs MAC addresses (default: no)."""
        return CapabilitiesResponse()

    def get_default_address_spaces(self) -> MaybeAwaitable[AddressSpacesResponse]:
        """Name the default address spaces."""
        return AddressSpacesResponse()

    @unimplemented
    def request_pool(self, request: RequestPoolRequest) -> MaybeAwaitable[RequestPoolResponse]:
        """Allocate an address pool."""
        raise NotImplementedError

    @unimplemented
    def release_pool(self, request: ReleasePoolRequest) -> MaybeAwaitable[None]:
        """Release an address pool."""
        raise NotImplementedError

    @unimplemented
    def request_address(
        self, request: RequestAddressRequest
    ) -> MaybeAwaitable[RequestAddressResponse]:
        """Allocate an address."""
        raise NotImplementedError

    @unimplemented
    def release_address(self, request: ReleaseAddressRequest) -> MaybeAwaitable[None]:
        """Release an address."""
        raise NotImplementedError
