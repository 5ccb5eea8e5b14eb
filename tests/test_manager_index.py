"""The lookup index is updated per change and always answers as a full rebuild would."""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _manager_helpers import Env

from pluginkit import ErrDisabled, ErrNotFound, Manager, PluginError
from pluginkit.runtime import RuntimeSpec
from pluginkit.testing import wait_running


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


def _expected(m: Manager, installed: list[str]) -> None:
    """Lookups agree with list(): enabled and running ones found, in install order."""
    plugins = {p.name: p for p in m.list()}
    running = [n for n in installed if n in plugins and plugins[n].enabled]
    assert [p.name for p in m.find_with_capability("VolumeDriver")] == running
    assert [p.name for p in m.find_with_capability("networkdriver")] == [
        n for n in running if n.startswith("net")
    ]
    for name in installed:
        short = name.removesuffix(":latest")
        if name not in plugins:
            with pytest.raises(ErrNotFound) as info:
                m.lookup_with_capability(short, "VolumeDriver")
            assert type(info.value) is ErrNotFound
        elif plugins[name].enabled:
            assert m.lookup_with_capability(short, "volumedriver") is plugins[name]
            assert m.lookup_with_capability(str(plugins[name].id), "VolumeDriver").name == name
        else:
            with pytest.raises(ErrDisabled):
                m.lookup_with_capability(short, "VolumeDriver")


def test_random_changes_keep_lookups_right(env: Env) -> None:
    """300 random creates, enables, disables, removes and crashes: after each one, every
    lookup and find answers from the plugins' current state, in install order."""
    rng = random.Random(8)
    m = env.manager()
    installed: list[str] = []
    counter = 0
    for _ in range(300):
        plugins = {p.name: p for p in m.list()}
        op = rng.choice(["create", "create", "enable", "enable", "disable", "remove", "crash"])
        if op == "create" or not plugins:
            counter += 1
            kind = rng.choice(["vol", "net"])
            types = ["docker.volumedriver/1.0"]
            if kind == "net":
                types.append("docker.networkdriver/1.0")
            name = f"{kind}{counter}"
            m.create(name, env.plugin_dir(name, types=tuple(types)))
            installed.append(f"{name}:latest")
        else:
            name = rng.choice(sorted(plugins))
            enabled = plugins[name].enabled
            if op == "enable" and not enabled:
                m.enable(name)
            elif op == "disable" and enabled:
                m.disable(name)
            elif op == "remove":
                m.remove(name, force=True)
            elif op == "crash" and enabled:
                env.runtime.crash(name)
                wait_running(m, name)
        _expected(m, installed)


def test_restore_rebuilds_the_same_index(env: Env) -> None:
    """A new manager on the same root finds the same plugins, in the same order."""
    m = env.manager()
    for i in range(20):
        m.create(f"p{i}", env.plugin_dir(f"p{i}"))
        if i % 3:
            m.enable(f"p{i}")
    before = [p.name for p in m.find_with_capability("VolumeDriver")]
    m.shutdown()
    again = env.manager()
    assert sorted(p.name for p in again.find_with_capability("VolumeDriver")) == sorted(before)
    for name in before:
        assert again.lookup_with_capability(name, "VolumeDriver").name == name


def test_shutdown_empties_the_index(env: Env) -> None:
    """After shutdown nothing is looked up, not even through the legacy fallback."""
    m = env.manager()
    m.create("p", env.plugin_dir("p"))
    m.enable("p")
    m.shutdown()
    with pytest.raises(PluginError, match=r"^the plugin manager is shut down$"):
        m.find_with_capability("VolumeDriver")
    with pytest.raises(PluginError, match=r"^the plugin manager is shut down$"):
        m.lookup_with_capability("p", "VolumeDriver")


class _ReadyRuntime:
    """A runtime whose start listens at once, in the calling thread (deterministic enables)."""

    def __init__(self) -> None:
        self.socks: dict[str, socket.socket] = {}

    def start(self, spec: RuntimeSpec, on_exit: object) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(spec.socket_path))
        sock.listen(8)
        self.socks[spec.id] = sock

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        sock = self.socks.pop(plugin_id, None)
        if sock is not None:
            sock.close()

    def is_running(self, plugin_id: str) -> bool:
        return plugin_id in self.socks

    def restore(self, spec: RuntimeSpec, on_exit: object) -> bool:
        return False

    def discard(self, plugin_id: str) -> None:
        self.stop(plugin_id)

    def close(self) -> None:
        for plugin_id in list(self.socks):
            self.stop(plugin_id)


def _calls_made(fn: Callable[[], object]) -> int:
    """How many Python and C function calls ``fn`` makes in this thread."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def _enable_cost(env: Env, installed: int) -> int:
    runtime = _ReadyRuntime()
    root = env.tmp / f"root{installed}"
    m = Manager(root, runtime=runtime, run_root=env.tmp / f"r{installed}", legacy=None)
    try:
        ctx = env.plugin_dir("p")
        for i in range(installed):
            m.create(f"p{i}", ctx)
            m.enable(f"p{i}")
        m.create("probe", ctx)
        m.enable("probe")  # warm every cache once
        m.disable("probe")
        return _calls_made(lambda: m.enable("probe"))
    finally:
        m.shutdown()


def test_enable_work_does_not_grow_with_the_plugins_running(env: Env) -> None:
    """One enable makes the same function calls with 5 or 300 plugins running
    (the index used to be rebuilt from every plugin on each change)."""
    small = _enable_cost(env, 5)
    large = _enable_cost(env, 300)
    assert abs(large - small) <= 10, (small, large)


def test_concurrent_changes_and_lookups(env: Env) -> None:
    """Threads enabling and disabling while others look up: lookups only ever return a
    plugin or raise ErrDisabled, and the index ends as the plugins' state says."""
    m = env.manager()
    names = [f"c{i}" for i in range(12)]
    for name in names:
        m.create(name, env.plugin_dir(name))
    stop = threading.Event()
    problems: list[BaseException] = []

    def toggle(mine: list[str]) -> None:
        rng = random.Random(mine[0])
        try:
            for _ in range(40):
                name = rng.choice(mine)
                if m.get(name).enabled:
                    m.disable(name)
                else:
                    m.enable(name)
        except BaseException as exc:
            problems.append(exc)

    def look() -> None:
        rng = random.Random(1)
        try:
            while not stop.is_set():
                name = rng.choice(names)
                with contextlib.suppress(ErrDisabled):
                    assert m.lookup_with_capability(name, "VolumeDriver").name == f"{name}:latest"
                for plugin in m.find_with_capability("VolumeDriver"):
                    assert plugin.name.startswith("c")
        except BaseException as exc:
            problems.append(exc)

    togglers = [threading.Thread(target=toggle, args=(names[i::3],)) for i in range(3)]
    lookers = [threading.Thread(target=look) for _ in range(3)]
    for thread in togglers + lookers:
        thread.start()
    for thread in togglers:
        thread.join(60)
    stop.set()
    for thread in lookers:
        thread.join(60)
    assert problems == []
    _expected(m, [f"{name}:latest" for name in names])


def test_get_of_a_known_spelling_parses_nothing(env: Env) -> None:
    """get() by stored name, short name or id answers from the index: the reference
    parser's cache (4,096 names) is not swept, so a sweep over more names stays cheap.
    Other spellings are parsed and resolve to the same plugin."""
    from pluginkit._reference import _parse

    m = env.manager()
    plugin = m.create("vieux/sshfs", env.plugin_dir("sshfs"))
    m.create("other", env.plugin_dir("other"))
    _parse.cache_clear()
    assert [m.get(ref) for ref in ("vieux/sshfs:latest", "vieux/sshfs", str(plugin.id))] == [
        plugin
    ] * 3
    assert _parse.cache_info().hits + _parse.cache_info().misses == 0
    assert m.get("docker.io/vieux/sshfs") is plugin
    assert m.get(str(plugin.id)[:12]) is plugin
    assert _parse.cache_info().misses == 2  # the long spelling, and the id prefix tried as a name
    m.remove("vieux/sshfs")
    for ref in ("vieux/sshfs", str(plugin.id)):
        with pytest.raises(ErrNotFound):
            m.get(ref)
