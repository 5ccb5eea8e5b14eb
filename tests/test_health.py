"""Health checks: hung plugins are found, reported and restarted; one thread for all plugins."""

from __future__ import annotations

import os
import signal
import socket
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
from tests._client_helpers import RawServer
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


# -- the probe itself, against raw servers ------------------------------------------


class _SlowServer:
    """A unix socket server answering each connection with ``reply`` after ``delay`` s."""

    def __init__(self, path: Path, reply: bytes, delay: float = 0.0) -> None:
        self.path = path
        self.reply = reply
        self.delay = delay  # counted from the accept
        self.connections: list[float] = []
        # For the next connection only: called at its accept, returns its delay.
        self.on_accept: Any = None
        self._closed = threading.Event()  # ends the waits: close() joins the handlers
        self._server = RawServer(path, self._answer).__enter__()

    def _answer(self, conn: socket.socket) -> None:
        accepted = time.monotonic()
        self.connections.append(accepted)
        hook, self.on_accept = self.on_accept, None
        delay = self.delay if hook is None else hook()
        # The probe hangs up once it has the status line (or gave up): RawServer
        # passes over the error that makes.
        conn.recv(4096)
        if self._closed.wait(max(0.0, accepted + delay - time.monotonic())):
            return
        for piece in self.reply:  # one byte at a time: lines split across reads
            conn.sendall(bytes([piece]))

    def close(self) -> None:
        self._closed.set()
        self._server.__exit__(None, None, None)


def _probe(check: HealthCheck, path: Path) -> bool:
    import asyncio

    from pluginkit._health import HealthMonitor

    async def go() -> bool:
        return await HealthMonitor(check, lambda *a: None).probe(str(path))

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("reply", "method", "healthy"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", None, True),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", None, True),  # any answer, for Plugin.Activate
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "VolumeDriver.Capabilities", False),
        (b"HTTP/1.0 204 No Content\r\n\r\n", "VolumeDriver.Capabilities", True),
        (b"SSH-2.0-OpenSSH\r\n", None, False),
        (b"HTTP/1.1 " + b"2" * 2000 + b" OK\r\n", None, False),  # no status line ends
        (b"", None, False),  # closed without a word
    ],
)
def test_probe_verdicts(short_tmp: Path, reply: bytes, method: str | None, healthy: bool) -> None:
    server = _SlowServer(short_tmp / "p.sock", reply)
    try:
        assert _probe(HealthCheck(timeout=2, method=method), server.path) is healthy
    finally:
        server.close()


def test_probe_of_a_missing_socket_or_a_silent_plugin_fails(short_tmp: Path) -> None:
    assert _probe(HealthCheck(timeout=0.5), short_tmp / "missing.sock") is False
    silent = _SlowServer(short_tmp / "s.sock", b"HTTP/1.1 200 OK\r\n\r\n", delay=5)
    try:
        started = time.monotonic()
        assert _probe(HealthCheck(timeout=0.3), silent.path) is False
        assert 0.25 < time.monotonic() - started < 2
    finally:
        silent.close()


def test_a_stalled_monitor_gives_no_verdict_on_the_plugin(short_tmp: Path) -> None:
    """The monitor's thread stalls (a starved host or process) past a probe's deadline:
    that late deadline is no verdict, the probe gets a new timeout from then, and a plugin
    answering within it stays healthy (such probes used to count, and restarted healthy
    plugins on a busy host). A plugin that does not answer is still found."""
    from pluginkit._health import HealthMonitor

    server = _SlowServer(short_tmp / "p.sock", b"HTTP/1.1 200 OK\r\n\r\n")
    statuses: list[str] = []
    monitor = HealthMonitor(
        HealthCheck(interval=0.05, timeout=0.5, retries=1), lambda key, s, n: statuses.append(s)
    )
    try:
        monitor.watch("p", str(server.path))
        wait_for(lambda: statuses == ["healthy"])
        loop = monitor._loop
        assert loop is not None

        def stall() -> float:
            loop.call_soon_threadsafe(time.sleep, 1.0)
            return 1.2

        for _ in range(2):
            # The next probe: its answer comes 1.2 s after the connect, and the monitor
            # stalls for 1 s from the connect. Deadline at 0.5 s, seen at 1 s: a new
            # one at 1.5 s, which the answer beats.
            answered = len(server.connections) + 1
            server.on_accept = stall
            wait_for(lambda n=answered: len(server.connections) > n, timeout=10)  # type: ignore[misc]
        assert statuses == ["healthy"]
        server.delay = 5  # now it hangs, the monitor keeping time: unhealthy
        wait_for(lambda: statuses == ["healthy", "unhealthy"], timeout=10)
    finally:
        monitor.close()
        server.close()


def test_a_monitor_that_never_keeps_time_still_finds_a_hung_plugin(short_tmp: Path) -> None:
    """The monitor's loop is stalled 0.3 s at a time, over and over, so every deadline is
    handled late: a probe gets a few new timeouts, not endless ones, and a hung plugin is
    found (with no cap it was never found while the stalls went on)."""
    from pluginkit._health import HealthMonitor

    server = _SlowServer(short_tmp / "p.sock", b"HTTP/1.1 200 OK\r\n\r\n")
    statuses: list[str] = []
    monitor = HealthMonitor(
        HealthCheck(interval=0.05, timeout=0.2, retries=1), lambda key, s, n: statuses.append(s)
    )
    stalling = threading.Event()
    try:
        monitor.watch("p", str(server.path))
        wait_for(lambda: statuses == ["healthy"])
        loop = monitor._loop
        assert loop is not None

        def stall() -> None:  # each turn of the loop starts with 0.3 s of sleep
            if stalling.is_set():
                time.sleep(0.3)
                loop.call_soon(stall)

        server.delay = 60  # hung
        stalling.set()
        loop.call_soon_threadsafe(stall)
        wait_for(lambda: statuses == ["healthy", "unhealthy"], timeout=15)
    finally:
        stalling.clear()
        monitor.close()
        server.close()


def test_probes_of_plugins_started_together_spread_out(short_tmp: Path) -> None:
    """After the first probe, each plugin's rhythm is shifted by a random part of the
    interval: 40 plugins watched at once are not probed in one burst ever after."""
    from pluginkit._health import HealthMonitor

    servers = [_SlowServer(short_tmp / f"p{i}.sock", b"HTTP/1.1 200 OK\r\n\r\n") for i in range(40)]
    monitor = HealthMonitor(HealthCheck(interval=1.0, timeout=0.5), lambda *a: None)
    try:
        for server in servers:
            monitor.watch(server.path.name, str(server.path))
        wait_for(lambda: all(len(s.connections) >= 2 for s in servers), timeout=10)
        firsts = [s.connections[0] for s in servers]
        seconds = [s.connections[1] - first for s, first in zip(servers, firsts, strict=True)]
        assert max(firsts) - min(firsts) < 0.4  # watched together: first probes together
        # then 0.5 to 1.5 intervals later (plus the lateness of a loaded host's loop)
        assert all(0.45 < gap < 2.5 for gap in seconds)
        assert max(seconds) - min(seconds) > 0.4  # spread (40 draws: fails ~1 in 10^21)
    finally:
        monitor.close()
        for server in servers:
            server.close()
