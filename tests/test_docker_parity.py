"""Parity with the Docker engine's own plugin manager, for a Manager on DockerRuntime.

One plugin directory (a real Go plugin server in its rootfs) is created both
with ``docker plugin create`` and with a pluginkit Manager running plugins as
containers; what ``inspect`` shows, the errors of ``set``/``remove`` and the
container the plugin runs in are compared with the engine's.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from _dockerrt_helpers import (
    CONFIG,
    make_plugin_dir,
    remove_docker_leftovers,
    unique,
    wait_until,
)

from pluginkit import (
    InvalidConfigError,
    Manager,
    PluginEnabledError,
    PluginError,
    PluginEvent,
    RestartPolicy,
)
from pluginkit.runtime.docker import LABEL_ID, DockerRuntime

pytestmark = [pytest.mark.docker, pytest.mark.go]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    api = docker.from_env()
    yield api
    api.close()


@pytest.fixture
def plugin_dir(short_tmp: Path) -> Path:
    """A plugin directory with a bind mount, a device, a capability and host networking.

    Its config.json has explicitly empty lists (``"Settable": []``,
    ``"Args": {"Value": []}``), which the engine shows as ``[]``, not ``null``.
    """
    data = short_tmp / "data"
    data.mkdir()
    config = copy.deepcopy(CONFIG)
    config["Network"] = {"Type": "host"}
    config["Linux"]["Capabilities"] = ["CAP_SYS_ADMIN"]
    config["Linux"]["Devices"] = [
        {"Name": "null", "Description": "a device", "Path": "/dev/null", "Settable": ["path"]}
    ]
    config["Mounts"] = [
        {
            "Name": "data",
            "Description": "state",
            "Source": str(data),
            "Destination": "/data",
            "Type": "bind",
            "Options": ["rbind", "rw"],
            "Settable": ["source"],
        }
    ]
    return make_plugin_dir(short_tmp / "plugin", config)


@pytest.fixture
def name() -> str:
    return f"{unique('pkdr-parity')}:latest"


@pytest.fixture
def engine_plugin(client: Any, plugin_dir: Path, name: str) -> Iterator[str]:
    """The plugin created by the engine (``docker plugin create``); removed afterwards."""
    client.plugins.create(name, str(plugin_dir))
    yield name
    client.api.remove_plugin(name, force=True)


class Managers:
    """Makes Managers on DockerRuntime over one root; shuts them down and removes leftovers."""

    def __init__(self, root: Path, run_root: Path, client: Any) -> None:
        self.root, self.run_root, self.client = root, run_root, client
        self.made: list[Manager] = []
        self.events: list[PluginEvent] = []
        self._lock = threading.Lock()

    def new(self, *, live_restore: bool = False) -> Manager:
        manager = Manager(
            self.root,
            runtime=DockerRuntime(),
            run_root=self.run_root,
            live_restore=live_restore,
            legacy=None,
            on_event=self._record,
            restart_policy=RestartPolicy(initial_delay=0.05),
        )
        self.made.append(manager)
        return manager

    def _record(self, event: PluginEvent) -> None:
        with self._lock:
            self.events.append(event)

    def actions(self) -> list[str]:
        with self._lock:
            return [e.action for e in self.events]

    def close(self) -> None:
        ids: list[str] = []
        for manager in reversed(self.made):
            try:
                for plugin in manager.list():
                    ids.append(str(plugin.id))
                    manager.remove(plugin.name, force=True)
            except PluginError:
                pass  # already shut down: a later manager owns the plugins
            manager.shutdown()
        remove_docker_leftovers(self.client, ids)


@pytest.fixture
def managers(short_tmp: Path, client: Any) -> Iterator[Managers]:
    made = Managers(short_tmp / "root", short_tmp / "run", client)
    yield made
    made.close()


def engine_error(call: Any) -> str:
    """Run an engine API call that must fail; return the engine's error message."""
    with pytest.raises(docker.errors.APIError) as info:
        call()
    return str(info.value.explanation)


def engine_set(client: Any, name: str, args: list[str]) -> None:
    # docker-py's configure_plugin takes a dict and cannot send "=x"; send the raw list.
    response = client.api._post_json(client.api._url("/plugins/{0}/set", name), data=args)
    client.api._raise_for_status(response)


def running_containers(client: Any, plugin_id: str) -> list[dict[str, Any]]:
    filters = {"label": f"{LABEL_ID}={plugin_id}", "status": "running"}
    return list(client.api.containers(filters=filters))


def list_volumes(manager: Manager, name: str) -> Any:
    """Call VolumeDriver.List through the plugin's client (the manager closes it)."""
    return manager.get(name).client.call("VolumeDriver.List")


def test_inspect_config_and_settings_equal_the_engines(
    client: Any, engine_plugin: str, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """inspect()["Config"] equals the engine's for every key it shows; Settings are equal."""
    manager = managers.new()
    manager.create(name, plugin_dir)
    engine = client.api.inspect_plugin(engine_plugin)
    ours = manager.inspect(name)
    shown = sorted(set(engine["Config"]) - {"DockerVersion", "rootfs"})
    assert {key: ours["Config"].get(key) for key in shown} == {
        key: engine["Config"][key] for key in shown
    }
    assert ours["Settings"] == engine["Settings"]
    assert (ours["Name"], ours["Enabled"]) == (engine["Name"], engine["Enabled"])


@pytest.mark.parametrize(
    "args",
    [["NOPE=1"], ["FIXED=2"], ["=x"], ["DEBUG.nope=1"]],
    ids=["unknown-setting", "not-settable", "bad-format", "bad-field"],
)
def test_set_errors_carry_the_engines_texts(
    client: Any,
    engine_plugin: str,
    managers: Managers,
    plugin_dir: Path,
    name: str,
    args: list[str],
) -> None:
    """A refused set fails with exactly the engine's message."""
    manager = managers.new()
    manager.create(name, plugin_dir)
    expected = engine_error(lambda: engine_set(client, engine_plugin, args))
    with pytest.raises(InvalidConfigError) as info:
        manager.set(name, args)
    assert str(info.value) == expected


def test_set_and_remove_of_an_enabled_plugin_carry_the_engines_texts(
    client: Any, engine_plugin: str, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """set and remove on an enabled plugin fail with the engine's messages."""
    manager = managers.new()
    manager.create(name, plugin_dir)
    client.api.enable_plugin(engine_plugin, timeout=30)
    manager.enable(name)
    expected_set = engine_error(lambda: engine_set(client, engine_plugin, ["DEBUG=1"]))
    with pytest.raises(PluginError) as set_info:
        manager.set(name, ["DEBUG=1"])
    assert str(set_info.value) == expected_set
    expected_remove = engine_error(lambda: client.api.remove_plugin(engine_plugin))
    with pytest.raises(PluginEnabledError) as remove_info:
        manager.remove(name)
    assert str(remove_info.value) == expected_remove


def test_container_has_the_capabilities_mounts_and_network_of_the_config(
    client: Any, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """The enabled plugin's container has the config's capability, mount, device and network."""
    manager = managers.new()
    plugin = manager.create(name, plugin_dir)
    manager.enable(name)
    (container,) = running_containers(client, str(plugin.id))
    inspect = client.api.inspect_container(container["Id"])
    assert inspect["HostConfig"]["CapAdd"] == ["CAP_SYS_ADMIN"]
    assert inspect["HostConfig"]["NetworkMode"] == "host"
    assert [d["PathOnHost"] for d in inspect["HostConfig"]["Devices"]] == ["/dev/null"]
    mounts = {m["Destination"]: m["Source"] for m in inspect["Mounts"]}
    assert mounts["/data"] == str(plugin_dir.parent / "data")
    assert mounts["/run/docker/plugins"] == str(managers.run_root / str(plugin.id))
    assert list_volumes(manager, name) == {"Volumes": [], "Err": ""}


def test_killed_container_is_restarted_and_callable_again(
    client: Any, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """docker kill of the plugin's container: the Manager restarts it and it answers again."""
    manager = managers.new()
    plugin = manager.create(name, plugin_dir)
    manager.enable(name)
    (container,) = running_containers(client, str(plugin.id))
    client.api.kill(container["Id"])
    wait_until(lambda: managers.actions().count("restart") == 1)
    assert list_volumes(manager, name) == {"Volumes": [], "Err": ""}
    assert managers.actions()[-2:] == ["exit", "restart"]
    assert [c["Id"] for c in running_containers(client, str(plugin.id))] == [container["Id"]]


def test_live_restore_keeps_the_same_container(
    client: Any, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """With live restore, the next manager re-attaches to the running container, unrestarted."""
    first = managers.new(live_restore=True)
    plugin = first.create(name, plugin_dir)
    first.enable(name)
    (before,) = running_containers(client, str(plugin.id))
    started = client.api.inspect_container(before["Id"])["State"]["StartedAt"]
    first.shutdown()
    second = managers.new(live_restore=True)
    (after,) = running_containers(client, str(plugin.id))
    assert after["Id"] == before["Id"]
    assert client.api.inspect_container(after["Id"])["State"]["StartedAt"] == started
    assert second.get(name).enabled is True
    assert list_volumes(second, name) == {"Volumes": [], "Err": ""}


def test_disable_leaves_no_running_container(
    client: Any, managers: Managers, plugin_dir: Path, name: str
) -> None:
    """After disable, no container of the plugin runs."""
    manager = managers.new()
    plugin = manager.create(name, plugin_dir)
    manager.enable(name)
    assert len(running_containers(client, str(plugin.id))) == 1
    manager.disable(name)
    assert running_containers(client, str(plugin.id)) == []


def test_missing_mount_source_leaves_the_plugin_disabled(
    managers: Managers, plugin_dir: Path, name: str
) -> None:
    """A missing mount source fails enable; the plugin stays, disabled, settings kept."""
    manager = managers.new()
    manager.create(name, plugin_dir)
    manager.set(name, ["data.source=/nonexistent/pk-data", "DEBUG=2"])
    with pytest.raises(PluginError) as info:
        manager.enable(name)
    assert 'mount source "/nonexistent/pk-data" of mount "/data"' in str(info.value)
    plugin = manager.get(name)
    assert plugin.enabled is False
    assert "DEBUG=2" in manager.inspect(name)["Settings"]["Env"]


def test_default_manager_runtime_is_docker(short_tmp: Path) -> None:
    """Manager() without a runtime runs plugins on DockerRuntime."""
    manager = Manager(short_tmp / "root", run_root=short_tmp / "run", legacy=None)
    try:
        assert isinstance(manager.runtime, DockerRuntime)
    finally:
        manager.shutdown()


def test_default_manager_without_engine_points_at_process_runtime(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manager() without a runtime and without an engine fails clearly, naming DOCKER_HOST."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/pk-docker.sock")
    with pytest.raises(PluginError) as info:
        Manager(short_tmp / "root", run_root=short_tmp / "run", legacy=None)
    assert str(info.value).startswith(
        "no Docker engine answers at DOCKER_HOST=unix:///nonexistent/pk-docker.sock: "
    )
    assert str(info.value).endswith("pluginkit.runtime.ProcessRuntime()")
    # The root was released: a manager with another runtime can take it.
    monkeypatch.undo()
    Manager(
        short_tmp / "root", run_root=short_tmp / "run", legacy=None, runtime=DockerRuntime()
    ).shutdown()
