"""Manager: crashed plugins are restarted with backoff; intended stops are not crashes."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import Env, wait_for, write_plugin_dir

from pluginkit import ErrDisabled, Manager, RestartPolicy
from pluginkit.runtime.process import ProcessRuntime

FAST = RestartPolicy(initial_delay=0.01, max_delay=0.04, multiplier=2.0, reset_after=30.0)


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


def _running(env: Env, m: Manager, name: str) -> bool:
    p = m.get(name)
    return p.id is not None and env.runtime.is_running(p.id)


def test_a_crashed_plugin_is_restarted(env: Env) -> None:
    """A crash emits exit, the plugin is started again and emits restart."""
    m = env.manager(restart_policy=FAST)
    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.crash("foo:latest", exit_code=2)
    wait_for(lambda: "restart" in env.actions())
    assert env.actions() == ["create", "enable", "exit", "restart"]
    assert m.lookup_with_capability("foo", "volumedriver") is p
    assert env.runtime.started_count("foo") == 2


def test_restarts_back_off_exponentially(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Consecutive crashes wait initial_delay, then double, up to max_delay."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    m = env.manager(restart_policy=FAST)
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    for n in range(1, 5):
        wait_for(lambda: _running(env, m, "foo"))
        env.runtime.crash("foo", exit_code=1, stderr_tail="oops")
        wait_for(lambda n=n: env.actions().count("restart") == n)
    delays = [
        r.getMessage().rsplit("restarting it in ", 1)[1]
        for r in caplog.records
        if "restarting it in" in r.getMessage()
    ]
    assert delays == ["0.01 s", "0.02 s", "0.04 s", "0.04 s"]
    assert "plugin foo:latest exited with code 1; stderr: oops; restarting it in 0.01 s" in [
        r.getMessage() for r in caplog.records
    ]


def test_the_backoff_resets_after_a_stable_period(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin that ran for reset_after seconds restarts after initial_delay again."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    policy = RestartPolicy(initial_delay=0.01, max_delay=1.0, reset_after=0.1)
    m = env.manager(restart_policy=policy)
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.crash("foo:latest")
    wait_for(lambda: env.actions().count("restart") == 1)
    env.runtime.crash("foo:latest")
    wait_for(lambda: env.actions().count("restart") == 2)
    time.sleep(0.15)  # stay up longer than reset_after
    env.runtime.crash("foo:latest")
    wait_for(lambda: env.actions().count("restart") == 3)
    delays = [
        r.getMessage().rsplit(" in ", 1)[1]
        for r in caplog.records
        if "restarting" in r.getMessage()
    ]
    assert delays == ["0.01 s", "0.02 s", "0.01 s"]


def test_lookups_never_return_a_crashed_plugin(env: Env) -> None:
    """Between a crash and the restart, lookups say the plugin is not running."""
    m = env.manager(restart_policy=RestartPolicy(initial_delay=60))
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.crash("foo:latest")
    wait_for(lambda: "exit" in env.actions())
    with pytest.raises(ErrDisabled, match=r'^plugin "foo" found but not running$'):
        m.lookup_with_capability("foo", "volumedriver")
    assert m.find_with_capability("volumedriver") == []
    assert m.get("foo").enabled is True


def test_disable_interrupts_a_crash_loop(env: Env) -> None:
    """Disable during a crash loop cancels the pending restart; nothing starts afterwards."""
    m = env.manager(restart_policy=FAST)
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.exit_on_start("foo", 1, "crash", times=None)
    env.runtime.crash("foo:latest")
    wait_for(lambda: env.runtime.started_count("foo") >= 4)  # it is looping now
    m.disable("foo")
    starts = env.runtime.started_count("foo")
    time.sleep(0.2)  # several times max_delay: a leftover timer would have fired
    assert env.runtime.started_count("foo") == starts
    assert m.get("foo").enabled is False
    assert env.actions()[-1] == "disable"


def test_remove_interrupts_a_crash_loop(env: Env) -> None:
    """A forced remove during a crash loop removes the plugin; nothing starts afterwards."""
    m = env.manager(restart_policy=FAST)
    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.exit_on_start("foo", 1, "crash", times=None)
    env.runtime.crash("foo:latest")
    wait_for(lambda: env.runtime.started_count("foo") >= 4)
    m.remove("foo", force=True)
    starts = env.runtime.started_count("foo")
    time.sleep(0.2)
    assert env.runtime.started_count("foo") == starts
    assert m.list() == []
    assert not (env.root / "plugins" / str(p.id)).exists()


def test_intended_stops_are_not_crashes(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Disable, remove --force and shutdown stop plugins without exit events, restarts or errors."""
    caplog.set_level(logging.DEBUG, "pluginkit")
    m = env.manager(restart_policy=FAST)
    for name in ("a", "b", "c"):
        m.create(name, env.plugin_dir(name))
        m.enable(name)
    m.disable("a")
    m.remove("b", force=True)
    m.shutdown()
    time.sleep(0.1)
    assert "exit" not in env.actions()
    assert "restart" not in env.actions()
    assert [env.runtime.started_count(n) for n in "abc"] == [1, 1, 1]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_manager_gives_up_after_max_restarts(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """After max_restarts failed restarts the plugin stays enabled but stopped, with an error."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    policy = RestartPolicy(initial_delay=0.01, max_delay=0.01, max_restarts=2)
    m = env.manager(restart_policy=policy)
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.exit_on_start("foo", 1, times=None)
    env.runtime.crash("foo:latest")
    wait_for(lambda: any("giving up" in r.getMessage() for r in caplog.records))
    assert env.runtime.started_count("foo") == 3
    assert m.get("foo").enabled is True
    with pytest.raises(ErrDisabled, match="found but not running"):
        m.lookup_with_capability("foo", "volumedriver")
    env.runtime.exit_on_start("foo", times=0)
    m.disable("foo")
    m.enable("foo")
    assert m.lookup_with_capability("foo", "volumedriver").name == "foo:latest"


def test_restart_policy_delays() -> None:
    """delay(n) = initial * multiplier**n, capped at max_delay; gives_up follows max_restarts."""
    policy = RestartPolicy(initial_delay=0.1, max_delay=1.0, multiplier=3.0, max_restarts=3)
    assert [policy.delay(n) for n in range(5)] == pytest.approx([0.1, 0.3, 0.9, 1.0, 1.0])
    assert policy.delay(10_000) == 1.0
    assert [policy.gives_up(n) for n in range(5)] == [False, False, False, True, True]
    assert not RestartPolicy().gives_up(10**9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay": 0}, "RestartPolicy.initial_delay must be > 0, got 0"),
        ({"multiplier": 0.5}, "RestartPolicy.multiplier must be >= 1, got 0.5"),
        ({"max_restarts": -1}, "RestartPolicy.max_restarts must be >= 0 or None, got -1"),
    ],
)
def test_restart_policy_validates(kwargs: dict[str, float], message: str) -> None:
    """Bad policy values are rejected with a message naming the field."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_disable_interrupts_a_restart_in_progress(env: Env) -> None:
    """Disable while a restarted plugin is still starting stops it; it is not started again."""
    m = env.manager(restart_policy=FAST)
    p = m.create("foo", env.plugin_dir())
    m.enable("foo", timeout=60)
    env.runtime.set_start_delay("foo", 3600)  # the restart will wait for its socket
    env.runtime.crash("foo")
    wait_for(lambda: env.runtime.started_count("foo") == 2)
    m.disable("foo")
    assert p.id is not None
    assert not env.runtime.is_running(p.id)
    assert env.runtime.started_count("foo") == 2
    assert m.get("foo").enabled is False
    assert env.actions() == ["create", "enable", "exit", "disable"]


CRASHING_PLUGIN = """\
#!{python}
import os, socket, sys, time
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], os.environ["PLUGINKIT_SOCKET"])
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
time.sleep(0.05)
sys.exit(3)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("action", ["disable", "remove"])
def test_stopping_a_real_crash_loop(
    short_tmp: Path, caplog: pytest.LogCaptureFixture, action: str
) -> None:
    """ProcessRuntime: disable / remove --force of a plugin that keeps crashing ends the loop."""
    caplog.set_level(logging.WARNING, "pluginkit")
    ctx = write_plugin_dir(short_tmp / "ctx", entrypoint=("/bin/plugin",))
    script = ctx / "rootfs" / "bin" / "plugin"
    script.parent.mkdir()
    script.write_text(CRASHING_PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    runtime = ProcessRuntime(grace=5)
    env = Env(short_tmp, runtime)
    try:
        m = env.manager(restart_policy=FAST)
        p = m.create("loop", ctx)
        m.enable("loop", timeout=20)
        wait_for(lambda: env.actions().count("restart") >= 3)  # crashing and restarting
        if action == "disable":
            m.disable("loop", force=True)
        else:
            m.remove("loop", force=True)
        assert p.id is not None
        assert not runtime.is_running(p.id)
        logged = len(caplog.records)
        actions = env.actions()
        time.sleep(0.3)  # many times max_delay: a leftover restart would have happened
        assert env.actions() == actions
        assert actions[-1] == action
        assert len(caplog.records) == logged
        assert not runtime.is_running(p.id)
        if action == "disable":
            assert m.get("loop").enabled is False
        else:
            assert m.list() == []
            assert not (env.root / "plugins" / p.id).exists()
    finally:
        env.close()


def test_every_action_reports_the_plugin_id_and_name(env: Env) -> None:
    """Events of install, set, enable, exit, restart, disable, remove carry the id and name."""
    m = env.manager(restart_policy=FAST)
    env_var = [{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}]
    other = m.create("other", env.plugin_dir("other"))
    p = m.install(env.plugin_dir("ctx", Env=env_var), name="acme/vol:1.0")
    m.set("acme/vol:1.0", ["DEBUG=1"])
    m.enable("acme/vol:1.0")
    env.runtime.crash("acme/vol:1.0")
    wait_for(lambda: "restart" in env.actions())
    m.disable(str(p.id)[:12])
    m.remove(str(p.id))
    assert [(e.action, e.id, e.name) for e in env.events] == [
        ("create", other.id, "other:latest"),
        *[
            (action, p.id, "acme/vol:1.0")
            for action in ("install", "set", "enable", "exit", "restart", "disable", "remove")
        ],
    ]
    times = [e.time for e in env.events]
    assert times == sorted(times)


def test_a_restart_failing_on_the_host_is_retried(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart that fails with an OSError (socket dir unusable) is logged and retried."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    m = env.manager(restart_policy=RestartPolicy(initial_delay=0.2, max_delay=0.2))
    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.crash("foo")
    wait_for(lambda: "exit" in env.actions())
    socket_dir = env.run_root / str(p.id)
    shutil.rmtree(socket_dir)
    socket_dir.write_text("in the way")  # the restart cannot create its socket directory
    wait_for(lambda: any("could not be restarted" in r.getMessage() for r in caplog.records))
    socket_dir.unlink()
    wait_for(lambda: "restart" in env.actions())
    assert m.lookup_with_capability("foo", "volumedriver") is p
    assert env.actions() == ["create", "enable", "exit", "restart"]


def test_an_exit_handler_may_remove_the_plugin(env: Env) -> None:
    """on_event removing the plugin on its "exit" cancels the restart about to be armed."""
    removed = threading.Event()
    managers: list[Manager] = []

    def on_event(event: Any) -> None:
        env.events.append(event)
        if event.action == "exit":
            managers[0].remove(event.id, force=True)
            removed.set()

    m = env.manager(restart_policy=FAST, on_event=on_event)
    managers.append(m)
    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    env.runtime.crash("foo")
    assert removed.wait(10)
    time.sleep(0.2)  # several times max_delay: a restart would have happened
    assert env.actions() == ["create", "enable", "exit", "remove"]
    assert env.runtime.started_count("foo") == 1
    assert m.list() == []
    assert not (env.root / "plugins" / str(p.id)).exists()
