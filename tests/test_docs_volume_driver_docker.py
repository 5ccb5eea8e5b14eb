"""The SDK guide's volume driver, copied from docs/sdk.md, works for a real Docker engine.

The test takes the program as the page shows it, runs it as a legacy plugin
in /run/docker/plugins, and has the engine create a volume, write to it from
a container and remove it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_sdk_docker import busybox_image  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parent.parent
SOCKET_DIR = Path("/run/docker/plugins")

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def guide_volume_driver() -> str:
    """The volume plugin program of docs/sdk.md, exactly as shown."""
    text = (REPO / "docs" / "sdk.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^<!-- test: serves -->\n```python\n(.*?)^```", text, re.M | re.S)
    [program] = [block for block in blocks if "class MyVolumes(VolumeDriver)" in block]
    return program


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture
def served(
    short_tmp: Path, docker_client: Any
) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """The guide's program serving as a legacy volume plugin; its name and volume root."""
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    # The engine remembers every legacy volume driver it used: a few fixed
    # names (one per concurrent run) instead of a new one each time.
    for slot in range(4):
        name = f"pk-guide-test-{slot}"
        if not _listening(SOCKET_DIR / f"{name}.sock"):
            break
    else:
        pytest.skip("every guide test driver name is being served by another run")
    root = short_tmp / "vols"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MYVOL_ROOT": str(root),
        "PLUGINKIT_SOCKET_DIR": str(SOCKET_DIR),
        "PLUGINKIT_SOCKET": f"{name}.sock",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", guide_volume_driver()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=short_tmp,
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening(SOCKET_DIR / f"{name}.sock"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the guide's plugin never listened"
            time.sleep(0.05)
        for leftover in docker_client.volumes.list(filters={"driver": name}):
            leftover.remove(force=True)  # from a run killed before its cleanup
        yield name, root, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def test_guide_volume_driver_create_write_rm(
    served: tuple[str, Path, subprocess.Popen[str]],
    busybox_image: str,  # noqa: F811
    docker_client: Any,
) -> None:
    """docker volume create, a container writing into it, docker volume rm: all succeed."""
    name, root, proc = served
    vol = f"guide-{secrets.token_hex(4)}"
    assert docker_client.volumes.list(filters={"driver": name}) == []  # List before any Create
    container = None
    docker_client.volumes.create(name=vol, driver=name)
    try:
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
        assert (root / vol / "f").read_text() == "written-by-docker\n"
        docker_client.volumes.get(vol).remove()  # the guide's remove() of a written-to volume
        assert not (root / vol).exists()
        assert [v.name for v in docker_client.volumes.list(filters={"driver": name})] == []
    finally:
        if container is not None:
            container.remove(force=True)
        with contextlib.suppress(Exception):
            docker_client.volumes.get(vol).remove(force=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"INFO myvol: volumes in {root}\n" in err  # the program's start line
