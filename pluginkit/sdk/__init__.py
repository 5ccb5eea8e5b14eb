"""Write Docker-compatible plugins in Python.

:class:`PluginServer` answers Docker's plugin protocol (``Plugin.Activate``
plus ``POST /<Method>`` JSON calls) over a unix socket or TCP. The typed
drivers (:class:`VolumeDriver`, :class:`NetworkDriver`, :class:`IpamDriver`,
:class:`AuthzPlugin`, :class:`SecretProvider`, :class:`LogDriver`) turn
Docker's endpoints into methods with attrs request and response models; the
models live in :mod:`pluginkit.sdk.volume`, :mod:`pluginkit.sdk.network`,
:mod:`pluginkit.sdk.ipam`, :mod:`pluginkit.sdk.authz`,
:mod:`pluginkit.sdk.secrets` and :mod:`pluginkit.sdk.logdriver`, and
:data:`converter` maps them to Docker's JSON.
"""

from __future__ import annotations

from .._public import publish
from .._wire._serverside import CONTENT_TYPE
from . import authz, ipam, logdriver, network, secrets, volume
from ._convert import converter, json_name
from ._driver import Driver, Endpoint
from ._server import Handler, InvalidRequestError, PluginServer
from .authz import AuthzPlugin
from .ipam import IpamDriver
from .logdriver import LogDriver
from .network import NetworkDriver
from .secrets import SecretProvider
from .volume import VolumeDriver

__all__ = [
    "CONTENT_TYPE",
    "AuthzPlugin",
    "Driver",
    "Endpoint",
    "Handler",
    "InvalidRequestError",
    "IpamDriver",
    "LogDriver",
    "NetworkDriver",
    "PluginServer",
    "SecretProvider",
    "VolumeDriver",
    "authz",
    "converter",
    "ipam",
    "json_name",
    "logdriver",
    "network",
    "secrets",
    "volume",
]


publish(globals())
