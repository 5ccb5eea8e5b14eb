"""Write Docker-compatible plugins in Python.

:class:`PluginServer` answers Docker's plugin protocol (``Plugin.Activate``
plus ``POST /<Method>`` JSON calls) over a unix socket or TCP. The typed
drivers (:class:`VolumeDriver`, :class:`NetworkDriver`, :class:`IpamDriver`,
:class:`AuthzPlugin`) turn Docker's endpoints into methods with attrs request
and response models; their models live in :mod:`pluginkit.sdk.volume`,
:mod:`pluginkit.sdk.network`, :mod:`pluginkit.sdk.ipam` and
:mod:`pluginkit.sdk.authz`.
"""

from __future__ import annotations

from ._http import CONTENT_TYPE
from ._server import Handler, PluginServer

__all__ = [
    "CONTENT_TYPE",
    "Handler",
    "PluginServer",
]
