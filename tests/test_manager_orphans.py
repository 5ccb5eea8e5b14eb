"""A manager killed at any instant leaves no plugin process that nobody stops (ProcessRuntime)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pluginkit import Manager, RootInUseError
from pluginkit.runtime.process import ProcessRuntime
from tests._manager_helpers import write_plugin_dir
from tests.test_runtime_process import PLUGIN, kill_all, listening, make_spec, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


def plugin_processes(plugin_id: str) -> list[int]:
    """Pids of the live processes started for ``plugin_id`` (found by their environment)."""
    marker = f"PLUGINKIT_PLUGIN_ID={plugin_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if marker in environ and stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def plugin_dir(base: Path) -> Path:
    ctx = write_plugin_dir(base / "ctx", entrypoint=("/bin/plugin",))
    script = ctx / "rootfs" / "bin" / "plugin"
    script.parent.mkdir()
    script.write_text(PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    return ctx


def manager(base: Path) -> Manager:
    runtime = ProcessRuntime(grace=5)
    return Manager(base / "root", runtime=runtime, run_root=base / "run", legacy=None)


def manager_after_kill(base: Path) -> Manager:
    """A manager on the root of a manager just killed.

    A child the killed manager was forking at that instant holds the root's
    lock (close-on-exec) until it has executed the plugin: a few ms.
    """
    deadline = time.monotonic() + 10
    while True:
        try:
            return manager(base)
        except RootInUseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_start_stops_a_copy_left_by_a_killed_manager(short_tmp: Path) -> None:
    """ProcessRuntime.start kills a verified leftover of the same plugin: never two copies."""
    spec = make_spec(short_tmp)
    first = ProcessRuntime()
    first.start(spec, lambda exit_: None)
    wait_until(lambda: listening(spec), "the first copy")
    (old,) = plugin_processes(spec.id)
    first.close()  # as if its manager died: the plugin keeps running
    second = ProcessRuntime()
    try:
        second.start(spec, lambda exit_: None)
        wait_until(lambda: old not in plugin_processes(spec.id), "the old copy's end")
        wait_until(lambda: len(plugin_processes(spec.id)) == 1, "the new copy")
    finally:
        kill_all(second)
    assert plugin_processes(spec.id) == []


def test_new_manager_stops_a_disabled_plugin_left_running(short_tmp: Path) -> None:
    """Killed inside enable() (started, record still disabled): the next manager stops it."""
    m1 = manager(short_tmp)
    plugin = m1.create("demo", plugin_dir(short_tmp))
    assert plugin.id is not None
    entry = m1._entries[plugin.id]
    # What enable() does before it records the plugin enabled.
    m1.runtime.start(m1._spec(entry), lambda exit_: None)
    wait_until(lambda: len(plugin_processes(plugin.id)) == 1, "the plugin")
    m1.shutdown()  # not running as far as m1 knows: left behind, like a kill
    assert len(plugin_processes(plugin.id)) == 1

    m2 = manager(short_tmp)
    try:
        assert plugin_processes(plugin.id) == []
        assert not m2.get("demo").enabled
        m2.enable("demo")
        assert len(plugin_processes(plugin.id)) == 1
    finally:
        m2.shutdown()
    assert plugin_processes(plugin.id) == []


DRIVER = """\
import sys
from pathlib import Path
from pluginkit import Manager
from pluginkit.runtime.process import ProcessRuntime

base = Path(sys.argv[1])
m = Manager(base / "root", runtime=ProcessRuntime(grace=5), run_root=base / "run", legacy=None)
print("ready", flush=True)
while True:
    if m.get("demo").enabled:
        m.disable("demo")
    else:
        m.enable("demo")
"""


@pytest.mark.slow
def test_no_orphans_after_30_kill_rounds(short_tmp: Path) -> None:
    """30 kill -9 rounds of a manager looping enable/disable: no orphan, never two copies."""
    rng = random.Random(1234)
    m = manager(short_tmp)
    plugin = m.create("demo", plugin_dir(short_tmp))
    plugin_id = plugin.id
    assert plugin_id is not None
    m.shutdown()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = time.monotonic()
    try:
        for _ in range(30):
            driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER, str(short_tmp)],
                env=env,
                stdout=subprocess.PIPE,
            )
            assert driver.stdout is not None
            assert driver.stdout.readline() == b"ready\n"
            driver.stdout.close()
            time.sleep(rng.uniform(0.0, 0.5))
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            check = manager_after_kill(short_tmp)
            try:
                running = plugin_processes(plugin_id)
                if check.get("demo").enabled:
                    assert len(running) == 1
                else:
                    assert running == []
                    check.enable("demo")
                    assert len(plugin_processes(plugin_id)) == 1
            finally:
                check.shutdown()
            assert plugin_processes(plugin_id) == []
            assert time.monotonic() - started < 300
    finally:
        for pid in plugin_processes(plugin_id):
            os.kill(pid, signal.SIGKILL)
