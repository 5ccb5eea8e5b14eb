"""The same Docker CLI commands against dockerd and against ``pluginkit daemon`` print the same.

One plugin directory is created in the machine's Docker engine and in a
pluginkit daemon (process runtime); ``docker plugin create/ls/inspect/set/
disable/rm`` and ``docker events`` are run against both, and their outputs
compared with the plugin ids (random in both) masked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _daemon_helpers import DaemonProcess, make_plugin_dir
from _dockerrt_helpers import unique

pytestmark = [pytest.mark.docker, pytest.mark.dockercli]

DOCKER = "/usr/bin/docker"
_ID = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b")


class Both:
    """Runs a docker command against dockerd and against the daemon."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        config = str(daemon.tmp / "dockercfg")
        base = {**os.environ, "DOCKER_CONFIG": config}
        base.pop("DOCKER_HOST", None)
        self.envs = {"dockerd": base, "pluginkit": {**base, "DOCKER_HOST": daemon.host}}

    def run(self, *args: str) -> dict[str, tuple[int, str, str]]:
        results = {}
        for who, env in self.envs.items():
            out = subprocess.run(
                [DOCKER, *args], capture_output=True, text=True, env=env, timeout=120, check=False
            )
            results[who] = (
                out.returncode,
                _ID.sub("<id>", out.stdout),
                _ID.sub("<id>", out.stderr),
            )
        return results

    def same(self, *args: str, only: str | None = None) -> tuple[int, str, str]:
        """Compare both outputs; with ``only``, the lines naming it (the engine is shared)."""
        results = self.run(*args)
        if only is not None:
            for who, (code, out, err) in results.items():
                # Column widths follow the other rows: compare the cells.
                kept = [" ".join(line.split()) for line in out.splitlines() if only in line]
                results[who] = (code, "\n".join(kept), err)
        assert results["pluginkit"] == results["dockerd"], args
        return results["dockerd"]


@pytest.fixture
def both(short_tmp: Path) -> Iterator[Both]:
    d = DaemonProcess(short_tmp)
    d.start()
    try:
        yield Both(d)
    finally:
        d.stop()


@pytest.fixture
def name(both: Both) -> Iterator[str]:
    name = unique("pkd-parity")
    yield name
    both.run("plugin", "rm", "-f", name)


def test_lifecycle_outputs_equal_dockerds(both: Both, name: str, short_tmp: Path) -> None:
    """create, ls, inspect, set (and its errors), disable and rm errors print the same."""
    context = make_plugin_dir(short_tmp / "ctx")
    since = f"{time.time() - 1:.3f}"
    assert both.same("plugin", "create", name, str(context)) == (0, f"{name}\n", "")
    both.same("plugin", "ls", "--filter", "enabled=false", only=name)
    both.same("plugin", "ls", "--no-trunc", only=name)
    both.same("plugin", "ls", "--format", "{{.Name}} {{.Enabled}} {{.Description}}", only=name)
    both.same("plugin", "ls", "--filter", "capability=volumedriver", only=name)
    both.same("plugin", "ls", "--filter", "enabled=maybe")
    both.same("plugin", "ls", "--filter", "foo=bar")
    inspected = {
        who: json.loads(out) for who, (_, out, _) in both.run("plugin", "inspect", name).items()
    }
    # dockerd adds what its content store knows: its version and the rootfs layer digest.
    engine_config = inspected["dockerd"][0]["Config"]
    assert engine_config.pop("DockerVersion")
    assert engine_config.pop("rootfs")["type"] == "layers"
    assert inspected["pluginkit"] == inspected["dockerd"]
    both.same("plugin", "set", name, "DEBUG=1")
    both.same("plugin", "inspect", "--format", "{{json .Settings}}", name)
    both.same("plugin", "set", name, "NOPE=1")
    both.same("plugin", "set", name, "args=a b")
    both.same("plugin", "disable", name)
    both.same("plugin", "inspect", "pkd-no-such-plugin")
    both.same("plugin", "rm", "pkd-no-such-plugin")
    both.same("plugin", "enable", "pkd-no-such-plugin")
    assert both.same("plugin", "rm", name) == (0, f"{name}\n", "")
    until = f"{time.time() + 0.5:.3f}"
    time.sleep(0.6)
    # dockerd logs no "set" events and names a removed plugin as the user typed it;
    # pluginkit reports set and the full name: compare the create events.
    events = both.same(
        "events", "--since", since, "--until", until, "--filter", f"plugin={name}",
        "--filter", "event=create", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    )  # fmt: skip
    assert events == (0, f"plugin create {name}:latest\n", "")
