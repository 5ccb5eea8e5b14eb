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
                threading.Timer(
                    0.01, on_exit, (PluginExit(spec.id, code, stderr),)
                ).start()
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
