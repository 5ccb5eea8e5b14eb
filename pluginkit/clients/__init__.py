"""Typed clients of Docker's plugin protocols, blocking and asyncio.

Each client wraps a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client`
(an async client for the ``Async...`` ones) or an address, names its methods
as the SDK driver of the protocol does, and takes and returns the SDK's attrs
models (:mod:`pluginkit.sdk.volume`, :mod:`pluginkit.sdk.network`...)::

    from pluginkit.clients import VolumeDriverClient

    volumes = VolumeDriverClient(manager.lookup_with_capability("vol", "VolumeDriver"))
    volumes.create("v1", {"size": "1G"})
    for v in volumes.list():
        print(v.name, v.mountpoint)

Errors are the protocol client's: :class:`~pluginkit.PluginCallError` when
the plugin refuses (also a 200 reply with a non-empty ``Err``, as Docker's
proxies treat it), :class:`~pluginkit.PluginProtocolError` when a reply does
not fit its model, the connection and timeout errors unchanged.
"""

from __future__ import annotations

from .authz import AsyncAuthzClient, AuthzClient
from .ipam import AsyncIpamDriverClient, IpamDriverClient
from .logdriver import AsyncLogDriverClient, LogDriverClient
from .network import AsyncNetworkDriverClient, NetworkDriverClient
from .secrets import AsyncSecretProviderClient, SecretProviderClient
from .volume import AsyncVolumeDriverClient, VolumeDriverClient

__all__ = [
    "AsyncAuthzClient",
    "AsyncIpamDriverClient",
    "AsyncLogDriverClient",
    "AsyncNetworkDriverClient",
    "AsyncSecretProviderClient",
    "AsyncVolumeDriverClient",
    "AuthzClient",
    "IpamDriverClient",
    "LogDriverClient",
    "NetworkDriverClient",
    "SecretProviderClient",
    "VolumeDriverClient",
]
