"""A runtime that inherits nothing satisfies Runtime and runs real plugins for a Manager."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import Manager, PluginEvent, RestartPolicy, RuntimeStartError
from pluginkit.examples.localvolume import plugin_dir
from pluginkit.runtime import (
    ExitCallback,
    PluginExit,
    Runtime,
    RuntimeSpec,
    SupportsCleanup,
    SupportsPrepare,
)


class SubprocessRuntime:
    """Plain Popen per plugin, one waiter thread each: the six methods and nothing else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._on_exit: dict[str, ExitCallback | None] = {}
        self.exits: list[PluginExit] = []

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path)}
        env.update(entry.partition("=")[::2] for entry in spec.env)
        env["PLUGINKIT_SOCKET_DIR"] = str(spec.socket_dir)
        env["PLUGINKIT_SOCKET"] = spec.socket
        argv = [sys.executable, *spec.entrypoint[1:], *spec.args]  # "python3 -m ..."
        try:
            proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
        except OSError as exc:
            raise RuntimeStartError(f"cannot start {spec.name}: {exc}") from exc
        with self._lock:
            self._procs[spec.id] = proc
            self._on_exit[spec.id] = on_exit
        threading.Thread(target=self._wait, args=(spec.id, proc), daemon=True).start()

    def _wait(self, plugin_id: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            err = proc.stderr.read()
        code = proc.wait()
        with self._lock:
            if self._procs.get(plugin_id) is proc:
                del self._procs[plugin_id]
            on_exit = self._on_exit.get(plugin_id)
        exit_ = PluginExit(plugin_id, code, err.decode(errors="replace")[-2000:])
        self.exits.append(exit_)
        if on_exit is not None:
            on_exit(exit_)  # from the waiter thread, never inside a method

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        with self._lock:
            proc = self._procs.get(plugin_id)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def is_running(self, plugin_id: str) -> bool:
        with self._lock:
            proc = self._procs.get(plugin_id)
        return proc is not None and proc.poll() is None

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        return False  # nothing outlives this runtime

    def discard(self, plugin_id: str) -> None:
        self.stop(plugin_id)

    def close(self) -> None:
        with self._lock:
            self._on_exit = dict.fromkeys(self._on_exit)

    def kill(self, plugin_id: str) -> None:
        with self._lock:
            self._procs[plugin_id].kill()


@pytest.fixture
def runtime() -> Iterator[SubprocessRuntime]:
    rt = SubprocessRuntime()
    yield rt
    with rt._lock:
        procs = list(rt._procs.values())
    for proc in procs:
        proc.kill()
        proc.wait()


def test_it_is_a_runtime_without_the_optional_extensions(runtime: SubprocessRuntime) -> None:
    """isinstance(Runtime) holds structurally; SupportsPrepare/SupportsCleanup do not."""
    typed: Runtime = runtime  # and mypy accepts it
    assert isinstance(typed, Runtime)
    assert not isinstance(runtime, SupportsPrepare)
    assert not isinstance(runtime, SupportsCleanup)


def test_a_manager_runs_supervises_and_stops_real_plugins_on_it(
    runtime: SubprocessRuntime, short_tmp: Path
) -> None:
    """Enable, call, an outside kill restarted with exit and restart events, disable, shutdown."""
    events: list[PluginEvent] = []
    with Manager(
        short_tmp / "root",
        runtime=runtime,
        run_root=short_tmp / "run",
        legacy=None,
        on_event=events.append,
        restart_policy=RestartPolicy(initial_delay=0.01),
    ) as manager:
        plugin = manager.create("vol", plugin_dir())
        assert plugin.id is not None
        manager.set("vol", [f"LOCALVOLUME_ROOT={short_tmp}/volumes"])
        manager.enable("vol", timeout=20)
        client = manager.lookup_with_capability("vol", "VolumeDriver").client
        assert client.call("VolumeDriver.List") == {"Volumes": []}

        runtime.kill(plugin.id)
        deadline = time.monotonic() + 20
        while "restart" not in [e.action for e in events] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.action for e in events] == ["create", "set", "enable", "exit", "restart"]
        assert [(e.id, e.exit_code) for e in runtime.exits] == [(plugin.id, -signal.SIGKILL)]
        assert re.search(r"plugin server (\S+ )?listening on unix://", runtime.exits[0].stderr_tail)
        client = manager.lookup_with_capability("vol", "VolumeDriver").client
        assert client.call("VolumeDriver.List") == {"Volumes": []}

        manager.disable("vol")
        assert not runtime.is_running(plugin.id)
        assert [e.action for e in events][-1] == "disable"
        assert len(runtime.exits) == 2
