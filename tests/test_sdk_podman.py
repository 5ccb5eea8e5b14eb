"""An SDK volume plugin used by the ``podman`` command: Podman's call pattern, end to end.

Podman activates the plugin before every operation, calls ``Get`` before
``Create`` (a missing volume must answer Docker's ``no such volume``), one
``Get`` per volume for ``ls``, and sends the same mount ID for every
``Mount``/``Unmount``, so mounts are counted, not keyed by ID.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from pluginkit.sdk import VolumeDriver, volume

pytestmark = [pytest.mark.podman, pytest.mark.slow]


class CountingVolumes(VolumeDriver):
    """Volumes are directories under ``root``; mounts are counted per volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[str] = []
        self.mounts: dict[str, int] = {}
        self.lock = threading.Lock()

    def _dir(self, name: str) -> Path:
        path = self.root / name
        if not path.is_dir():
            raise volume.NoSuchVolume(name)
        return path

    def create(self, request: volume.CreateRequest) -> None:
        self.calls.append("Create")
        (self.root / request.name).mkdir()

    def remove(self, request: volume.RemoveRequest) -> None:
        self.calls.append("Remove")
        shutil.rmtree(self._dir(request.name))

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.calls.append("Mount")
        with self.lock:
            self.mounts[request.name] = self.mounts.get(request.name, 0) + 1
        return volume.MountResponse(mountpoint=str(self._dir(request.name)))

    def unmount(self, request: volume.UnmountRequest) -> None:
        self.calls.append("Unmount")
        with self.lock:
            self.mounts[request.name] -= 1

    def path(self, request: volume.PathRequest) -> volume.PathResponse:
        self.calls.append("Path")
        return volume.PathResponse(mountpoint=str(self._dir(request.name)))

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        try:
            path = self._dir(request.name)
        except volume.NoSuchVolume:
            self.calls.append("Get: no such volume")
            raise
        self.calls.append("Get")
        return volume.GetResponse(volume.Volume(name=request.name, mountpoint=str(path)))

    def list(self) -> volume.ListResponse:
        self.calls.append("List")
        names = sorted(p.name for p in self.root.iterdir())
        return volume.ListResponse([volume.Volume(name=n) for n in names])


def test_podman_call_pattern(
    podman_engine: Any, podman_busybox: str, tmp_path: Path, short_tmp: Path
) -> None:
    """create, run -v (twice), ls, inspect and rm through podman; every answer as Podman needs."""
    name = f"pk-sdk-{secrets.token_hex(4)}"
    root = tmp_path / "volumes"
    root.mkdir()
    driver = CountingVolumes(root)
    server = driver.server(name=name)
    sock = short_tmp / f"{name}.sock"
    drop_in = tmp_path / "50-sdk.conf"
    drop_in.write_text(f'[engine.volume_plugins]\n"{name}" = "{sock}"\n')
    config = podman_engine.config_with(drop_in)
    with server:
        server.start(sock)
        podman_engine.podman("volume", "create", "--driver", name, "pkv", config=config)
        assert driver.calls[:2] == ["Get: no such volume", "Create"]
        for text in ("one", "two"):
            out = podman_engine.podman(
                "run", "--rm", "--network", "none", "-v", "pkv:/v", podman_busybox,
                "sh", "-c", f"echo {text} >> /v/file && cat /v/file",
                config=config,
            )  # fmt: skip
        assert out == "one\ntwo\n"
        assert driver.mounts == {"pkv": 0}  # every Mount had its Unmount
        listed = podman_engine.podman("volume", "ls", "--format", "{{.Name}}", config=config)
        assert listed.split() == ["pkv"]
        podman_engine.podman("volume", "rm", "pkv", config=config)
        assert list(root.iterdir()) == []
        # Podman 4.3: Get before Create, one Get per volume for ls and one for rm
        assert driver.calls == [
            "Get: no such volume",
            "Create",
            "Mount",
            "Unmount",
            "Mount",
            "Unmount",
            "Get",
            "Get",
            "Remove",
        ]
        # Activate before nearly every call (7 for these 9 with Podman 4.3)
        assert server.activations >= 7
