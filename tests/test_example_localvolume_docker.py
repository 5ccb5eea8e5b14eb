"""The example plugin, written with the SDK, as a *managed* plugin of a real Docker engine.

``docker plugin create`` takes the example's config.json (with a propagated
mount, as Docker wants of volume plugins) and a rootfs holding this
machine's Python and pluginkit; the engine runs it in its own plugin
container, and its volumes serve real containers.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.examples.localvolume import plugin_dir
from tests._dockerd import busybox_image, managed_plugin
from tests._python_rootfs import SITE, build_python_rootfs

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def localvolume(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
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
    with managed_plugin(docker_client, context, "pk-localvolume") as plugin:
        yield plugin


@pytest.fixture
def image(docker_client: Any) -> Iterator[str]:
    with busybox_image(docker_client, "pk-localvolume", ("sh", "cat")) as tag:
        yield tag


def test_the_engine_enables_the_sdk_plugin(localvolume: Any) -> None:
    """The engine's own checks pass: it runs the plugin and finds its socket."""
    assert localvolume.enabled is True
    assert localvolume.attrs["Config"]["Interface"]["Socket"] == "localvolume.sock"
    assert localvolume.attrs["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]


def test_containers_use_its_volumes(docker_client: Any, localvolume: Any, image: str) -> None:
    """A volume of the plugin is created, mounted into two containers in turn, listed, removed."""
    volume = docker_client.volumes.create(f"pkdemo-{secrets.token_hex(4)}", driver=localvolume.name)
    try:
        assert volume.attrs["Driver"] == localvolume.name
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
        listed = docker_client.volumes.list(filters={"driver": localvolume.name})
        assert [v.name for v in listed] == [volume.name]
        # Get answers a path inside the plugin's propagated mount, in the
        # plugin's own path space (inspect shows it so); on the host the data
        # is under the plugin's propagated-mount directory.
        volume.reload()
        assert volume.attrs["Mountpoint"] == f"/data/{volume.name}/_data"
        root = docker_client.info()["DockerRootDir"]
        host = Path(root, "plugins", localvolume.id, "propagated-mount", volume.name, "_data")
        assert (host / "file").read_text() == "kept\n"
    finally:
        volume.remove(force=True)
    assert docker_client.volumes.list(filters={"driver": localvolume.name}) == []
