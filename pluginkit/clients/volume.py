"""Typed clients of volume plugins: :class:`VolumeDriverClient` and its async twin.

The requests are the ones Docker's volume driver proxy sends (``{"Name",
"Opts"}``, ``{"Name", "ID"}``..., ``{}`` for ``List`` and ``Capabilities``);
the replies are read with :mod:`pluginkit.sdk.volume`'s models, and their
envelopes are opened as Docker does: ``get`` returns the
:class:`~pluginkit.sdk.volume.Volume`, ``mount`` and ``path`` the mountpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..sdk import volume as models
from ._base import AsyncBase, Call, SyncBase, endpoint, field_reply, ignore_reply, request

__all__ = ["AsyncVolumeDriverClient", "VolumeDriverClient"]


class _VolumeDriver:
    """The ``VolumeDriver`` protocol, once for both clients."""

    capability = "VolumeDriver"

    @endpoint
    def create(self, name: str, opts: Mapping[str, str] | None = None) -> Call[None]:
        """Create volume ``name`` with driver options ``opts`` (``docker volume create -o``)."""
        body = request(models.CreateRequest(name, dict(opts or {})))
        return Call("VolumeDriver.Create", body, ignore_reply)

    @endpoint
    def remove(self, name: str) -> Call[None]:
        """Delete volume ``name``."""
        return Call("VolumeDriver.Remove", request(models.RemoveRequest(name)), ignore_reply)

    @endpoint
    def mount(self, name: str, id: str) -> Call[str]:
        """Mount ``name`` for caller ``id`` (a container id); return the host path."""
        return Call(
            "VolumeDriver.Mount",
            request(models.MountRequest(name, id)),
            field_reply(models.MountResponse, lambda reply: reply.mountpoint),
            reply_type=models.MountResponse,
        )

    @endpoint
    def unmount(self, name: str, id: str) -> Call[None]:
        """Release caller ``id``'s mount of ``name``."""
        body = request(models.UnmountRequest(name, id))
        return Call("VolumeDriver.Unmount", body, ignore_reply)

    @endpoint
    def path(self, name: str) -> Call[str]:
        """Return where ``name`` is mounted (``""`` when it is not)."""
        return Call(
            "VolumeDriver.Path",
            request(models.PathRequest(name)),
            field_reply(models.PathResponse, lambda reply: reply.mountpoint),
            reply_type=models.PathResponse,
        )

    @endpoint
    def get(self, name: str) -> Call[models.Volume]:
        """Describe volume ``name``."""
        return Call(
            "VolumeDriver.Get",
            request(models.GetRequest(name)),
            field_reply(models.GetResponse, lambda reply: reply.volume),
            reply_type=models.GetResponse,
        )

    @endpoint
    def list(self) -> Call[list[models.Volume]]:
        """List every volume of the driver."""
        return Call(
            "VolumeDriver.List",
            {},
            field_reply(models.ListResponse, lambda reply: reply.volumes),
            reply_type=models.ListResponse,
        )

    @endpoint
    def capabilities(self) -> Call[models.Capability]:
        """Say the driver's scope; a plugin without the endpoint (404) is local, as for Docker."""
        return Call(
            "VolumeDriver.Capabilities",
            {},
            field_reply(models.CapabilitiesResponse, lambda reply: reply.capabilities),
            reply_type=models.CapabilitiesResponse,
            missing=models.Capability,
        )


class VolumeDriverClient(_VolumeDriver, SyncBase):
    """Call a volume plugin with typed arguments and results, blocking.

    ``VolumeDriverClient(plugin).create("v1", {"size": "1G"})``; takes a
    :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an address.
    Errors are the client's: :class:`~pluginkit.PluginCallError` for a
    plugin's error (also a 200 reply with a non-empty ``Err``), and
    :class:`~pluginkit.PluginProtocolError` for a reply that does not fit.
    """


class AsyncVolumeDriverClient(_VolumeDriver, AsyncBase):
    """:class:`VolumeDriverClient` for asyncio: the same methods, as coroutines."""
