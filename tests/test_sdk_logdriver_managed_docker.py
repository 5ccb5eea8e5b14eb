"""A LogDriver written with the SDK as a *managed* Docker plugin: FIFOs in the plugin's space.

For a managed plugin the engine makes each container's FIFO inside the
plugin's rootfs and passes its path as the plugin sees it
(``/run/docker/logging/<id>``); ``docker logs`` then reads back through
``ReadLogs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests._dockerd import busybox_image, managed_plugin
from tests._python_rootfs import SITE, build_python_rootfs
from tests._sdk_helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The plugin: keeps each container's lines in memory, serves them back.
PLUGIN = """
import attrs
from pluginkit.sdk import LogDriver

class Keeper(LogDriver):
    def __init__(self):
        self.lines = {}

    def log(self, info, entry):
        self.lines.setdefault(info.container_id, []).append(entry)

    def read_logs(self, request):
        for entry in self.lines.get(request.info.container_id, []):
            yield attrs.evolve(entry, line=entry.line + b"\\n")

Keeper().server(name="keeper").serve()
"""


@pytest.fixture(scope="module")
def log_plugin(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = tmp_path_factory.mktemp("keeper")
    config = {
        "Description": "pluginkit LogDriver test plugin",
        "Documentation": "https://example.com",
        "Entrypoint": ["/usr/bin/python3", "/keeper.py"],
        "Interface": {"Types": ["docker.logdriver/1.0"], "Socket": "keeper.sock"},
        "Network": {"Type": "none"},
        "Env": [
            {"Name": "PYTHONPATH", "Description": "", "Settable": [], "Value": SITE},
            {"Name": "PYTHONDONTWRITEBYTECODE", "Description": "", "Settable": [], "Value": "1"},
        ],
    }
    (context / "config.json").write_text(json.dumps(config))
    build_python_rootfs(context / "rootfs")
    (context / "rootfs" / "keeper.py").write_text(PLUGIN)
    with managed_plugin(docker_client, context, "pk-keeper") as plugin:
        yield plugin.name


@pytest.fixture
def image(docker_client: Any) -> Iterator[str]:
    with busybox_image(docker_client, "pk-keeper") as tag:
        yield tag


def test_a_managed_log_plugin_logs_and_reads_back(
    docker_client: Any, log_plugin: str, image: str
) -> None:
    """The container's lines reach the plugin through its FIFO; docker logs prints them."""
    import docker

    container = docker_client.containers.create(
        image,
        ["sh", "-c", "echo one; echo two >&2; echo three"],
        log_config=docker.types.LogConfig(type=log_plugin),
        network_mode="none",
    )
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        # The plugin's reader may still be taking the last lines from the FIFO.
        wait_for(lambda: container.logs(stdout=True, stderr=True).count(b"\n") == 3)
        assert container.logs(stdout=True, stderr=False) == b"one\nthree\n"
        assert container.logs(stdout=False, stderr=True) == b"two\n"
    finally:
        container.remove(force=True)
