"""pluginkit: host out-of-process plugins the way the Docker engine does.

Plugins are separate processes (or containers) speaking Docker's plugin
protocol - HTTP+JSON over a unix socket or TCP - found by name and
capability. pluginkit drives plugins written for Docker, and plugins written
with :mod:`pluginkit.sdk` work with a real Docker engine.
"""

from __future__ import annotations

import logging

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
from ._events import PluginEvent
from ._health import HealthCheck
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
    "HealthCheck",
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
