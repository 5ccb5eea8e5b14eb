"""The public surface is pinned: it changes only on purpose (and in the CHANGELOG)."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

PUBLIC = {
    "pluginkit": [
        "AsyncClient",
        "AsyncManager",
        "CapabilityID",
        "Client",
        "Device",
        "EnvVar",
        "ErrDisabled",
        "ErrInadequateCapability",
        "ErrNotFound",
        "FindWithCapability",
        "HealthCheck",
        "InstallLimitError",
        "InstallLimits",
        "InvalidArchiveError",
        "InvalidConfigError",
        "InvalidReferenceError",
        "LegacyRegistry",
        "LookupWithCapability",
        "Manager",
        "Mount",
        "Plugin",
        "PluginCallError",
        "PluginConfig",
        "PluginConnectionError",
        "PluginDisabledError",
        "PluginEnabledError",
        "PluginError",
        "PluginEvent",
        "PluginExistsError",
        "PluginGetter",
        "PluginInUseError",
        "PluginProtocolError",
        "PluginTimeoutError",
        "Privilege",
        "PrivilegesNotGrantedError",
        "Reference",
        "RestartPolicy",
        "RootInUseError",
        "RuntimeStartError",
        "Settings",
        "TLSConfig",
        "afind_with_capability",
        "alookup_with_capability",
        "apply_set",
        "compute_privileges",
        "dump_config",
        "find_with_capability",
        "get_default_manager",
        "initial_settings",
        "load_config",
        "lookup_with_capability",
        "normalize_name",
        "parse_config",
        "parse_reference",
        "set_default_manager",
    ],
    "pluginkit.clients": [
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
    ],
    "pluginkit.daemon": ["Daemon", "DaemonTLS", "sd_notify"],
    "pluginkit.distribution": [
        "BlobError",
        "LayerError",
        "NotAPluginError",
        "Progress",
        "ProgressEvent",
        "RegistryAuthError",
        "RegistryError",
        "RegistryNotFoundError",
        "RegistryReference",
        "RegistryUnreachableError",
        "build_plugin",
        "parse_registry_reference",
    ],
    "pluginkit.fleet": [
        "AGENT_SERVICE",
        "Agent",
        "AgentSpec",
        "Fleet",
        "FleetPlugin",
        "FleetSpec",
        "FleetSpecError",
        "NodeStatus",
        "load_spec",
        "parse_spec",
    ],
    "pluginkit.podman": ["DEFAULT_DIR", "DROP_IN_NAME", "podman_name", "register", "render"],
    "pluginkit.runtime": [
        "DockerRuntime",
        "ExitCallback",
        "OutputStats",
        "PluginExit",
        "ProcessRuntime",
        "Runtime",
        "RuntimeDevice",
        "RuntimeMount",
        "RuntimeSpec",
        "SupportsCleanup",
        "SupportsPrepare",
    ],
    "pluginkit.pytest_plugin": [
        "Serve",
        "pluginkit_manager",
        "pluginkit_runtime",
        "pluginkit_serve",
    ],
    "pluginkit.testing": [
        "FakeCall",
        "FakeRuntime",
        "Handler",
        "serve_plugin",
        "wait_running",
        "write_plugin_dir",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_pinned(module_name: str) -> None:
    """Each public module's __all__ is exactly the pinned list."""
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(PUBLIC[module_name])


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(module, name) for module, names in sorted(PUBLIC.items()) for name in names],
)
def test_every_public_name_resolves_and_is_documented(module_name: str, name: str) -> None:
    """Every name in __all__ exists; public classes and functions carry a docstring."""
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    # A type alias such as Callable[[X], None] cannot carry a docstring (and
    # Python 3.10's inspect.isclass says True for it).
    if typing.get_origin(obj) is not None:
        return
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert (obj.__doc__ or "").strip(), f"{module_name}.{name} has no docstring"


def test_aliases_are_the_same_functions() -> None:
    """The Go-style names are aliases, not copies."""
    import pluginkit

    assert pluginkit.FindWithCapability is pluginkit.find_with_capability
    assert pluginkit.LookupWithCapability is pluginkit.lookup_with_capability


def test_importing_pluginkit_does_not_import_docker() -> None:
    """`import pluginkit` stays light: the Docker SDK is imported only by DockerRuntime."""
    import subprocess
    import sys

    code = "import sys, pluginkit, pluginkit.runtime; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(module, name) for module, names in sorted(PUBLIC.items()) for name in names],
)
def test_public_name_names_its_public_module(module_name: str, name: str) -> None:
    """A class or function re-exported from a private module says the public one."""
    obj = getattr(importlib.import_module(module_name), name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return
    assert not any(part.startswith("_") for part in obj.__module__.split(".")), obj.__module__
    assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj


def test_plugin_constructor_has_no_internals() -> None:
    """Plugin(...) takes what a lookup result is made of, not the manager's machinery."""
    from pluginkit import Plugin

    assert list(inspect.signature(Plugin).parameters) == [
        "name",
        "addr",
        "client",
        "capabilities",
        "id",
        "is_legacy",
        "enabled",
        "config",
        "settings",
        "refcount",
        "plugin_reference",
    ]


def test_plugin_config_and_settings_are_typed() -> None:
    """Plugin.config and Plugin.settings are PluginConfig / Settings (or None), not Any."""
    import pluginkit

    namespace = {**vars(pluginkit), "threading": __import__("threading")}
    namespace["Callable"] = typing.Callable
    hints = typing.get_type_hints(pluginkit.Plugin, namespace)
    assert hints["config"] == typing.Optional[pluginkit.PluginConfig]  # noqa: UP045
    assert hints["settings"] == typing.Optional[pluginkit.Settings]  # noqa: UP045
