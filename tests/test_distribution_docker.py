"""Interop with a real Docker engine through a real registry, in both directions."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._dockerrt_helpers import make_plugin_dir, raw_call, unique
from tests._manager_helpers import Env
from tests._registry import run_registry

pytestmark = [pytest.mark.registry, pytest.mark.docker]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain-HTTP registry on localhost (Docker treats 127.0.0.0/8 as insecure)."""
    with run_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


def _docker(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def _tree(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o777)
            else:
                out[rel] = ("dir",)
    return out


def test_pluginkit_installs_what_docker_pushed(registry: str, env: Env, tmp_path: Path) -> None:
    """docker plugin create + push, then pluginkit install: same config, same rootfs."""
    src = tmp_path / "ctx"
    src.mkdir()
    (src / "rootfs" / "bin").mkdir(parents=True)
    (src / "rootfs" / "bin" / "tool").write_bytes(os.urandom(3000))
    (src / "rootfs" / "bin" / "tool").chmod(0o750)
    os.symlink("bin/tool", src / "rootfs" / "tool")
    config = {
        "Description": "made by docker",
        "Documentation": "",
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
        "Entrypoint": ["/bin/tool"],
        "Network": {"Type": "host"},
        "Linux": {"Capabilities": ["CAP_SYS_ADMIN"]},
        "Env": [{"Name": "DEBUG", "Settable": ["value"], "Value": "0"}],
    }
    (src / "config.json").write_text(json.dumps(config))
    name = f"{registry}/team/{unique('fromdocker')}:1"
    _docker("plugin", "create", name, str(src))
    try:
        _docker("plugin", "push", name)
        docker_config = json.loads(_docker("plugin", "inspect", name))[0]["Config"]
    finally:
        _docker("plugin", "rm", "-f", name)
    m = env.manager()
    privileges = m.privileges(name)
    assert [(p.name, p.value) for p in privileges] == [
        ("network", ("host",)),
        ("capabilities", ("CAP_SYS_ADMIN",)),
    ]
    plugin = m.install(name, grant=privileges)
    info = m.inspect(plugin.name)
    assert info["Config"]["Description"] == "made by docker"
    assert info["Config"]["rootfs"] == docker_config["rootfs"]
    assert info["Config"]["DockerVersion"] == docker_config["DockerVersion"]
    assert info["PluginReference"] == name
    assert _tree(env.root / "plugins" / plugin.id / "rootfs") == _tree(src / "rootfs")


@pytest.mark.go
def test_docker_installs_and_enables_what_pluginkit_pushed(
    registry: str, env: Env, tmp_path: Path
) -> None:
    """pluginkit push, then docker plugin install + enable + a call through the engine."""
    m = env.manager()
    name = f"{registry}/team/{unique('frompk')}:1"
    m.create(name, make_plugin_dir(tmp_path / "ctx"))
    digest = m.push(name)
    try:
        out = _docker("plugin", "install", "--grant-all-permissions", name)
        assert f"Digest: {digest}" in out
        info = json.loads(_docker("plugin", "inspect", name))[0]
        assert info["Enabled"] is True
        _docker("volume", "ls")  # the engine calls VolumeDriver.List on it
        sock = Path("/run/docker/plugins") / info["Id"] / "pk.sock"
        assert raw_call(sock, "Test.Info")["Args"] == ["/pkplugin"]
    finally:
        subprocess.run(["docker", "plugin", "rm", "-f", name], capture_output=True, check=False)
