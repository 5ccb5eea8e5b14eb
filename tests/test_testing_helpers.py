"""pluginkit.testing helpers: write_plugin_dir, wait_running (hosts) and serve_plugin (plugins)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import (
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    Manager,
    PluginCallError,
    PluginConnectionError,
    PluginError,
    RestartPolicy,
    load_config,
)
from pluginkit.sdk import PluginServer, VolumeDriver, volume
from pluginkit.testing import FakeRuntime, serve_plugin, wait_running, write_plugin_dir


@pytest.fixture
def fake() -> Iterator[FakeRuntime]:
    with FakeRuntime() as rt:
        yield rt


@pytest.fixture
def manager(short_tmp: Path, fake: FakeRuntime) -> Iterator[Manager]:
    with Manager(
        short_tmp / "root",
        runtime=fake,
        run_root=short_tmp / "run",
        legacy=None,
        restart_policy=RestartPolicy(initial_delay=0.05, max_delay=0.05),
    ) as m:
        yield m


def test_write_plugin_dir_defaults(tmp_path: Path) -> None:
    """The default directory is a volume driver with an empty rootfs, which load_config accepts."""
    path = write_plugin_dir(tmp_path / "a" / "vol")
    assert path == tmp_path / "a" / "vol"
    assert list((path / "rootfs").iterdir()) == []
    assert json.loads((path / "config.json").read_text()) == {
        "Description": "a plugin for tests",
        "Entrypoint": ["/plugin"],
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "plugin.sock"},
    }
    cfg = load_config(path / "config.json")
    assert [t.capability for t in cfg.interface.types] == ["volumedriver"]
    assert cfg.interface.socket == "plugin.sock"


def test_write_plugin_dir_arguments_and_config(tmp_path: Path) -> None:
    """The arguments land in config.json; a config key replaces a default key in any case."""
    path = write_plugin_dir(
        str(tmp_path / "net"),
        types=["docker.networkdriver/1.0", "docker.ipamdriver/1.0"],
        socket="net.sock",
        entrypoint=["/bin/net", "--debug"],
        config={
            "description": "mine",
            "Env": [{"Name": "DEBUG", "Value": "0", "Settable": ["value"]}],
        },
    )
    data = json.loads((path / "config.json").read_text())
    assert data == {
        "Entrypoint": ["/bin/net", "--debug"],
        "Interface": {
            "Types": ["docker.networkdriver/1.0", "docker.ipamdriver/1.0"],
            "Socket": "net.sock",
        },
        "description": "mine",
        "Env": [{"Name": "DEBUG", "Value": "0", "Settable": ["value"]}],
    }
    cfg = load_config(path / "config.json")
    assert [t.capability for t in cfg.interface.types] == ["networkdriver", "ipamdriver"]
    assert cfg.description == "mine"


def test_write_plugin_dir_checks_before_writing(tmp_path: Path) -> None:
    """An invalid config raises InvalidConfigError naming the field, and nothing is written."""
    with pytest.raises(InvalidConfigError, match=r"Interface\.Types"):
        write_plugin_dir(tmp_path / "bad", types=())
    assert not (tmp_path / "bad").exists()


def test_write_plugin_dir_is_what_create_takes(
    manager: Manager, fake: FakeRuntime, tmp_path: Path
) -> None:
    """A Manager creates and enables a plugin from it; the fake serves it."""
    fake.set_handlers("vol", {"VolumeDriver.List": lambda request: {"Volumes": []}})
    manager.create("vol", write_plugin_dir(tmp_path / "vol", socket="v.sock"))
    manager.enable("vol")
    plugin = manager.lookup_with_capability("vol", "VolumeDriver")
    assert plugin.client.call("VolumeDriver.List") == {"Volumes": []}
    assert plugin.addr == f"unix://{manager.run_root}/{plugin.id}/v.sock"


def test_wait_running_after_a_crash(manager: Manager, fake: FakeRuntime, tmp_path: Path) -> None:
    """After crash(), lookups fail until the restart; wait_running returns the restarted plugin."""
    fake.set_handlers("vol", {"VolumeDriver.List": lambda request: {"Volumes": []}})
    manager.create("vol", write_plugin_dir(tmp_path / "vol"))
    manager.enable("vol")
    for run in range(2, 5):
        fake.crash("vol")
        with pytest.raises(ErrDisabled, match=r'^plugin "vol" found but not running$'):
            manager.lookup_with_capability("vol", "VolumeDriver")  # the restart takes 50 ms
        plugin = wait_running(manager, "vol")
        assert plugin.name == "vol:latest"
        assert plugin.client.call("VolumeDriver.List") == {"Volumes": []}
        assert fake.started_count("vol") == run


def test_the_manager_has_seen_the_exit_when_crash_returns(
    short_tmp: Path, fake: FakeRuntime, tmp_path: Path
) -> None:
    """When crash() returns, the manager's exit event is out and lookups refuse the plugin."""
    events: list[str] = []
    with Manager(
        short_tmp / "root",
        runtime=fake,
        run_root=short_tmp / "run",
        legacy=None,
        on_event=lambda event: events.append(event.action),
        restart_policy=RestartPolicy(initial_delay=0.01, max_delay=0.01),
    ) as manager:
        manager.create("vol", write_plugin_dir(tmp_path / "vol"))
        manager.enable("vol")
        for _ in range(20):
            del events[:]
            fake.crash("vol")
            assert events == ["exit"]
            with pytest.raises(ErrDisabled):
                manager.lookup_with_capability("vol", "VolumeDriver")
            wait_running(manager, "vol")
            assert events == ["exit", "restart"]


def test_wait_running_waits_for_an_enable(manager: Manager, tmp_path: Path) -> None:
    """A disabled plugin that another thread enables is returned once it runs."""
    manager.create("vol", write_plugin_dir(tmp_path / "vol"))
    timer = threading.Timer(0.05, manager.enable, args=("vol",))
    timer.start()
    try:
        assert wait_running(manager, "vol", "volumedriver").name == "vol:latest"
    finally:
        timer.join()


def test_wait_running_times_out_saying_why(
    manager: Manager, fake: FakeRuntime, tmp_path: Path
) -> None:
    """A plugin that cannot come back raises TimeoutError with the last lookup error."""
    manager.create("vol", write_plugin_dir(tmp_path / "vol"))
    manager.enable("vol")
    fake.fail_start("vol", times=None)
    fake.crash("vol")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        wait_running(manager, "vol", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0
    assert str(info.value) == (
        'plugin vol:latest is not running after 0.2 s: plugin "vol:latest" found but not running'
    )


def test_wait_running_fails_at_once_for_unknown_plugins_and_capabilities(
    manager: Manager, tmp_path: Path
) -> None:
    """An unknown plugin or a capability it lacks raises at once, not after the timeout."""
    manager.create("vol", write_plugin_dir(tmp_path / "vol"))
    manager.enable("vol")
    started = time.monotonic()
    with pytest.raises(ErrNotFound, match=r'^plugin "nope" not found$'):
        wait_running(manager, "nope", timeout=5)
    with pytest.raises(
        ErrInadequateCapability,
        match=r'^plugin "vol:latest" found, but not with "networkdriver" capability$',
    ):
        wait_running(manager, "vol", "NetworkDriver", timeout=5)
    assert time.monotonic() - started < 1.0


def test_wait_running_needs_a_capability_to_look_up(manager: Manager, tmp_path: Path) -> None:
    """A plugin without any capability needs one named: ValueError otherwise."""
    manager.create("odd", write_plugin_dir(tmp_path / "odd", types=["acme.thing/1.0"]))
    with pytest.raises(ValueError, match=r"^plugin odd:latest has no capability to look it up"):
        wait_running(manager, "odd", timeout=5)


class Volumes(VolumeDriver):
    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, request: volume.CreateRequest) -> None:
        if request.name in self.names:
            raise PluginError(f"volume {request.name} exists")
        self.names.append(request.name)

    def list(self) -> volume.ListResponse:
        return volume.ListResponse(volumes=[volume.Volume(name=n) for n in self.names])


def test_serve_plugin_gives_a_client_of_a_driver() -> None:
    """A typed driver is served on a private socket; calls and errors are the engine's view."""
    with serve_plugin(Volumes()) as client:
        assert client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
        assert client.call("VolumeDriver.Create", {"Name": "v1"}) == {}
        with pytest.raises(PluginCallError) as raised:
            client.call("VolumeDriver.Create", {"Name": "v1"})
        assert (raised.value.status, raised.value.message) == (500, "volume v1 exists")
        assert client.call("VolumeDriver.List") == {"Volumes": [{"Name": "v1"}]}
        socket_path = Path(client.addr.removeprefix("unix://"))
        assert socket_path.is_socket()
        assert len(os.fsencode(socket_path)) < 108
    assert not socket_path.parent.exists()
    with pytest.raises(PluginConnectionError) as closed:
        client.call("VolumeDriver.List")
    assert str(closed.value) == (
        f"VolumeDriver.List: cannot call plugin at {client.addr}: client is closed"
    )


def test_serve_plugin_takes_a_plugin_server() -> None:
    """A PluginServer with hand-written handlers is served as it is, and stopped after."""
    server = PluginServer(["authz"])
    server.add_handler("AuthZPlugin.AuthZReq", lambda request: {"Allow": True})
    with serve_plugin(server) as client:
        assert server.serving
        assert client.call("AuthZPlugin.AuthZReq", {"User": "u"}) == {"Allow": True}
    assert not server.serving
