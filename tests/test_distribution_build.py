"""pluginkit build: an SDK plugin becomes a plugin directory a Docker engine enables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pluginkit import InvalidConfigError
from pluginkit.distribution._build import SITE, build_plugin


def _module(where: Path) -> Path:
    (where / "myplug").mkdir(parents=True)
    (where / "myplug" / "__init__.py").write_text("")
    (where / "myplug" / "__main__.py").write_text(
        "import pluginkit.sdk\nprint('myplug runs on', pluginkit.__version__)\n"
    )
    return where


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("build")
    return build_plugin(
        "myplug",
        tmp / "out",
        source_dir=_module(tmp / "src"),
        types=["docker.volumedriver/1.0"],
    )


def test_config_and_layout(built: Path) -> None:
    """config.json runs the module with the site on PYTHONPATH; the rootfs holds the packages."""
    config = json.loads((built / "config.json").read_text())
    assert config["Entrypoint"] == ["/usr/bin/python3", "-m", "myplug"]
    assert config["Interface"] == {"Types": ["docker.volumedriver/1.0"], "Socket": "myplug.sock"}
    assert {"Name": "PYTHONPATH", "Description": "", "Settable": [], "Value": SITE} in config["Env"]
    handoff = {"Name": "PLUGINKIT_SOCKET_HANDOFF", "Description": "", "Settable": [], "Value": "1"}
    assert handoff in config["Env"]
    site = built / "rootfs" / SITE.lstrip("/")
    assert (site / "myplug" / "__main__.py").is_file()
    assert (site / "pluginkit" / "sdk").is_dir()
    assert os.path.islink(built / "rootfs" / "usr" / "bin" / "python3")
    assert not list(built.parent.glob(".out.building"))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs root")
def test_the_rootfs_runs_the_module_alone(built: Path) -> None:
    """Inside the rootfs (chroot), python3 -m MODULE runs with nothing from the host."""
    config = json.loads((built / "config.json").read_text())
    env = {e["Name"]: e["Value"] for e in config["Env"]}
    done = subprocess.run(
        [shutil.which("chroot") or "chroot", str(built / "rootfs"), *config["Entrypoint"]],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("myplug runs on ")


def test_missing_module_and_existing_dest(tmp_path: Path) -> None:
    """A module that cannot be found, or a destination that exists, is a clear error."""
    with pytest.raises(InvalidConfigError, match="cannot find the plugin's module 'nosuchmod'"):
        build_plugin(
            "nosuchmod", tmp_path / "o", source_dir=tmp_path, types=["docker.volumedriver/1.0"]
        )
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / ".o.building").exists()
    with pytest.raises(InvalidConfigError, match="already exists"):
        build_plugin("myplug", tmp_path, types=["docker.volumedriver/1.0"])
    with pytest.raises(InvalidConfigError, match="interface types"):
        build_plugin("myplug", tmp_path / "p")


@pytest.mark.docker
@pytest.mark.slow
def test_docker_enables_the_built_example(tmp_path: Path) -> None:
    """The SDK example built with its own config.json is created and enabled by dockerd."""
    from pluginkit.examples.localvolume import plugin_dir
    from tests._dockerrt_helpers import unique

    config = json.loads((Path(plugin_dir()) / "config.json").read_text())
    config["PropagatedMount"] = "/data"
    config["Env"] = [
        {"Name": "LOCALVOLUME_ROOT", "Description": "", "Settable": ["value"], "Value": "/data"}
    ]
    out = build_plugin("pluginkit.examples.localvolume", tmp_path / "out", config=config)
    name = unique("pkbuild")
    subprocess.run(["docker", "plugin", "create", name, str(out)], check=True, capture_output=True)
    try:
        done = subprocess.run(
            ["docker", "plugin", "enable", name], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        inspect = subprocess.run(
            ["docker", "plugin", "inspect", name], capture_output=True, text=True, check=True
        )
        assert json.loads(inspect.stdout)[0]["Enabled"] is True
    finally:
        subprocess.run(["docker", "plugin", "rm", "-f", name], capture_output=True, check=False)
