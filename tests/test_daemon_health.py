"""Health checks under ``pluginkit daemon``: on by default, options, a SIGSTOPped plugin.

A real daemon subprocess on the process runtime supervises a real plugin
process; the plugin is SIGSTOPped and must be reported unhealthy (an event
of ``GET /events``), restarted, answering again within 5 s and healthy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _daemon_helpers import DaemonProcess, cli_env, http, make_plugin_dir, running_daemon

from pluginkit import HealthCheck
from pluginkit.daemon import Daemon
from pluginkit.testing import FakeRuntime


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    with running_daemon(short_tmp) as d:
        yield d


def api(d: DaemonProcess, path: str) -> tuple[int, object]:
    status, _, raw = http(d.socket, "GET", path)
    return status, json.loads(raw)


def pid_of(d: DaemonProcess, name: str) -> int:
    from pluginkit import Client

    _, info = api(d, f"/pluginkit/v1/lookup?name={name}&capability=volumedriver")
    assert isinstance(info, dict)
    with Client(info["Addr"], retry_timeout=0, timeout=0.2) as client:
        return int(client.call("Plugin.Activate")["Pid"])


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def health_of(d: DaemonProcess, name: str) -> object:
    _, value = api(d, f"/pluginkit/v1/plugins/{name}/health")
    assert isinstance(value, dict)
    return value["Health"]


def test_a_sigstopped_plugin_is_restarted_and_healthy_again(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    """Defaults: SIGSTOP -> unhealthy event -> restart -> answering within 5 s -> healthy."""
    plugin_dir = make_plugin_dir(short_tmp / "ctx")
    assert daemon.cli("create", "hc", str(plugin_dir)).returncode == 0
    assert daemon.cli("enable", "hc").returncode == 0
    wait_for(lambda: health_of(daemon, "hc") == "healthy")
    plugin_id = daemon.cli("inspect", "--format", "{{.Id}}", "hc").stdout.strip()
    _, inspected = api(daemon, "/v1.41/plugins/hc/json")
    assert isinstance(inspected, dict)
    assert inspected["Health"] == {"Status": "healthy"}
    assert daemon.cli("ls", "--no-trunc").stdout.splitlines() == [
        f"{'ID':<67}NAME        DESCRIPTION          ENABLED   HEALTH",
        f"{plugin_id}   hc:latest   daemon test plugin   true      healthy",
    ]
    assert daemon.cli("ls", "--format", "{{.Name}} {{.Health}}").stdout == "hc:latest healthy\n"

    # Follow GET /events (as `pluginkit events` does) while the plugin hangs.
    follower = daemon.cli_background(
        "events", "--format", "json", "--filter", "event=health_status", "--filter", "plugin=hc"
    )
    try:
        time.sleep(0.5)  # the follower is connected
        pid = pid_of(daemon, "hc")
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        answered = None
        while answered is None and time.monotonic() - stopped < 15:
            try:
                if pid_of(daemon, "hc") != pid:
                    answered = time.monotonic() - stopped
            except Exception:
                time.sleep(0.02)
        assert answered is not None, "the plugin did not come back"
        assert answered < 5.0, f"answered again after {answered:.2f} s"
        assert follower.stdout is not None
        seen = [json.loads(follower.stdout.readline()) for _ in range(2)]
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        if follower.stdout is not None:
            follower.stdout.close()
    actor = {"ID": plugin_id, "Attributes": {"name": "hc:latest"}}
    assert [(m["Type"], m["Action"], m["Actor"]) for m in seen] == [
        ("plugin", "health_status: unhealthy", actor),
        ("plugin", "health_status: healthy", actor),
    ]
    assert health_of(daemon, "hc") == "healthy"
    lines = daemon.cli("events", "--since", "1h", "--until", "0s").stdout.splitlines()
    actions = [line.split(" ", 2)[2].rsplit(" ", 2)[0] for line in lines]
    assert actions[actions.index("health_status: unhealthy") :] == [
        "health_status: unhealthy",
        "exit",
        "restart",
        "health_status: healthy",
    ]
    filtered = daemon.cli(
        "events", "--since", "1h", "--until", "0s", "--filter", "event=health_status"
    ).stdout.splitlines()
    assert [line.split(" ")[3] for line in filtered] == ["healthy", "unhealthy", "healthy"]


def test_the_daemon_checks_health_by_default(daemon: DaemonProcess) -> None:
    """/pluginkit/v1/info shows the HealthCheck in force: HealthCheck()'s defaults."""
    _, info = api(daemon, "/pluginkit/v1/info")
    assert isinstance(info, dict)
    check = HealthCheck()
    assert info["HealthCheck"] == {
        "Interval": check.interval,
        "Timeout": check.timeout,
        "Retries": check.retries,
        "Method": check.method,
    }
    assert (check.interval, check.timeout, check.retries) == (1.0, 0.5, 2)  # as --help says


def test_health_options_reach_the_manager(short_tmp: Path) -> None:
    """--health-interval/-timeout/-retries/-method build the daemon's HealthCheck."""
    options = ["--health-interval", "0.25", "--health-timeout", "0.1", "--health-retries", "3"]
    options += ["--health-method", "VolumeDriver.Capabilities"]
    with running_daemon(short_tmp, *options) as d:
        _, info = api(d, "/pluginkit/v1/info")
        assert isinstance(info, dict)
        assert info["HealthCheck"] == {
            "Interval": 0.25,
            "Timeout": 0.1,
            "Retries": 3,
            "Method": "VolumeDriver.Capabilities",
        }


def test_no_health_check(short_tmp: Path) -> None:
    """--no-health-check: no probes, no Health field, no HEALTH column."""
    plugin_dir = make_plugin_dir(short_tmp / "ctx")
    with running_daemon(short_tmp, "--no-health-check") as d:
        _, info = api(d, "/pluginkit/v1/info")
        assert isinstance(info, dict)
        assert info["HealthCheck"] is None
        d.cli("create", "nh", str(plugin_dir))
        d.cli("enable", "nh")
        pid_of(d, "nh")
        assert health_of(d, "nh") is None
        _, inspected = api(d, "/v1.41/plugins/nh/json")
        assert isinstance(inspected, dict)
        assert "Health" not in inspected
        header = d.cli("ls").stdout.splitlines()[0]
        assert header.split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--health-interval", "0"], "Error: --health-interval must be a number > 0, got 0.0\n"),
        (["--health-timeout", "-1"], "Error: --health-timeout must be a number > 0, got -1.0\n"),
        (["--health-retries", "0"], "Error: --health-retries must be an integer >= 1, got 0\n"),
        (
            ["--health-method", "a/b"],
            "Error: --health-method must be a plugin method name such as "
            "'VolumeDriver.Capabilities', got 'a/b'\n",
        ),
        (
            ["--no-health-check", "--health-retries", "3"],
            "Error: --health-retries cannot be combined with --no-health-check\n",
        ),
    ],
)
def test_bad_health_options(short_tmp: Path, options: list[str], message: str) -> None:
    """A bad option is an Error naming it, exit 1, before anything starts."""
    out = subprocess.run(
        [sys.executable, "-m", "pluginkit", "--root", str(short_tmp / "root"), "daemon", *options],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stdout, out.stderr) == (1, "", message)
    assert not (short_tmp / "root").exists()


def test_daemon_api_passes_its_health_check(short_tmp: Path) -> None:
    """Daemon(health_check=...) is the Manager's; the default is HealthCheck(); None is off."""
    runtime = FakeRuntime()
    quick = HealthCheck(interval=0.2, retries=3)
    for check, expected in ((quick, quick), (None, None)):
        daemon = Daemon(
            short_tmp / "root", run_root=short_tmp / "r", runtime=runtime, legacy=None,
            health_check=check,
        )  # fmt: skip
        with daemon:
            assert daemon.manager.health_check == expected
    assert Daemon(short_tmp / "root").health_check == HealthCheck()


def test_events_without_since_shows_new_events_only(daemon: DaemonProcess, short_tmp: Path) -> None:
    """As dockerd: no `since`/`until` -> no past events, only what happens next."""
    plugin_dir = make_plugin_dir(short_tmp / "ctx")
    daemon.cli("create", "old", str(plugin_dir))
    follower = daemon.cli_background("events", "--format", "json")
    try:
        time.sleep(0.5)  # the follower is connected
        daemon.cli("create", "new", str(plugin_dir))
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        if follower.stdout is not None:
            follower.stdout.close()
    assert (first["Action"], first["Actor"]["Attributes"]) == ("create", {"name": "new:latest"})
