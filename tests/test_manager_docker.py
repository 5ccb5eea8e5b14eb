"""Manager with DockerRuntime: a real plugin container, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _dockerrt_helpers import make_plugin_dir, remove_docker_leftovers, socket_answers

from pluginkit import Manager

pytestmark = [pytest.mark.docker, pytest.mark.go, pytest.mark.slow]


@pytest.fixture
def manager(short_tmp: Path) -> Iterator[Manager]:
    from pluginkit.runtime import DockerRuntime

    runtime = DockerRuntime()
    m = Manager(short_tmp / "root", runtime=runtime, run_root=short_tmp / "run", legacy=None)
    ids: list[str] = []
    try:
        yield m
    finally:
        ids = [str(p.id) for p in m.list()]
        m.shutdown()
        import docker

        client = docker.from_env()
        try:
            remove_docker_leftovers(client, ids)
        finally:
            client.close()


def test_a_plugin_container_is_installed_enabled_called_and_removed(
    manager: Manager, short_tmp: Path
) -> None:
    """install -> enable -> lookup -> call -> crash-free disable -> remove, on a real engine."""
    ctx = make_plugin_dir(short_tmp / "ctx")
    required = manager.privileges(ctx)
    assert [p.name for p in required] == ["network", "capabilities"]
    p = manager.install(ctx, name="pk-manager-e2e", grant=required)
    manager.set("pk-manager-e2e", ["DEBUG=1"])
    manager.enable("pk-manager-e2e", timeout=60)
    found = manager.lookup_with_capability("pk-manager-e2e", "VolumeDriver")
    assert found is p
    assert p.client.call("VolumeDriver.List") == {"Volumes": [], "Err": ""}
    socket_path = Path(p.addr.removeprefix("unix://"))
    manager.disable("pk-manager-e2e")
    assert not socket_answers(socket_path)
    manager.remove("pk-manager-e2e")
    assert manager.list() == []
