"""Helpers for the manager tests: plugin directories, a stand-in legacy registry, an Env."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluginkit.testing import FakeRuntime


def write_plugin_dir(
    path: Path,
    *,
    types: tuple[str, ...] = ("docker.volumedriver/1.0",),
    socket_name: str = "p.sock",
    entrypoint: tuple[str, ...] = ("/plugin",),
    **extra: Any,
) -> Path:
    """Write a plugin directory (config.json + rootfs/) and return it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "rootfs").mkdir(exist_ok=True)
    (path / "rootfs" / "plugin").write_text("#!/bin/sh\n")
    config: dict[str, Any] = {
        "Description": "test plugin",
        "Documentation": "https://example.com",
        "Interface": {"Types": list(types), "Socket": socket_name},
        "Entrypoint": list(entrypoint),
        "WorkDir": "",
        "Network": {"Type": ""},
        "Linux": {"Capabilities": [], "AllowAllDevices": False, "Devices": []},
        "PropagatedMount": "",
        "IpcHost": False,
        "PidHost": False,
        "Mounts": [],
        "Env": [],
        "Args": {"Name": "", "Description": "", "Settable": [], "Value": []},
    }
    config.update(extra)
    (path / "config.json").write_text(json.dumps(config))
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


class Legacy:
    """A stand-in legacy registry: a dict of plugins, recording what it was asked."""

    def __init__(self, plugins: dict[str, Any] | None = None) -> None:
        self.plugins = plugins or {}
        self.asked: list[tuple[str, str]] = []
        self.handlers: list[tuple[str, Any]] = []

    def get(self, name: str, capability: str) -> Any:
        from pluginkit import ErrNotFound

        self.asked.append((name, capability))
        if name not in self.plugins:
            raise ErrNotFound(name)
        return self.plugins[name]

    def get_all(self, capability: str) -> list[Any]:
        return [p for p in self.plugins.values() if p.implements(capability)]

    def handle(self, capability: str, callback: Any) -> None:
        self.handlers.append((capability, callback))


class Env:
    """A temp root, a runtime, recorded events, and managers closed at the end."""

    def __init__(self, tmp: Path, runtime: Any = None) -> None:
        self.tmp = tmp
        self.runtime = runtime if runtime is not None else FakeRuntime()
        self.events: list[Any] = []
        self.managers: list[Any] = []
        self.root = tmp / "root"
        self.run_root = tmp / "run"

    def manager(self, **kwargs: Any) -> Any:
        from pluginkit import Manager

        kwargs.setdefault("runtime", self.runtime)
        kwargs.setdefault("run_root", self.run_root)
        kwargs.setdefault("legacy", None)
        kwargs.setdefault("on_event", self.events.append)
        m = Manager(kwargs.pop("root", self.root), **kwargs)
        self.managers.append(m)
        return m

    def plugin_dir(self, name: str = "ctx", **kwargs: Any) -> Path:
        return write_plugin_dir(self.tmp / "src" / name, **kwargs)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]

    def close(self) -> None:
        # Newest first: managers may share the runtime, and the first
        # shutdown closes it, so a later one could no longer stop its plugins.
        for m in reversed(self.managers):
            m.shutdown()
        shutdown = getattr(self.runtime, "shutdown", None)
        if shutdown is not None:
            shutdown()
