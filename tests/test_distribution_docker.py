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


@pytest.mark.go
@pytest.mark.slow
def test_upgrade_of_an_enabled_plugin_on_the_docker_runtime(registry: str, short_tmp: Path) -> None:
    """DockerRuntime: the enabled plugin is re-created from the new rootfs and config."""
    import docker

    from pluginkit import Manager
    from pluginkit.runtime import DockerRuntime
    from tests._dockerrt_helpers import CONFIG, remove_docker_leftovers

    v1 = make_plugin_dir(short_tmp / "v1")
    config = json.loads(json.dumps(CONFIG))
    config["Env"][1]["Value"] = "2"  # FIXED: "1" in v1, "2" in v2
    v2 = make_plugin_dir(short_tmp / "v2", config)
    (v2 / "rootfs" / "marker").write_text("v2")
    repo = f"{registry}/team/{unique('dockerup')}"
    m = Manager(
        short_tmp / "root", runtime=DockerRuntime(), run_root=short_tmp / "run", legacy=None
    )
    ids: list[str] = []
    try:
        m.create(f"{repo}:1", v1)
        m.create(f"{repo}:2", v2)
        m.push(f"{repo}:1")
        m.push(f"{repo}:2")
        plugin = m.install(f"{repo}:1", name="live", grant=True)
        ids = [str(p.id) for p in m.list()]
        m.set("live", ["DEBUG=7"])
        m.enable("live", timeout=60)
        assert "FIXED=1" in m.get("live").client.call("Test.Info")["Env"]
        m.upgrade("live", f"{repo}:2", grant=True)
        live = m.get("live")
        assert live.id == plugin.id
        env = live.client.call("Test.Info")["Env"]
        assert "FIXED=2" in env
        assert "DEBUG=7" in env
    finally:
        ids = [str(p.id) for p in m.list()] or ids
        m.shutdown()
        client = docker.from_env()
        try:
            remove_docker_leftovers(client, ids)
        finally:
            client.close()


def test_docker_installs_a_saved_bundle_copied_by_skopeo(
    registry: str, env: Env, tmp_path: Path
) -> None:
    """save -> skopeo copy oci-archive: -> docker plugin install: the bundle is Docker's format."""
    import shutil

    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    m = env.manager()
    m.create("bundled", env.plugin_dir("bundled"))
    bundle = tmp_path / "bundled.tar"
    digest = m.save("bundled", bundle)
    name = f"{registry}/team/{unique('bundle')}:1"
    done = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{bundle}", f"docker://{name}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    try:
        out = _docker("plugin", "install", "--grant-all-permissions", "--disable", name)
        assert f"Digest: {digest}" in out
        info = json.loads(_docker("plugin", "inspect", name))[0]
        assert info["Config"]["Description"] == "test plugin"
    finally:
        subprocess.run(["docker", "plugin", "rm", "-f", name], capture_output=True, check=False)
