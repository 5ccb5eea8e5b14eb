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

import importlib
from typing import TYPE_CHECKING, Any

from .._public import publish
from .._wire._serverside import CONTENT_TYPE
from ._server import Handler, InvalidRequestError, PluginServer

if TYPE_CHECKING:
    from . import authz, ipam, logdriver, network, secrets, volume
    from ._convert import converter, json_name
    from ._driver import Driver, Endpoint
    from .authz import AuthzPlugin
    from .ipam import IpamDriver
    from .logdriver import LogDriver
    from .network import NetworkDriver
    from .secrets import SecretProvider
    from .volume import VolumeDriver

# Loaded on first use (PEP 562): a plugin pays only for the driver types it
# uses (and a bare PluginServer for none, nor for cattrs).
_LAZY: dict[str, tuple[str, str | None]] = {
    "authz": (".authz", None),
    "ipam": (".ipam", None),
    "logdriver": (".logdriver", None),
    "network": (".network", None),
    "secrets": (".secrets", None),
    "volume": (".volume", None),
    "converter": ("._convert", "converter"),
    "json_name": ("._convert", "json_name"),
    "Driver": ("._driver", "Driver"),
    "Endpoint": ("._driver", "Endpoint"),
    "AuthzPlugin": (".authz", "AuthzPlugin"),
    "IpamDriver": (".ipam", "IpamDriver"),
    "LogDriver": (".logdriver", "LogDriver"),
    "NetworkDriver": (".network", "NetworkDriver"),
    "SecretProvider": (".secrets", "SecretProvider"),
    "VolumeDriver": (".volume", "VolumeDriver"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attr = where
    module = importlib.import_module(module_name, __name__)
    value = module if attr is None else getattr(module, attr)
    publish({"__name__": __name__, "__all__": [name], name: value})
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
