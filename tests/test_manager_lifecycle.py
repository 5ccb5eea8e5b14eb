"""Manager: readiness, failed enables, and thread safety."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _manager_helpers import Env

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


def test_lookups_race_enable_and_disable(env: Env) -> None:
    """8 threads looking up while another toggles the plugin see only the plugin or ErrDisabled."""
    m: Manager = env.manager()
    p = m.create("foo", env.plugin_dir())
    stop = threading.Event()
    unexpected: list[BaseException] = []
    counts = {"found": 0, "disabled": 0}
    lock = threading.Lock()

    def look() -> None:
        found = disabled = 0
        while not stop.is_set():
            try:
                got = m.lookup_with_capability("foo", "volumedriver")
                assert got is p
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
            m.disable("foo")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert unexpected == []
    assert counts["disabled"] > 0


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
