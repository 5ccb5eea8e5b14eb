"""``docker plugin push/install/upgrade`` and docker-py against ``pluginkit daemon`` and a registry.

A real registry (Debian's ``docker-registry``) on a loopback port; the
daemon pushes and pulls through the manager's registry support.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from _daemon_helpers import DaemonProcess, make_plugin_dir, running_daemon
from _registry import run_registry

DOCKER = "/usr/bin/docker"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    with running_daemon(short_tmp) as d:
        yield d


def _docker(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.tmp / "dockercfg")}
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, env=env, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.dockercli
def test_docker_cli_pushes_installs_and_upgrades(
    daemon: DaemonProcess, registry: str, short_tmp: Path
) -> None:
    """push, install (privileges granted or refused) and upgrade print Docker's lines."""
    context = make_plugin_dir(short_tmp / "ctx")
    ref = f"{registry}/pk/dp:1"
    assert _docker(daemon, "plugin", "create", ref, str(context)).returncode == 0
    pushed = _docker(daemon, "plugin", "push", ref)
    lines = pushed.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{registry}/pk/dp]"
    assert lines[1].startswith("1: digest: sha256:")
    assert len(lines) == 2
    assert _docker(daemon, "plugin", "rm", ref).returncode == 0
    refused = _docker(daemon, "plugin", "install", ref)
    assert refused.returncode == 1
    assert refused.stdout.startswith(f'Plugin "{ref}" is requesting the following privileges:\n')
    assert " - network: [host]\n" in refused.stdout
    assert refused.stderr == f"Permission denied while installing plugin {ref}\n"
    installed = _docker(daemon, "plugin", "install", "--grant-all-permissions", ref)
    assert installed.stdout == (
        f"1: Pulling from pk/dp\nStatus: Downloaded newer image for {ref}\nInstalled plugin {ref}\n"
    )
    record = json.loads(_docker(daemon, "plugin", "inspect", ref).stdout)[0]
    assert (record["Enabled"], record["PluginReference"]) == (True, ref)
    assert _docker(daemon, "plugin", "disable", ref).returncode == 0
    upgraded = _docker(daemon, "plugin", "upgrade", "--grant-all-permissions", ref)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.endswith(f"Upgraded plugin {ref} to {ref}\n")
    assert json.loads(_docker(daemon, "plugin", "inspect", ref).stdout)[0]["Id"] == record["Id"]


def test_docker_py_installs_from_a_registry(
    daemon: DaemonProcess, registry: str, short_tmp: Path
) -> None:
    """docker-py: plugin_privileges, plugins.install and push through the daemon."""
    context = make_plugin_dir(short_tmp / "ctx")
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        ref = f"{registry}/pk/py:2"
        plugin = client.plugins.create(ref, str(context))
        assert plugin.name == ref
        # docker-py's push_plugin posts to /plugins/NAME/pull (a docker-py bug,
        # dockerd answers 404 too): push with the API's real endpoint.
        pushed = client.api._post(client.api._url("/plugins/{0}/push", ref))
        assert pushed.status_code == 200
        assert json.loads(pushed.text.splitlines()[-1])["aux"]["Tag"] == "2"
        plugin.remove()
        assert client.api.plugin_privileges(ref) == [
            {"Name": "network", "Description": "permissions to access a network", "Value": ["host"]}
        ]
        installed = client.plugins.install(ref, local_name="pyinst")
        # docker-py pulls only (as against dockerd); Docker's CLI enables after.
        assert (installed.name, installed.enabled) == ("pyinst:latest", False)
        installed.enable()
        installed.reload()
        assert installed.enabled is True
        installed.disable()
        installed.remove()
    finally:
        client.close()


def test_pluginkit_commands_go_through_the_daemon(
    daemon: DaemonProcess, registry: str, short_tmp: Path
) -> None:
    """pluginkit install/push/upgrade/save/load while the daemon holds the root."""
    context = make_plugin_dir(short_tmp / "ctx")
    ref = f"{registry}/pk/cli:1"
    assert daemon.cli("create", ref, str(context)).returncode == 0
    pushed = daemon.cli("push", "-q", ref)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("sha256:")
    other = daemon.cli("push", ref, f"{registry}/pk/cli:2")
    assert other.stderr.splitlines() == [
        f"The push refers to repository [{registry}/pk/cli]",
        f"2: digest: {other.stderr.split('digest: ')[1].strip()}",
    ]
    assert daemon.cli("rm", ref).returncode == 0
    installed = daemon.cli("install", "--grant-all-permissions", "--alias", "c", ref)
    assert (installed.returncode, installed.stdout) == (0, f"Installed plugin {ref}\n")
    refused = daemon.cli("upgrade", "c", f"{registry}/pk/cli:2")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f'Error: plugin "{registry}/pk/cli:2" requests privileges and there is no terminal'
        " to ask; pass --grant-all-permissions"
    )
    upgraded = daemon.cli("upgrade", "--grant-all-permissions", "c", f"{registry}/pk/cli:2")
    assert upgraded.stdout == f"Upgraded plugin c:latest to {registry}/pk/cli:2\n", upgraded.stderr
    bundle = short_tmp / "c.tar"
    assert daemon.cli("save", "c", "-o", str(bundle)).returncode == 0
    assert bundle.stat().st_size > 0
    loaded = daemon.cli("load", "--grant-all-permissions", "--alias", "c2", str(bundle))
    assert (loaded.returncode, loaded.stdout) == (0, "Loaded plugin c2:latest\n"), loaded.stderr
