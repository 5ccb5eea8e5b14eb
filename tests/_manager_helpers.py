"""Helpers for the manager tests: plugin directories and a small in-test runtime."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluginkit import RuntimeStartError
from pluginkit.runtime import PluginExit, RuntimeSpec

ExitCallback = Callable[[PluginExit], None]


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


class _Served:
    def __init__(self, spec: RuntimeSpec, on_exit: ExitCallback, delay: float) -> None:
        self.spec = spec
        self.on_exit = on_exit
        self.stopped = threading.Event()
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, args=(delay,), daemon=True)
        self.thread.start()

    def _serve(self, delay: float) -> None:
        if self.stopped.wait(delay):
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.fspath(self.spec.socket_path)
        if os.path.exists(path):
            os.unlink(path)
        sock.bind(path)
        sock.listen(64)
        sock.settimeout(0.05)
        self.sock = sock
        while not self.stopped.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()
        sock.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        if self.spec.socket_path.exists():
            self.spec.socket_path.unlink()


class MiniRuntime:
    """A runtime serving each plugin as a thread on a real unix socket.

    ``fail[name] = (code, stderr)`` makes the next starts of that plugin exit
    before listening; ``never_listen`` holds names that never listen.
    """

    def __init__(self, *, start_delay: float = 0.0) -> None:
        self.start_delay = start_delay
        self.lock = threading.Lock()
        self.served: dict[str, _Served] = {}
        self.starts: list[str] = []
        self.stops: list[str] = []
        self.fail: dict[str, tuple[int, str]] = {}
        self.never_listen: set[str] = set()
        self.closed = 0

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        with self.lock:
            if spec.id in self.served:
                raise RuntimeStartError(f"plugin {spec.id} is already running")
            self.starts.append(spec.name)
            failure = self.fail.get(spec.name)
            if failure is not None:
                code, stderr = failure
                threading.Timer(0.01, on_exit, (PluginExit(spec.id, code, stderr),)).start()
                return
            delay = 3600.0 if spec.name in self.never_listen else self.start_delay
            self.served[spec.id] = _Served(spec, on_exit, delay)

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        with self.lock:
            served = self.served.pop(plugin_id, None)
            self.stops.append(plugin_id)
        if served is not None:
            served.close()
            served.on_exit(PluginExit(plugin_id, -15, ""))

    def crash(self, name: str, exit_code: int = 1, stderr: str = "boom") -> None:
        with self.lock:
            found = [s for s in self.served.values() if s.spec.name == name]
            for s in found:
                del self.served[s.spec.id]
        for s in found:
            s.close()
            s.on_exit(PluginExit(s.spec.id, exit_code, stderr))

    def is_running(self, plugin_id: str) -> bool:
        with self.lock:
            return plugin_id in self.served

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        with self.lock:
            served = self.served.get(spec.id)
            if served is None:
                return False
            served.on_exit = on_exit
            return True

    def discard(self, plugin_id: str) -> None:
        pass

    def close(self) -> None:
        self.closed += 1

    def stop_all(self) -> None:
        for plugin_id in list(self.served):
            self.stop(plugin_id)


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
        self.runtime = runtime if runtime is not None else MiniRuntime()
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
        for m in self.managers:
            m.shutdown()
        stop_all = getattr(self.runtime, "stop_all", None)
        if stop_all is not None:
            stop_all()
