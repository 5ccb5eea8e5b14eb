"""Volume plugins: :class:`VolumeDriver` and the models of its endpoints.

Docker calls ``/VolumeDriver.<Method>`` (see Docker's "Volume plugins"
documentation); the models carry Docker's JSON names (``Name``, ``Opts``,
``Mountpoint``, ``ID``, ...). Example::

    from pluginkit.sdk import volume

    class Driver(volume.VolumeDriver):
        def create(self, request: volume.CreateRequest) -> None:
            ...

        def mount(self, request: volume.MountRequest) -> volume.MountResponse:
            return volume.MountResponse(mountpoint=f"/data/{request.name}")
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .._errors import PluginError
from ._convert import json_name
from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented

__all__ = [
    "Capability",
    "CapabilitiesResponse",
    "CreateRequest",
    "GetRequest",
    "GetResponse",
    "ListResponse",
    "MountRequest",
    "MountResponse",
    "NoSuchVolume",
    "PathRequest",
    "PathResponse",
    "RemoveRequest",
    "UnmountRequest",
    "Volume",
    "VolumeDriver",
]


class NoSuchVolume(PluginError, LookupError):
    """Raise it from a driver method for a volume that does not exist.

    The engine gets Docker's own text, HTTP 500 ``{"Err": "no such volume"}``:
    what Docker's volume store says, and the text Podman recognizes - it
    calls ``Get`` before every ``Create`` and for each volume it lists, and
    takes this answer as "not there" instead of a failure. Logged at debug
    level only: it is a routine answer, not a fault.

    Args:
        name: The volume asked for (kept in :attr:`name`; the wire text stays
            Docker's, without it).
    """

    #: Tells the server to log it at debug level.
    routine = True

    def __init__(self, name: str = "") -> None:
        super().__init__("no such volume")
        self.name = name

    def __repr__(self) -> str:
        return f"NoSuchVolume({self.name!r})"


@attrs.frozen
class CreateRequest:
    """``VolumeDriver.Create``: make volume ``name`` with driver-specific ``options`` (``Opts``)."""

    name: str
    options: dict[str, str] = attrs.field(factory=dict, metadata=json_name("Opts"))


@attrs.frozen
class RemoveRequest:
    """``VolumeDriver.Remove``: delete volume ``name``."""

    name: str


@attrs.frozen
class MountRequest:
    """``VolumeDriver.Mount``: make ``name`` available for caller ``id`` (a container id).

    Docker may mount a volume several times with different ids; count them
    and unmount for real when the last caller leaves.
    """

    name: str
    id: str = ""


@attrs.frozen
class MountResponse:
    """Reply to ``VolumeDriver.Mount``: the host path of the mounted volume."""

    mountpoint: str


@attrs.frozen
class UnmountRequest:
    """``VolumeDriver.Unmount``: caller ``id`` no longer uses ``name``."""

    name: str
    id: str = ""


@attrs.frozen
class PathRequest:
    """``VolumeDriver.Path``: ask where volume ``name`` is mounted."""

    name: str


@attrs.frozen
class PathResponse:
    """Reply to ``VolumeDriver.Path``: the mountpoint (empty when not mounted)."""

    mountpoint: str = ""


@attrs.frozen
class Volume:
    """A volume as ``Get`` and ``List`` report it (``CreatedAt`` is RFC 3339 text)."""

    name: str
    mountpoint: str | None = None
    created_at: str | None = None
    status: dict[str, Any] | None = None


@attrs.frozen
class GetRequest:
    """``VolumeDriver.Get``: describe volume ``name``."""

    name: str


@attrs.frozen
class GetResponse:
    """Reply to ``VolumeDriver.Get``."""

    volume: Volume


@attrs.frozen
class ListResponse:
    """Reply to ``VolumeDriver.List``."""

    volumes: list[Volume] = attrs.field(factory=list)


@attrs.frozen
class Capability:
    """What the driver can do: ``scope`` is ``"local"`` or ``"global"`` (cluster-wide)."""

    scope: str = "local"


@attrs.frozen
class CapabilitiesResponse:
    """Reply to ``VolumeDriver.Capabilities``."""

    capabilities: Capability = attrs.field(factory=Capability)


class VolumeDriver(Driver):
    """Base class of volume plugins (capability ``VolumeDriver``).

    Override the methods your driver supports; each takes the request
    model and returns the response model (or None for an empty ``{}``
    reply). Raise an exception to answer ``{"Err": message}``.
    ``capabilities`` defaults to local scope.
    """

    implements: ClassVar[str] = "VolumeDriver"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("VolumeDriver.Create", "create", CreateRequest),
        Endpoint("VolumeDriver.Remove", "remove", RemoveRequest),
        Endpoint("VolumeDriver.Mount", "mount", MountRequest),
        Endpoint("VolumeDriver.Unmount", "unmount", UnmountRequest),
        Endpoint("VolumeDriver.Path", "path", PathRequest),
        Endpoint("VolumeDriver.Get", "get", GetRequest),
        Endpoint("VolumeDriver.List", "list", None),
        Endpoint("VolumeDriver.Capabilities", "capabilities", None, required=False),
    )

    @unimplemented
    def create(self, request: CreateRequest) -> MaybeAwaitable[None]:
        """Create a volume."""
        raise NotImplementedError

    @unimplemented
    def remove(self, request: RemoveRequest) -> MaybeAwaitable[None]:
        """Remove a volume."""
        raise NotImplementedError

    @unimplemented
    def mount(self, request: MountRequest) -> MaybeAwaitable[MountResponse]:
        """Mount a volume for one caller and return where."""
        raise NotImplementedError

    @unimplemented
    def unmount(self, request: UnmountRequest) -> MaybeAwaitable[None]:
        """Release one caller's mount."""
        raise NotImplementedError

    @unimplemented
    def path(self, request: PathRequest) -> MaybeAwaitable[PathResponse]:
        """Return where a volume is mounted."""
        raise NotImplementedError

    @unimplemented
    def get(self, request: GetRequest) -> MaybeAwaitable[GetResponse]:
        """Describe one volume; raise :class:`NoSuchVolume` when there is none."""
        raise NotImplementedError

    @unimplemented
    def list(self) -> MaybeAwaitable[ListResponse]:
        """List every volume."""
        raise NotImplementedError

    def capabilities(self) -> MaybeAwaitable[CapabilitiesResponse]:
        """Say what the driver can do (default: local scope)."""
        return CapabilitiesResponse()
