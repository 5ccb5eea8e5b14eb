"""pluginkit as the plugin manager Podman lacks, end to end.

The example volume plugin (written with the SDK) is created, enabled,
disabled and removed by a :class:`~pluginkit.Manager` whose
:class:`~pluginkit.runtime.DockerRuntime` talks to Podman's Docker API; it is
registered in a ``containers.conf`` drop-in, and the ``podman`` command uses
it: ``volume create --driver``, ``run -v``, ``volume rm``. Afterwards nothing
is left: no container, no image, no entry.

Podman, unlike dockerd, does not translate a managed plugin's paths: the
``Mountpoint`` a volume plugin answers must be a host path. The plugin's
volume directory is therefore mounted at the same path inside and outside
its container (see the "Podman hosts" guide).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pluginkit import Manager
from pluginkit.examples.localvolume import plugin_dir
from pluginkit.podman import register
from pluginkit.runtime import DockerRuntime
from pluginkit.runtime.docker import LABEL_ID
from tests._python_rootfs import SITE, build_python_rootfs

pytestmark = [pytest.mark.podman, pytest.mark.slow]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example plugin's directory for Podman, and the host directory of its volumes."""
    context = tmp_path_factory.mktemp("podman-localvolume")
    volumes = tmp_path_factory.mktemp("podman-volumes")
    config = json.loads((plugin_dir() / "config.json").read_text())
    config["Mounts"] = [
        {
            "Name": "volumes",
            "Description": "the volumes, at the same path as on the host",
            "Settable": [],
            "Source": str(volumes),
            "Destination": str(volumes),
            "Type": "bind",
            "Options": ["rbind", "rw"],
        }
    ]
    config["Env"] = [
        {"Name": "LOCALVOLUME_ROOT", "Description": "", "Settable": [], "Value": str(volumes)},
        {"Name": "PYTHONPATH", "Description": "", "Settable": [], "Value": SITE},
        {"Name": "PYTHONDONTWRITEBYTECODE", "Description": "", "Settable": [], "Value": "1"},
    ]
    (context / "config.json").write_text(json.dumps(config))
    build_python_rootfs(context / "rootfs")
    return context, volumes


def test_podman_uses_a_plugin_managed_by_pluginkit(
    podman_engine: Any,
    context: tuple[Path, Path],
    podman_busybox: str,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    """Install, enable, register, use from podman, then disable and remove: nothing is left."""
    plugin_context, volumes = context
    client = podman_engine.client()
    drop_ins = tmp_path / "containers.conf.d"
    manager = Manager(
        tmp_path / "root", runtime=DockerRuntime(client), run_root=short_tmp / "run", legacy=None
    )
    try:
        manager.create("pk-podman-vol", plugin_context)
        manager.enable("pk-podman-vol", timeout=60)
        plugin = manager.get("pk-podman-vol")
        assert plugin.stable_address is not None
        socket = plugin.stable_address.removeprefix("unix://")

        drop_in = register(manager, drop_ins)
        assert f'"pk-podman-vol" = "{socket}"' in drop_in.read_text()
        config = podman_engine.config_with(drop_in)

        podman_engine.podman("volume", "create", "--driver", "pk-podman-vol", "pkv", config=config)
        inspect = json.loads(podman_engine.podman("volume", "inspect", "pkv", config=config))
        assert inspect[0]["Driver"] == "pk-podman-vol"
        # Podman asks the plugin for the path only when it mounts the volume.
        assert (inspect[0]["Name"], inspect[0]["Mountpoint"]) == ("pkv", "")
        out = podman_engine.podman(
            "run", "--rm", "--network", "none", "-v", "pkv:/v", podman_busybox,
            "sh", "-c", "echo kept > /v/file && cat /v/file",
            config=config,
        )  # fmt: skip
        assert out == "kept\n"
        assert (volumes / "pkv" / "_data" / "file").read_text() == "kept\n"
        listed = podman_engine.podman("volume", "ls", "--format", "{{.Name}}", config=config)
        assert listed.split() == ["pkv"]
        podman_engine.podman("volume", "rm", "pkv", config=config)
        assert not (volumes / "pkv").exists()

        manager.disable("pk-podman-vol")
        assert not register(manager, drop_ins).exists()
        plugin_id = plugin.id
        manager.remove("pk-podman-vol")
    finally:
        manager.shutdown()
        client.close()
    check = podman_engine.client()
    try:
        label = {"label": f"{LABEL_ID}={plugin_id}"}
        assert check.api.containers(all=True, filters=label) == []
        assert check.api.images(filters=label) == []
    finally:
        check.close()
    assert list(drop_ins.iterdir()) == []
