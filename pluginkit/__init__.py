"""pluginkit: host out-of-process plugins the way the Docker engine does.

Plugins are separate processes (or containers) speaking Docker's plugin
protocol - HTTP+JSON over a unix socket or TCP - found by name and
capability. pluginkit drives plugins written for Docker, and plugins written
with :mod:`pluginkit.sdk` work with a real Docker engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._async_lookup import afind_with_capability, alookup_with_capability
    from ._async_manager import AsyncManager
    from ._client import Client, TLSConfig
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
    from ._errors import (
        ErrDisabled,
        ErrInadequateCapability,
        ErrNotFound,
        InstallLimitError,
        InvalidArchiveError,
        InvalidConfigError,
        InvalidReferenceError,
        PluginCallError,
        PluginConnectionError,
        PluginDisabledError,
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
    from ._events import PluginEvent
    from ._health import HealthCheck
    from ._install_limits import InstallLimits
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

# Public names are imported on first use (PEP 562): `import pluginkit` - and
# so every `pluginkit` command, whose path to a daemon needs none of them -
# stays cheap. Type checkers see the eager imports above. A new public name
# goes into both.
_LAZY: dict[str, str] = {
    "afind_with_capability": "._async_lookup",
    "alookup_with_capability": "._async_lookup",
    "AsyncClient": "._async_client",
    "AsyncManager": "._async_manager",
    "Client": "._client",
    "TLSConfig": "._client",
    "CapabilityID": "._config",
    "Device": "._config",
    "EnvVar": "._config",
    "Mount": "._config",
    "PluginConfig": "._config",
    "Privilege": "._config",
    "Settings": "._config",
    "apply_set": "._config",
    "compute_privileges": "._config",
    "dump_config": "._config",
    "initial_settings": "._config",
    "load_config": "._config",
    "parse_config": "._config",
    "ErrDisabled": "._errors",
    "ErrInadequateCapability": "._errors",
    "ErrNotFound": "._errors",
    "InstallLimitError": "._errors",
    "InvalidArchiveError": "._errors",
    "InvalidConfigError": "._errors",
    "InvalidReferenceError": "._errors",
    "PluginCallError": "._errors",
    "PluginConnectionError": "._errors",
    "PluginDisabledError": "._errors",
    "PluginEnabledError": "._errors",
    "PluginError": "._errors",
    "PluginExistsError": "._errors",
    "PluginInUseError": "._errors",
    "PluginProtocolError": "._errors",
    "PluginTimeoutError": "._errors",
    "PrivilegesNotGrantedError": "._errors",
    "RootInUseError": "._errors",
    "RuntimeStartError": "._errors",
    "PluginEvent": "._events",
    "HealthCheck": "._health",
    "InstallLimits": "._install_limits",
    "LegacyRegistry": "._legacy",
    "FindWithCapability": "._lookup",
    "LookupWithCapability": "._lookup",
    "PluginGetter": "._lookup",
    "find_with_capability": "._lookup",
    "get_default_manager": "._lookup",
    "lookup_with_capability": "._lookup",
    "set_default_manager": "._lookup",
    "Manager": "._manager",
    "Plugin": "._plugin",
    "Reference": "._reference",
    "normalize_name": "._reference",
    "parse_reference": "._reference",
    "RestartPolicy": "._restart",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__version__ = "0.1.0.dev0"

# The "pluginkit" logger's NullHandler is installed by pluginkit._log, which
# every module that logs imports: `import pluginkit` does not import logging.

__all__ = [
    # errors
    "ErrDisabled",
    "ErrInadequateCapability",
    "ErrNotFound",
    "InstallLimitError",
    "InvalidArchiveError",
    "InvalidConfigError",
    "InvalidReferenceError",
    "PluginCallError",
    "PluginConnectionError",
    "PluginDisabledError",
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
    "AsyncManager",
    "afind_with_capability",
    "alookup_with_capability",
    "PluginEvent",
    "HealthCheck",
    "RestartPolicy",
    "InstallLimits",
    "apply_set",
    "compute_privileges",
    "dump_config",
    "initial_settings",
    "load_config",
    "normalize_name",
    "parse_config",
    "parse_reference",
]
