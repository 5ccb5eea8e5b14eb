"""Manager with DockerRuntime: a real plugin container, end to end."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from _dockerrt_helpers import make_plugin_dir, remove_docker_leftovers, socket_answers

from pluginkit import Manager
from pluginkit.runtime import RuntimeSpec
from pluginkit.runtime.docker import LABEL_ID, DockerRuntime

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


def _labelled(client: Any, plugin_id: str) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": f"{LABEL_ID}={plugin_id}"}))


def _spec(plugin_dir: Path, state_dir: Path, socket_dir: Path) -> RuntimeSpec:
    return RuntimeSpec(
        id=secrets.token_hex(32),
        name="pk-stale:latest",
        rootfs=plugin_dir / "rootfs",
        entrypoint=("/pkplugin",),
        socket_dir=socket_dir,
        socket="pk.sock",
        state_dir=state_dir,
        network="none",
    )


def test_manager_start_removes_containers_of_plugins_its_root_no_longer_has(
    short_tmp: Path,
) -> None:
    """A labelled container of an id unknown to the root goes at start; another root's stays."""
    ctx = make_plugin_dir(short_tmp / "ctx")
    root = short_tmp / "root"
    stale = _spec(ctx, root / "plugins" / ("a" * 64) / "runtime", short_tmp / "s1")
    foreign = _spec(ctx, short_tmp / "other" / "plugins" / ("b" * 64) / "runtime", short_tmp / "s2")
    client = docker.from_env()
    runtime = DockerRuntime()
    try:
        runtime.prepare(stale)
        runtime.prepare(foreign)
        assert len(_labelled(client, stale.id)) == len(_labelled(client, foreign.id)) == 1
        manager = Manager(root, runtime=runtime, run_root=short_tmp / "run", legacy=None)
        try:
            assert _labelled(client, stale.id) == []
            assert len(_labelled(client, foreign.id)) == 1
        finally:
            manager.shutdown()
    finally:
        remove_docker_leftovers(client, [stale.id, foreign.id])
        client.close()


def test_create_prepares_the_container_so_that_enable_only_starts_it(
    manager: Manager, short_tmp: Path
) -> None:
    """After create a stopped container exists; enable starts that very container."""
    runtime = manager.runtime
    assert isinstance(runtime, DockerRuntime)
    plugin = manager.create("pk-manager-prepared", make_plugin_dir(short_tmp / "ctx"))
    client = docker.from_env()
    try:
        created = _labelled(client, str(plugin.id))
        assert [c["State"] for c in created] == ["created"]
        manager.enable("pk-manager-prepared", timeout=60)
        assert runtime.container_id(str(plugin.id)) == created[0]["Id"]
        assert [c["Id"] for c in _labelled(client, str(plugin.id))] == [created[0]["Id"]]
    finally:
        client.close()
