"""Health checks: hung plugins are found, reported and restarted; one thread for all plugins."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import Client, HealthCheck, Manager, RestartPolicy
from pluginkit.runtime.process import ProcessRuntime
from pluginkit.testing import FakeRuntime
from tests._manager_helpers import Env, wait_for, write_plugin_dir

SDK_PLUGIN = """\
#!{python}
from pluginkit.sdk import PluginServer
PluginServer(implements=["VolumeDriver"]).serve(None)
"""


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


# -- the HealthCheck value ---------------------------------------------------------


def test_defaults() -> None:
    """The defaults bring a hung plugin back within 5 s: 2 failures 1 s apart, 0.5 s each."""
    assert HealthCheck() == HealthCheck(interval=1.0, timeout=0.5, retries=2, method=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "HealthCheck.interval must be a number > 0, got 0"),
        ({"timeout": -1.0}, "HealthCheck.timeout must be a number > 0, got -1.0"),
        ({"timeout": True}, "HealthCheck.timeout must be a number > 0, got True"),
        ({"retries": 0}, "HealthCheck.retries must be an integer >= 1, got 0"),
        ({"retries": 1.5}, "HealthCheck.retries must be an integer >= 1, got 1.5"),
        (
            {"method": "/x"},
            "HealthCheck.method must be a plugin method name such as "
            "'VolumeDriver.Capabilities', got '/x'",
        ),
        (
            {"method": ""},
            "HealthCheck.method must be a plugin method name such as "
            "'VolumeDriver.Capabilities', got ''",
        ),
    ],
)
def test_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^HealthCheck\.") as info:
        HealthCheck(**kwargs)
    assert str(info.value) == message


# -- with FakeRuntime ---------------------------------------------------------------

QUICK = HealthCheck(interval=0.05, timeout=0.5, retries=2)
FAST = RestartPolicy(initial_delay=0.01, max_delay=0.04, reset_after=30.0)


def test_no_health_check_no_health(env: Env) -> None:
    """Without a HealthCheck, health is None and inspect has no Health field."""
    m = env.manager()
    m.create("vol", env.plugin_dir())
    m.enable("vol")
    assert m.get("vol").health is None
    assert "Health" not in m.inspect("vol")
    assert not [a for a in env.actions() if a.startswith("health_status")]


def test_healthy_plugin(env: Env) -> None:
    """A plugin that answers becomes healthy: Plugin, inspect and one event say so."""
    m = env.manager(health_check=QUICK)
    m.create("vol", env.plugin_dir())
    m.enable("vol")
    assert m.get("vol").health in ("starting", "healthy")
    wait_for(lambda: m.get("vol").health == "healthy")
    assert m.inspect("vol")["Health"] == {"Status": "healthy"}
    time.sleep(0.3)  # several probes more: no new event
    assert env.actions() == ["create", "enable", "health_status: healthy"]
    m.disable("vol")
    assert m.get("vol").health is None
    assert "Health" not in m.inspect("vol")


def test_custom_method_failing_makes_it_unhealthy_and_restarted(env: Env) -> None:
    """With ``method``, an error answer is a failure: unhealthy, event, restart by the policy."""
    assert isinstance(env.runtime, FakeRuntime)
    state = {"fail": False}

    def capabilities(request: Any) -> Any:
        if state["fail"]:
            raise RuntimeError("broken")
        return {"Capabilities": {"Scope": "local"}}

    env.runtime.set_handlers("vol", {"VolumeDriver.Capabilities": capabilities})
    m = env.manager(
        health_check=HealthCheck(
            interval=0.05, timeout=0.5, retries=3, method="VolumeDriver.Capabilities"
        ),
        restart_policy=FAST,
    )
    m.create("vol", env.plugin_dir())
    m.enable("vol")
    wait_for(lambda: m.get("vol").health == "healthy")
    state["fail"] = True
    wait_for(lambda: "health_status: unhealthy" in env.actions())
    state["fail"] = False
    wait_for(lambda: env.actions().count("health_status: healthy") == 2)
    assert env.actions() == [
        "create",
        "enable",
        "health_status: healthy",
        "health_status: unhealthy",
        "exit",
        "restart",
        "health_status: healthy",
    ]
    assert env.runtime.started_count("vol") == 2
    assert m.get("vol").health == "healthy"


def test_one_thread_probes_many_plugins(env: Env) -> None:
    """200 plugins under health checks: all healthy, and the probes add one thread, not 200."""
    m = env.manager(health_check=QUICK)
    for i in range(200):
        m.create(f"p{i}", env.plugin_dir(f"c{i}", socket_name="p.sock"))
    for i in range(200):
        m.enable(f"p{i}")
    wait_for(lambda: all(p.health == "healthy" for p in m.list()), timeout=60)
    probing = [t.name for t in threading.enumerate() if t.name.startswith("pluginkit-health")]
    # The probing thread and the one that reports changes in order.
    assert sorted(probing) == ["pluginkit-health", "pluginkit-health-events_0"]


# -- with ProcessRuntime: a stopped process -----------------------------------------


def test_sigstopped_plugin_is_back_within_5_seconds(short_tmp: Path) -> None:
    """SIGSTOP the plugin: with the default HealthCheck it answers again within 5 s."""
    ctx = write_plugin_dir(short_tmp / "ctx", entrypoint=("/bin/plugin",))
    script = ctx / "rootfs" / "bin" / "plugin"
    script.parent.mkdir()
    script.write_text(SDK_PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    runtime = ProcessRuntime(grace=10)
    env = Env(short_tmp, runtime)
    try:
        m: Manager = env.manager(health_check=HealthCheck())
        m.create("hang", ctx)
        m.enable("hang", timeout=20)
        wait_for(lambda: m.get("hang").health == "healthy", timeout=10)
        (proc,) = runtime._procs.values()
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        answered = None
        while answered is None and time.monotonic() - stopped < 10:
            try:
                with Client(m.get("hang").addr, timeout=0.2) as client:
                    client.call("Plugin.Activate", None)
            except Exception:
                time.sleep(0.05)
                continue
            if [p.pid for p in runtime._procs.values()] != [proc.pid]:
                answered = time.monotonic() - stopped
        assert answered is not None
        assert answered < 5.0, f"answered again after {answered:.2f} s"
        (new,) = runtime._procs.values()
        assert new.pid != proc.pid
        wait_for(lambda: m.get("hang").health == "healthy")
        actions = env.actions()
        assert actions[actions.index("health_status: unhealthy") :] == [
            "health_status: unhealthy",
            "exit",
            "restart",
            "health_status: healthy",
        ]
    finally:
        env.close()


def test_ls_shows_health(env: Env) -> None:
    """`ls` has a HEALTH column when plugins report health, and `{{.Health}}` in templates."""
    import argparse
    import io

    from pluginkit.cli import print_plugins

    m = env.manager(health_check=QUICK)
    m.create("vol", env.plugin_dir())
    m.create("off", env.plugin_dir("off"))
    m.enable("vol")
    wait_for(lambda: m.get("vol").health == "healthy")

    def ls(fmt: str) -> str:
        out = io.StringIO()
        records = [p.to_dict() for p in m.list()]
        print_plugins(records, argparse.Namespace(no_trunc=True, quiet=False, format=fmt), out)
        return out.getvalue()

    ids = {p.name: p.id for p in m.list()}
    assert ls("table").splitlines() == [
        f"{'ID':<67}NAME         DESCRIPTION   ENABLED   HEALTH",
        f"{ids['off:latest']}   off:latest   test plugin   false     ",
        f"{ids['vol:latest']}   vol:latest   test plugin   true      healthy",
    ]
    assert ls("{{.Name}} {{.Health}}") == "off:latest \nvol:latest healthy\n"


def test_shutdown_ends_the_probing_thread(env: Env) -> None:
    """shutdown() stops the probes: no health thread is left, no event comes later."""
    m = env.manager(health_check=QUICK)
    m.create("vol", env.plugin_dir())
    m.enable("vol")
    wait_for(lambda: m.get("vol").health == "healthy")
    m.shutdown()
    assert not [t for t in threading.enumerate() if t.name == "pluginkit-health"]
    actions = env.actions()
    time.sleep(0.2)
    assert env.actions() == actions
