"""One SDK server, two plugin names, a real Docker engine: both names reach one driver."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from pluginkit.sdk import VolumeDriver, volume

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SOCKET_DIR = Path("/run/docker/plugins")


class Shared(VolumeDriver):
    """Volumes in memory; every name the engine asks for lands here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []

    def create(self, request: volume.CreateRequest) -> None:
        (self.root / request.name).mkdir()
        self.created.append(request.name)

    def remove(self, request: volume.RemoveRequest) -> None:
        (self.root / request.name).rmdir()

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        return volume.MountResponse(mountpoint=str(self.root / request.name))

    def unmount(self, request: volume.UnmountRequest) -> None:
        return None

    def path(self, request: volume.PathRequest) -> volume.PathResponse:
        return volume.PathResponse(mountpoint=str(self.root / request.name))

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        if not (self.root / request.name).is_dir():
            raise volume.NoSuchVolume(request.name)
        return volume.GetResponse(volume.Volume(name=request.name))

    def list(self) -> volume.ListResponse:
        return volume.ListResponse([volume.Volume(name=p.name) for p in self.root.iterdir()])


def test_engine_uses_both_names_of_one_server(docker_client: Any, tmp_path: Path) -> None:
    """docker volume create -d NAME and -d ALIAS both reach the one driver; activations count."""
    name, alias = (f"pk-alias-{secrets.token_hex(4)}" for _ in range(2))
    driver = Shared(tmp_path)
    server = driver.server(name=name, aliases=[alias])
    server.start(SOCKET_DIR / f"{name}.sock")
    created = []
    try:
        assert (SOCKET_DIR / f"{alias}.sock").is_socket()
        for driver_name, volume_name in ((name, f"{name}-v"), (alias, f"{alias}-v")):
            vol = docker_client.volumes.create(volume_name, driver=driver_name)
            created.append(vol)
            assert (vol.attrs["Driver"], vol.attrs["Name"]) == (driver_name, volume_name)
        assert driver.created == [f"{name}-v", f"{alias}-v"]
        assert server.activations == 2  # the engine activates each name once
    finally:
        for vol in created:
            vol.remove(force=True)
        server.stop()
    assert not (SOCKET_DIR / f"{name}.sock").exists()
    assert not (SOCKET_DIR / f"{alias}.sock").exists()
    assert list(tmp_path.iterdir()) == []
