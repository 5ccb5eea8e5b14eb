"""A Docker engine logs a container through a pluginkit LogDriver, and reads it back."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from pluginkit.sdk import LogDriver, logdriver
from tests._dockerd import busybox_image, legacy_plugin
from tests._sdk_helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Keeper(LogDriver):
    """Keeps every entry per container and serves them back to `docker logs`."""

    def __init__(self) -> None:
        self.infos: dict[str, logdriver.LogInfo] = {}
        self.entries: dict[str, list[logdriver.LogEntry]] = {}

    def log(self, info: logdriver.LogInfo, entry: logdriver.LogEntry) -> None:
        self.infos[info.container_id] = info
        self.entries.setdefault(info.container_id, []).append(entry)

    def read_logs(self, request: logdriver.ReadLogsRequest) -> list[logdriver.LogEntry]:
        # The engine prints lines as given: whole lines get back their newline.
        return [
            e if e.partial else attrs.evolve(e, line=e.line + b"\n")
            for e in self.entries.get(request.info.container_id, [])
        ]


@pytest.fixture
def keeper() -> Iterator[tuple[str, Keeper]]:
    driver = Keeper()
    with legacy_plugin(driver, "pk-logs") as name:
        yield name, driver


@pytest.fixture
def image(docker_client: Any) -> Iterator[str]:
    with busybox_image(docker_client, "pk-logs") as tag:
        yield tag


def test_engine_logs_through_the_plugin(
    docker_client: Any, keeper: tuple[str, Keeper], image: str
) -> None:
    """Each line reaches log() with its stream and the container's info; docker logs reads back."""
    import docker

    name, driver = keeper
    container = docker_client.containers.create(
        image,
        ["sh", "-c", "echo hello; echo oops >&2; echo bye"],
        name=f"pk-logs-{secrets.token_hex(4)}",
        log_config=docker.types.LogConfig(type=name, config={"pk-opt": "1"}),
        network_mode="none",
    )
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        # the engine says StopLogging once the container's output is copied
        wait_for(
            lambda: driver.following() == [] and len(driver.entries.get(container.id, [])) == 3
        )
        entries = driver.entries[container.id]
        assert sorted((e.source, e.line) for e in entries) == [
            ("stderr", b"oops"),
            ("stdout", b"bye"),
            ("stdout", b"hello"),
        ]
        stdout = [e.line for e in entries if e.source == "stdout"]
        assert stdout == [b"hello", b"bye"]
        assert all(e.time_nano > 0 and not e.partial for e in entries)
        info = driver.infos[container.id]
        assert info.container_name == f"/{container.name}"
        assert info.container_image_name == image
        assert info.config == {"pk-opt": "1"}
        assert info.container_args == ["-c", "echo hello; echo oops >&2; echo bye"]
        # docker logs: the engine asks ReadLogs (the driver announced it) and prints the lines
        assert container.logs(stdout=True, stderr=False) == b"hello\nbye\n"
        assert container.logs(stdout=False, stderr=True) == b"oops\n"
    finally:
        container.remove(force=True)
