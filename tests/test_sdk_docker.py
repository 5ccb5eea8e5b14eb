"""A real Docker engine using a pluginkit volume driver found in /run/docker/plugins."""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PluginError
from pluginkit.examples.localvolume import LocalVolumeDriver
from pluginkit.sdk import PluginServer, volume

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SOCKET_DIR = Path("/run/docker/plugins")


class RecordingLocalVolumes(LocalVolumeDriver):
    """The example driver, noting the Mount/Unmount calls the engine makes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.calls.append(("mount", request.name))
        return super().mount(request)

    def unmount(self, request: volume.UnmountRequest) -> None:
        self.calls.append(("unmount", request.name))
        super().unmount(request)


def _busybox_tar() -> bytes:
    """A root filesystem with a static busybox as /bin/sh, as a tar for docker import."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type = tarfile.SYMTYPE
        link.linkname = "busybox"
        tar.addfile(link)
        data_dir = tarfile.TarInfo("data")
        data_dir.type = tarfile.DIRTYPE
        data_dir.mode = 0o755
        tar.addfile(data_dir)
    return buf.getvalue()


@pytest.fixture
def busybox_image(docker_client: Any) -> Iterator[str]:
    if not Path("/bin/busybox").is_file():
        pytest.skip("/bin/busybox is missing (apt-get install busybox-static)")
    tag = f"pluginkit-sdk-test:{secrets.token_hex(4)}"
    repository, _, version = tag.partition(":")
    docker_client.api.import_image_from_data(_busybox_tar(), repository=repository, tag=version)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture
def plugin(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, docker_client: Any
) -> Iterator[tuple[str, RecordingLocalVolumes, PluginServer]]:
    monkeypatch.delenv("PLUGINKIT_SOCKET_DIR", raising=False)
    monkeypatch.delenv("PLUGINKIT_SOCKET", raising=False)
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    driver = RecordingLocalVolumes(short_tmp / "vols")
    # The engine never forgets a legacy volume driver it has used: a run killed
    # before its cleanup leaves one whose every lookup then costs ~15 s of
    # retries. A few fixed names (one per concurrent run) keep that to a few,
    # and serving the name again revives the driver the engine remembers.
    for slot in range(4):
        name = f"pk-sdk-test-{slot}"
        server = driver.server(name=name)
        try:
            server.start()  # address None, no env: /run/docker/plugins/<name>.sock
        except PluginError:
            continue  # another run serves this name
        break
    else:
        pytest.skip("every test volume driver name is being served by another run")
    try:
        for leftover in docker_client.volumes.list(filters={"driver": name}):
            leftover.remove(force=True)  # from a run killed before its cleanup
        driver.calls.clear()
        yield name, driver, server
    finally:
        server.stop()
        (SOCKET_DIR / f"{name}.sock").unlink(missing_ok=True)


# The engine keeps every legacy plugin it ever activated, and a volume list
# or a lookup of an unknown volume asks each of them, retrying those whose
# socket is gone for ~15 s apiece (Docker's v1 retry): other tests' plugins,
# stopped long ago, can make this test slow, not wrong.
@pytest.mark.timeout(600)
def test_docker_engine_uses_pluginkit_volume_driver(
    plugin: tuple[str, RecordingLocalVolumes, PluginServer],
    busybox_image: str,
    docker_client: Any,
    short_tmp: Path,
) -> None:
    """docker volume create/run/ls/rm go through the pluginkit driver; the data lands in its dir."""
    name, driver, server = plugin
    assert server.address == f"unix://{SOCKET_DIR / f'{name}.sock'}"
    vol = f"{name}-{secrets.token_hex(4)}"
    container = None
    created = docker_client.volumes.create(name=vol, driver=name)
    try:
        assert created.attrs["Driver"] == name
        container = docker_client.containers.run(
            busybox_image,
            ["sh", "-c", "echo written-by-docker > /data/f"],
            volumes={vol: {"bind": "/data", "mode": "rw"}},
            network_disabled=True,
            detach=True,
        )
        assert container.wait(timeout=120)["StatusCode"] == 0
        container.remove()
        container = None
        data = short_tmp / "vols" / vol / "_data" / "f"
        assert data.read_text() == "written-by-docker\n"
        listed = [v.name for v in docker_client.volumes.list(filters={"driver": name})]
        assert listed == [vol]
        assert ("mount", vol) in driver.calls
        assert ("unmount", vol) in driver.calls
        assert driver.calls.index(("mount", vol)) < driver.calls.index(("unmount", vol))
        docker_client.volumes.get(vol).remove()
        assert not (short_tmp / "vols" / vol).exists()
        assert [v.name for v in docker_client.volumes.list(filters={"driver": name})] == []
    finally:
        if container is not None:
            container.remove(force=True)
        with contextlib.suppress(Exception):
            docker_client.volumes.get(vol).remove(force=True)
