"""Manager: readiness, failed enables, and thread safety."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import Env, wait_for

from pluginkit import (
    ErrDisabled,
    ErrNotFound,
    Manager,
    PluginError,
    PluginTimeoutError,
    RuntimeStartError,
)
from pluginkit.testing import FakeRuntime

SETTABLE_ENV = [{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}]


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


def _record(env: Env, plugin_id: str | None) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (env.root / "plugins" / str(plugin_id) / "plugin.json").read_text()
    )
    return data


def test_enable_waits_for_a_slow_socket(short_tmp: Path) -> None:
    """enable() returns once a plugin that listens late accepts connections."""
    env = Env(short_tmp, FakeRuntime(start_delay=0.2))
    try:
        m = env.manager()
        p = m.create("slow", env.plugin_dir())
        m.enable("slow", timeout=10)
        assert m.lookup_with_capability("slow", "volumedriver") is p
        assert _record(env, p.id)["Enabled"] is True
    finally:
        env.close()


def test_a_plugin_that_exits_while_starting_fails_enable_at_once(env: Env) -> None:
    """An exit before the socket is ready fails enable with the exit code and stderr tail."""
    m = env.manager()
    p = m.create("bad", env.plugin_dir(Env=SETTABLE_ENV))
    m.set("bad", ["DEBUG=1"])
    env.runtime.exit_on_start("bad", 3, "line 1\nfatal: no config\n")
    with pytest.raises(RuntimeStartError) as info:
        m.enable("bad", timeout=30)
    assert str(info.value) == (
        "plugin bad:latest exited with code 3 before it was ready; last stderr lines:\n"
        "line 1\nfatal: no config"
    )
    assert info.value.exit_code == 3
    assert info.value.stderr_tail == "line 1\nfatal: no config"
    assert p.enabled is False
    assert _record(env, p.id)["Enabled"] is False
    assert m.inspect("bad")["Settings"]["Env"] == ["DEBUG=1"]
    assert "enable" not in env.actions()


def test_a_failed_enable_can_be_retried(env: Env) -> None:
    """After a failed enable the plugin is disabled and a later enable works."""
    m = env.manager()
    m.create("bad", env.plugin_dir())
    env.runtime.exit_on_start("bad", 1)
    with pytest.raises(RuntimeStartError, match=r"exited with code 1 before it was ready$"):
        m.enable("bad")
    m.enable("bad")
    assert m.get("bad").enabled is True


def test_a_plugin_that_never_listens_times_out(env: Env) -> None:
    """A plugin whose socket never appears fails enable after the timeout and is stopped."""
    m = env.manager()
    p = m.create("mute", env.plugin_dir())
    assert p.id is not None
    env.runtime.set_start_delay("mute", 3600)
    with pytest.raises(
        PluginTimeoutError, match=r"^plugin mute:latest did not listen on .*p\.sock"
    ):
        m.enable("mute", timeout=0.2)
    assert not env.runtime.is_running(p.id)
    assert p.enabled is False
    assert _record(env, p.id)["Enabled"] is False
    with pytest.raises(ErrDisabled):
        m.lookup_with_capability("mute", "volumedriver")


def test_remove_force_during_a_slow_enable(env: Env) -> None:
    """A forced remove while enable is waiting makes enable fail at once and removes the plugin."""
    m = env.manager()
    p = m.create("mute", env.plugin_dir())
    env.runtime.set_start_delay("mute", 3600)
    errors: list[BaseException] = []

    def enable() -> None:
        try:
            m.enable("mute", timeout=60)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=enable)
    t.start()
    while not env.runtime.started_count("mute"):
        threading.Event().wait(0.001)
    m.remove("mute", force=True)
    t.join(10)
    assert not t.is_alive()
    assert [str(e) for e in errors] == ["plugin mute:latest was stopped while it was starting"]
    assert m.list() == []
    assert not (env.root / "plugins" / str(p.id)).exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["lookup", "use"])
def test_lookups_race_enable_and_disable(env: Env, how: str) -> None:
    """8 threads looking up (or using) while another toggles the plugin see it or ErrDisabled."""
    m: Manager = env.manager()
    p = m.create("foo", env.plugin_dir())
    stop = threading.Event()
    unexpected: list[BaseException] = []
    counts = {"found": 0, "disabled": 0}
    lock = threading.Lock()

    def look_once() -> None:
        if how == "use":
            with m.use("foo", "volumedriver") as got:
                assert got is p
                assert p.refcount >= 1
            return
        assert m.lookup_with_capability("foo:latest", "VolumeDriver") is p
        assert m.get("foo") is p
        assert m.find_with_capability("volumedriver") in ([], [p])

    def look() -> None:
        found = disabled = 0
        while not stop.is_set():
            try:
                look_once()
                found += 1
            except ErrDisabled:
                disabled += 1
            except BaseException as exc:
                unexpected.append(exc)
                return
            time.sleep(0)  # let the toggling thread have the GIL now and then
        with lock:
            counts["found"] += found
            counts["disabled"] += disabled

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            m.enable("foo")
            m.disable("foo", force=how == "use")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert unexpected == []
    assert counts["disabled"] > 0
    assert p.refcount == 0
    assert env.actions() == ["create"] + ["enable", "disable"] * 20


def test_operations_on_many_plugins_from_many_threads(env: Env) -> None:
    """Concurrent create/enable/disable/remove on different plugins all succeed."""
    m: Manager = env.manager()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            name = f"p{i}"
            m.create(name, env.plugin_dir(name))
            for _ in range(3):
                m.enable(name)
                m.lookup_with_capability(name, "volumedriver")
                m.disable(name)
            m.remove(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert m.list() == []


def test_concurrent_creates_of_one_name_give_one_plugin(env: Env) -> None:
    """Racing creates of the same name: exactly one wins, the others get already exists."""
    m: Manager = env.manager()
    ctx = env.plugin_dir()
    results: list[str] = []

    def create() -> None:
        try:
            m.create("same", ctx)
            results.append("ok")
        except PluginError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["ok"] + ["plugin same:latest already exists"] * 5
    assert len(m.list()) == 1


def test_lookup_of_a_removed_plugin_is_not_found(env: Env) -> None:
    """After remove, lookups no longer see the plugin."""
    m: Manager = env.manager()
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    m.remove("foo", force=True)
    with pytest.raises(ErrNotFound):
        m.lookup_with_capability("foo", "volumedriver")


class _SlowStopRuntime(FakeRuntime):
    """A FakeRuntime whose stop() blocks until released, like a plugin slow to exit."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = threading.Event()
        self.release = threading.Event()

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        self.stopping.set()
        self.release.wait(10)
        super().stop(plugin_id, grace=grace)


@pytest.mark.timeout(30)
def test_a_plugin_being_disabled_is_no_longer_looked_up(short_tmp: Path) -> None:
    """While disable() waits for the plugin to exit, lookups, use() and find no longer return it."""
    runtime = _SlowStopRuntime()
    env = Env(short_tmp, runtime)
    try:
        m = env.manager()
        p = m.create("foo", env.plugin_dir())
        m.enable("foo")
        disabler = threading.Thread(target=m.disable, args=("foo",))
        disabler.start()
        try:
            assert runtime.stopping.wait(10)
            with pytest.raises(ErrDisabled, match=r'^plugin "foo" found but not running$'):
                m.lookup_with_capability("foo", "volumedriver")
            with (
                pytest.raises(ErrDisabled, match=r'^plugin "foo" found but not running$'),
                m.use("foo", "volumedriver"),
            ):
                pass
            assert m.find_with_capability("volumedriver") == []
        finally:
            runtime.release.set()
            disabler.join(10)
        assert not disabler.is_alive()
        assert p.enabled is False
        assert p.refcount == 0
        assert env.actions() == ["create", "enable", "disable"]
    finally:
        env.close()


class _SlowSaveManager(Manager):
    """A Manager whose save of an enable blocks until released (a slow disk)."""

    saving = threading.Event()
    release = threading.Event()

    def _save(self, entry: Any) -> None:
        if entry.enabled and not entry.plugin.enabled:  # enable() recording the plugin
            self.saving.set()
            self.release.wait(10)
        super()._save(entry)


@pytest.mark.timeout(30)
def test_a_plugin_is_looked_up_only_once_its_enable_is_recorded(env: Env) -> None:
    """Until enable() has saved the plugin as enabled, lookups and use() do not return it."""
    m = _SlowSaveManager(
        env.root,
        runtime=env.runtime,
        run_root=env.run_root,
        legacy=None,
        on_event=env.events.append,
    )
    env.managers.append(m)
    m.create("foo", env.plugin_dir())
    enabler = threading.Thread(target=m.enable, args=("foo",))
    enabler.start()
    try:
        assert m.saving.wait(10)
        assert env.runtime.running() == ["foo:latest"]  # it runs and listens already
        with pytest.raises(ErrDisabled, match=r'^plugin "foo" found but disabled$'):
            m.lookup_with_capability("foo", "volumedriver")
        with (
            pytest.raises(ErrDisabled, match=r'^plugin "foo" found but disabled$'),
            m.use("foo", "volumedriver"),
        ):
            pass
        assert m.find_with_capability("volumedriver") == []
    finally:
        m.release.set()
        enabler.join(10)
    assert not enabler.is_alive()
    p = m.lookup_with_capability("foo", "volumedriver")
    assert p.enabled is True
    assert p.refcount == 0


class _FailingSaveManager(Manager):
    """A Manager whose first save of an enable waits for a crash, then fails (a full disk)."""

    saving = threading.Event()
    release = threading.Event()
    failed = False

    def _save(self, entry: Any) -> None:
        if entry.enabled and not entry.plugin.enabled and not self.failed:
            self.failed = True
            self.saving.set()
            self.release.wait(10)
            raise OSError(28, "No space left on device")
        super()._save(entry)


@pytest.mark.timeout(30)
def test_a_crash_during_a_failing_enable_leaves_no_restart_behind(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart scheduled by a crash inside an enable that then fails never fires later."""
    from pluginkit import RestartPolicy

    caplog.set_level(logging.WARNING, "pluginkit")
    m = _FailingSaveManager(
        env.root,
        runtime=env.runtime,
        run_root=env.run_root,
        legacy=None,
        on_event=env.events.append,
        restart_policy=RestartPolicy(initial_delay=0.5),
    )
    env.managers.append(m)
    m.create("foo", env.plugin_dir())
    errors: list[BaseException] = []

    def enable() -> None:
        try:
            m.enable("foo")
        except BaseException as exc:
            errors.append(exc)

    enabler = threading.Thread(target=enable)
    enabler.start()
    assert m.saving.wait(10)
    env.runtime.crash("foo")  # dies while its enable is being saved
    wait_for(lambda: "exit" in env.actions())  # a restart is now scheduled in 0.5 s
    m.release.set()
    enabler.join(10)
    assert [str(e) for e in errors] == ["[Errno 28] No space left on device"]
    caplog.clear()
    m.enable("foo")  # a new enable, before the old restart would fire
    time.sleep(1.0)  # twice the restart delay: a leftover timer would have fired
    assert env.runtime.started_count("foo") == 2
    assert env.runtime.running() == ["foo:latest"]
    assert [r.getMessage() for r in caplog.records] == []
    assert env.actions() == ["create", "exit", "enable"]


def test_disable_and_shutdown_leave_no_socket_directory(env: Env) -> None:
    """A stopped plugin's socket directory is removed; enable makes it again."""
    m = env.manager()
    p = m.create("tidy", env.plugin_dir())
    socket_dir = m.run_root / str(p.id)
    m.enable("tidy")
    assert socket_dir.is_dir()
    m.disable("tidy")
    assert not socket_dir.exists()
    m.enable("tidy")
    assert socket_dir.is_dir()
    plugin = m.lookup_with_capability("tidy", "volumedriver")
    assert plugin.client.call("Plugin.Activate") == {"Implements": []}  # the fake's default
    m.shutdown()
    assert not socket_dir.exists()
    assert list(m.run_root.iterdir()) == []
