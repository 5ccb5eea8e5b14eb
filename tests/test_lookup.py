"""Module lookups: find_with_capability / lookup_with_capability and the default manager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _client_helpers import HTTPPluginServer, activate
from _manager_helpers import write_plugin_dir

import pluginkit
from pluginkit import (
    Client,
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    FindWithCapability,
    LegacyRegistry,
    LookupWithCapability,
    Manager,
    Plugin,
    _lookup,
    find_with_capability,
    get_default_manager,
    lookup_with_capability,
    set_default_manager,
)
from pluginkit.testing import FakeRuntime


class RecordingManager:
    """A minimal manager: answers from a dict and records what it was asked."""

    def __init__(self, plugins: dict[str, Plugin]) -> None:
        self.plugins = plugins
        self.asked: list[tuple[str, ...]] = []

    def find_with_capability(self, capability: str) -> list[Plugin]:
        self.asked.append(("find", capability))
        return [p for p in self.plugins.values() if p.implements(capability)]

    def lookup_with_capability(self, name: str, capability: str) -> Plugin:
        self.asked.append(("lookup", name, capability))
        if name not in self.plugins:
            raise ErrNotFound(name)
        return self.plugins[name]


@pytest.fixture
def managed_plugin() -> Iterator[Plugin]:
    client = Client("unix:///nonexistent/m.sock")
    yield Plugin(name="m:latest", addr=client.addr, client=client, capabilities=["VolumeDriver"])
    client.close()


@pytest.fixture
def no_default_manager() -> Iterator[None]:
    previous = get_default_manager()
    set_default_manager(None)
    yield
    set_default_manager(previous)


@pytest.fixture
def legacy(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the module's default legacy registry at a temporary socket dir."""
    registry = LegacyRegistry([short_tmp], [])
    monkeypatch.setattr(_lookup, "_default_registry", registry)
    yield short_tmp
    registry.close()


def test_aliases_are_the_functions():
    """Docker's spellings are the same functions."""
    assert FindWithCapability is find_with_capability
    assert LookupWithCapability is lookup_with_capability


def test_explicit_manager_is_asked(managed_plugin: Plugin, no_default_manager: None):
    """With manager=..., both lookups go to that manager."""
    manager = RecordingManager({"m:latest": managed_plugin})
    assert find_with_capability("VolumeDriver", manager=manager) == [managed_plugin]
    assert lookup_with_capability("m:latest", "VolumeDriver", manager=manager) is managed_plugin
    assert manager.asked == [("find", "VolumeDriver"), ("lookup", "m:latest", "VolumeDriver")]


def test_default_manager_is_used(managed_plugin: Plugin, no_default_manager: None):
    """set_default_manager() makes lookups without manager= use it."""
    manager = RecordingManager({"m:latest": managed_plugin})
    set_default_manager(manager)
    assert get_default_manager() is manager
    assert lookup_with_capability("m:latest", "volumedriver") is managed_plugin
    with pytest.raises(ErrNotFound, match=r'^plugin "other" not found$'):
        lookup_with_capability("other", "volumedriver")
    assert manager.asked[-1] == ("lookup", "other", "volumedriver")


def test_explicit_manager_beats_default(managed_plugin: Plugin, no_default_manager: None):
    """manager= wins over the default manager."""
    default, explicit = RecordingManager({}), RecordingManager({"m:latest": managed_plugin})
    set_default_manager(default)
    assert find_with_capability("VolumeDriver", manager=explicit) == [managed_plugin]
    assert default.asked == []


def test_set_default_manager_checks_the_type(no_default_manager: None):
    """An object without the lookup methods is refused with a TypeError."""
    with pytest.raises(TypeError, match=r"^object has no find_with_capability"):
        set_default_manager(object())  # type: ignore[arg-type]
    assert get_default_manager() is None


def test_without_manager_the_legacy_registry_answers(legacy: Path, no_default_manager: None):
    """With no manager at all, lookups use the legacy registry."""
    with HTTPPluginServer(legacy / "vol.sock", {"Plugin.Activate": activate("VolumeDriver")}):
        plugin = lookup_with_capability("vol", "VolumeDriver")
        assert (plugin.name, plugin.is_legacy) == ("vol", True)
        assert find_with_capability("VolumeDriver") == [plugin]
        assert find_with_capability("NetworkDriver") == []
    with pytest.raises(ErrNotFound, match=r'^plugin "nope" not found$'):
        lookup_with_capability("nope", "VolumeDriver")


def test_default_registry_uses_dockers_directories(monkeypatch: pytest.MonkeyPatch):
    """The module's own registry looks where Docker looks."""
    monkeypatch.setattr(_lookup, "_default_registry", None)
    registry = _lookup._legacy_registry()
    assert registry.socket_dirs == ("/run/docker/plugins",)
    assert registry.spec_dirs == ("/etc/docker/plugins", "/usr/lib/docker/plugins")
    assert _lookup._legacy_registry() is registry


def test_public_names_exported():
    """The issue-2 names are part of pluginkit's public API."""
    for name in (
        "Client",
        "TLSConfig",
        "LegacyRegistry",
        "find_with_capability",
        "lookup_with_capability",
        "FindWithCapability",
        "LookupWithCapability",
        "set_default_manager",
        "get_default_manager",
        "PluginGetter",
    ):
        assert name in pluginkit.__all__
        assert hasattr(pluginkit, name)


@pytest.fixture
def real_manager(short_tmp: Path) -> Iterator[tuple[Manager, Path]]:
    """A real Manager on FakeRuntime: vol enabled, off disabled, legacy dir short_tmp/leg."""
    legacy_dir = short_tmp / "leg"
    legacy_dir.mkdir()
    fake = FakeRuntime()
    registry = LegacyRegistry([legacy_dir], [], activation_timeout=5)
    manager = Manager(short_tmp / "root", runtime=fake, run_root=short_tmp / "run", legacy=registry)
    try:
        for name in ("vol", "off"):
            manager.create(name, write_plugin_dir(short_tmp / "src" / name))
        manager.enable("vol")
        yield manager, legacy_dir
    finally:
        manager.shutdown()
        fake.shutdown()
        registry.close()


def test_module_functions_use_the_default_manager_with_legacy_fallback(
    real_manager: tuple[Manager, Path], no_default_manager: None
):
    """A real default Manager answers: managed, then legacy; no fallback past a disabled one."""
    manager, legacy_dir = real_manager
    set_default_manager(manager)
    with (
        HTTPPluginServer(legacy_dir / "leg.sock", {"Plugin.Activate": activate("VolumeDriver")}),
        HTTPPluginServer(legacy_dir / "off.sock", {"Plugin.Activate": activate("VolumeDriver")}),
    ):
        found = find_with_capability("volumedriver")
        assert [(p.name, p.is_legacy) for p in found] == [
            ("vol:latest", False),
            ("leg", True),
            ("off", True),
        ]
        managed = lookup_with_capability("vol", "VolumeDriver")
        assert (managed.name, managed.is_legacy) == ("vol:latest", False)
        assert managed is manager.get("vol")
        legacy = lookup_with_capability("leg", "VolumeDriver")
        assert (legacy.name, legacy.is_legacy) == ("leg", True)
        assert legacy is found[1]
        with pytest.raises(ErrDisabled) as disabled:
            lookup_with_capability("off", "VolumeDriver")
        assert str(disabled.value) == 'plugin "off" found but disabled'
        with pytest.raises(ErrInadequateCapability) as inadequate:
            lookup_with_capability("vol", "NetworkDriver")
        assert (
            str(inadequate.value) == 'plugin "vol" found, but not with "networkdriver" capability'
        )
        with pytest.raises(ErrNotFound) as missing:
            lookup_with_capability("nope", "VolumeDriver")
        assert str(missing.value) == 'plugin "nope" not found'
        # An explicit manager=None still means "the default manager".
        assert lookup_with_capability("leg", "VolumeDriver", manager=None) is legacy
