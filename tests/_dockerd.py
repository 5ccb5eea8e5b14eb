"""A private Docker engine for tests that must start dockerd with flags of their own.

The engine keeps everything under the test's directory (data root, exec root,
pid file, socket), uses the vfs storage driver and no bridge or iptables, so
it runs beside the machine's own engine without touching it. Legacy plugins
are still found in ``/run/docker/plugins``: that directory is Docker's, not
per engine.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.sdk import Driver
from tests._sdk_helpers import wait_for
from tests.conftest import REQUIRED


@contextlib.contextmanager
def private_dockerd(workdir: Path, *flags: str) -> Iterator[Any]:
    """Run a dockerd of our own with ``flags``; yield a ``docker.DockerClient`` for it."""
    import docker

    dockerd = shutil.which("dockerd")
    if dockerd is None:
        if REQUIRED:
            pytest.fail("PLUGINKIT_REQUIRE_DOCKER=1 but dockerd is not installed", pytrace=False)
        pytest.skip("dockerd is not installed")
    sock = workdir / "d.sock"
    log_path = workdir / "dockerd.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            dockerd,
            *flags,
            f"--host=unix://{sock}",
            f"--data-root={workdir / 'data'}",
            f"--exec-root={workdir / 'x'}",
            f"--pidfile={workdir / 'd.pid'}",
            "--storage-driver=vfs",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = None
    try:
        client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=60)

        def up() -> bool:
            if proc.poll() is not None:
                return True
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(5)
                probe.connect(str(sock))
                probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return probe.recv(64).startswith(b"HTTP/1.0 200")
            except OSError:
                return False
            finally:
                probe.close()

        wait_for(up, timeout=90)
        if proc.poll() is not None:
            log.flush()
            pytest.fail("the private dockerd exited:\n" + log_path.read_text()[-3000:])
        yield client
    finally:
        if client is not None:
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _unmount_under(workdir)
        shutil.rmtree(workdir / "data", ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Undo mounts dockerd left under ``root`` (it bind-mounts its data root onto itself)."""
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4]
            if point == str(root) or point.startswith(f"{root}/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextlib.contextmanager
def busybox_image(engine: Any, prefix: str, tools: tuple[str, ...] = ("sh",)) -> Iterator[str]:
    """Import an image of static busybox with ``tools`` into ``engine``; yield its tag.

    No registry is reachable from the tests, so images are made here. The
    image is removed afterwards.
    """
    tag = f"{prefix}-busybox:{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="pk-img-") as tmp:
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add("/bin/busybox", "bin/busybox")
            for tool in tools:
                link = tarfile.TarInfo(f"bin/{tool}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        repository, _, version = tag.rpartition(":")
        engine.api.import_image_from_file(str(archive), repository=repository, tag=version)
    try:
        yield tag
    finally:
        engine.images.remove(tag, force=True)


@contextlib.contextmanager
def managed_plugin(engine: Any, context: Path, prefix: str) -> Iterator[Any]:
    """``docker plugin create`` from ``context`` (then deleted) and enable; yield the plugin.

    The plugin is removed (forced) afterwards.
    """
    name = f"{prefix}-{secrets.token_hex(4)}:latest"
    plugin = engine.plugins.create(name, str(context))
    shutil.rmtree(context, ignore_errors=True)
    try:
        plugin.enable(timeout=60)
        yield engine.plugins.get(name)
    finally:
        plugin.reload()
        plugin.remove(force=True)


@contextlib.contextmanager
def legacy_plugin(driver: Driver, prefix: str) -> Iterator[str]:
    """Serve ``driver`` where the engine finds legacy plugins; yield the plugin's name."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    server = driver.server(name=name)
    server.start(Path("/run/docker/plugins") / f"{name}.sock")
    try:
        yield name
    finally:
        server.stop()
