"""pluginkit: host out-of-process plugins the way the Docker engine does.

Plugins are separate processes (or containers) speaking Docker's plugin
protocol - HTTP+JSON over a unix socket or TCP - found by name and
capability. pluginkit drives plugins written for Docker, and plugins written
with :mod:`pluginkit.sdk` work with a real Docker engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._errors import (
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    InvalidReferenceError,
    PluginCallError,
    PluginConnectionError,
    PluginEnabledError,
    PluginError,
    PluginExistsError,
    PluginInUseError,
    PluginProtocolError,
    PluginTimeoutError,
    PrivilegesNotGrantedError,
    RootInUseError,
    RuntimeStartError,
)

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from ._config import (
        CapabilityID,
        Device,
        EnvVar,
        Mount,
        PluginConfig,
        Privilege,
        Settings,
        apply_set,
        compute_privileges,
        dump_config,
        initial_settings,
        load_config,
        parse_config,
    )
    from ._events import PluginEvent
    from ._legacy import LegacyRegistry
    from ._lookup import (
        FindWithCapability,
        LookupWithCapability,
        PluginGetter,
        find_with_capability,
        get_default_manager,
        lookup_with_capability,
        set_default_manager,
    )
    from ._manager import Manager
    from ._plugin import Plugin
    from ._reference import Reference, normalize_name, parse_reference
    from ._restart import RestartPolicy
    from ._tls import TLSConfig

# Everything but the exceptions is imported on first use (PEP 562): a plugin
# process built on pluginkit.sdk, or a script that only makes calls, does not
# load the manager, the config models or the clients it never touches.
_LAZY: dict[str, str] = {
    "AsyncClient": "._async_client",
    "Client": "._client",
    "TLSConfig": "._tls",
    "LegacyRegistry": "._legacy",
    "Manager": "._manager",
    "Plugin": "._plugin",
    "PluginEvent": "._events",
    "RestartPolicy": "._restart",
    **dict.fromkeys(
        [
            "CapabilityID",
            "Device",
            "EnvVar",
            "Mount",
            "PluginConfig",
            "Privilege",
            "Settings",
            "apply_set",
            "compute_privileges",
            "dump_config",
            "initial_settings",
            "load_config",
            "parse_config",
        ],
        "._config",
    ),
    **dict.fromkeys(
        [
            "FindWithCapability",
            "LookupWithCapability",
            "PluginGetter",
            "find_with_capability",
            "get_default_manager",
            "lookup_with_capability",
            "set_default_manager",
        ],
        "._lookup",
    ),
    **dict.fromkeys(["Reference", "normalize_name", "parse_reference"], "._reference"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0.dev0"

# A library must not print on its own: plugin output (logger
# "pluginkit.plugin") and pluginkit's own logs reach the application's
# handlers, and nothing at all when logging is not configured.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    # errors
    "ErrDisabled",
    "ErrInadequateCapability",
    "ErrNotFound",
    "InvalidConfigError",
    "InvalidReferenceError",
    "PluginCallError",
    "PluginConnectionError",
    "PluginEnabledError",
    "PluginError",
    "PluginExistsError",
    "PluginInUseError",
    "PluginProtocolError",
    "PluginTimeoutError",
    "PrivilegesNotGrantedError",
    "RootInUseError",
    "RuntimeStartError",
    # values
    "Plugin",
    # client and legacy registry
    "AsyncClient",
    "Client",
    "TLSConfig",
    "LegacyRegistry",
    "FindWithCapability",
    "LookupWithCapability",
    "PluginGetter",
    "find_with_capability",
    "get_default_manager",
    "lookup_with_capability",
    "set_default_manager",
    # manager and models
    "CapabilityID",
    "Device",
    "EnvVar",
    "Mount",
    "PluginConfig",
    "Privilege",
    "Reference",
    "Settings",
    "Manager",
    "PluginEvent",
    "RestartPolicy",
    "apply_set",
    "compute_privileges",
    "dump_config",
    "initial_settings",
    "load_config",
    "normalize_name",
    "parse_config",
    "parse_reference",
]
