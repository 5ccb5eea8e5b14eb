"""The example plugin, written with the SDK, as a *managed* plugin of a real Docker engine.

``docker plugin create`` takes the example's config.json (with a propagated
mount, as Docker wants of volume plugins) and a rootfs holding this
machine's Python and pluginkit; the engine runs it in its own plugin
container, and its volumes serve real containers.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.examples.localvolume import plugin_dir
from tests._dockerd import import_busybox_image
from tests._python_rootfs import SITE, build_python_rootfs

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def managed_plugin(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example plugin, created and enabled in the engine under a unique name."""
    context = tmp_path_factory.mktemp("localvolume")
    config = json.loads((plugin_dir() / "config.json").read_text())
    config["PropagatedMount"] = "/data"
    config["Env"] = [
        {"Name": "LOCALVOLUME_ROOT", "Description": "", "Settable": ["value"], "Value": "/data"},
        {"Name": "PYTHONPATH", "Description": "", "Settable": [], "Value": SITE},
        {"Name": "PYTHONDONTWRITEBYTECODE", "Description": "", "Settable": [], "Value": "1"},
    ]
    (context / "config.json").write_text(json.dumps(config))
    build_python_rootfs(context / "rootfs")
    name = f"pk-localvolume-{secrets.token_hex(4)}:latest"
    plugin = docker_client.plugins.create(name, str(context))
    shutil.rmtree(context, ignore_errors=True)
    try:
        plugin.enable(timeout=60)
        yield docker_client.plugins.get(name)
    finally:
        plugin.reload()
        plugin.remove(force=True)


@pytest.fixture
def image(docker_client: Any) -> Iterator[str]:
    tag = f"pk-localvolume-busybox:{secrets.token_hex(4)}"
    import_busybox_image(docker_client, tag, ("sh", "cat"))
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


def test_the_engine_enables_the_sdk_plugin(managed_plugin: Any) -> None:
    """The engine's own checks pass: it runs the plugin and finds its socket."""
    assert managed_plugin.enabled is True
    assert managed_plugin.attrs["Config"]["Interface"]["Socket"] == "localvolume.sock"
    assert managed_plugin.attrs["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]


def test_containers_use_its_volumes(docker_client: Any, managed_plugin: Any, image: str) -> None:
    """A volume of the plugin is created, mounted into two containers in turn, listed, removed."""
    volume = docker_client.volumes.create(
        f"pkdemo-{secrets.token_hex(4)}", driver=managed_plugin.name
    )
    try:
        assert volume.attrs["Driver"] == managed_plugin.name
        write = docker_client.containers.run(
            image,
            ["sh", "-c", "echo kept > /v/file"],
            volumes={volume.name: {"bind": "/v", "mode": "rw"}},
            network_mode="none",
            remove=True,
        )
        assert write == b""
        read = docker_client.containers.run(
            image,
            ["cat", "/v/file"],
            volumes={volume.name: {"bind": "/v", "mode": "ro"}},
            network_mode="none",
            remove=True,
        )
        assert read == b"kept\n"
        listed = docker_client.volumes.list(filters={"driver": managed_plugin.name})
        assert [v.name for v in listed] == [volume.name]
        # Get answers a path inside the plugin's propagated mount, in the
        # plugin's own path space (inspect shows it so); on the host the data
        # is under the plugin's propagated-mount directory.
        volume.reload()
        assert volume.attrs["Mountpoint"] == f"/data/{volume.name}/_data"
        root = docker_client.info()["DockerRootDir"]
        host = Path(root, "plugins", managed_plugin.id, "propagated-mount", volume.name, "_data")
        assert (host / "file").read_text() == "kept\n"
    finally:
        volume.remove(force=True)
    assert docker_client.volumes.list(filters={"driver": managed_plugin.name}) == []
