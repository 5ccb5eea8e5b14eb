"""The client and legacy registry against pluginkit's own SDK server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _async_adapter import client_kind, parametrize_clients

from pluginkit import Client, LegacyRegistry, PluginCallError, PluginError
from pluginkit.sdk import PluginServer

# The calls below run with Client and with AsyncClient (behind the name Client).
pytest_generate_tests = parametrize_clients(both=["test_client_calls_sdk_server"])
__all__ = ["client_kind"]  # the fixture that puts AsyncClient behind Client


@pytest.fixture
def server() -> Iterator[PluginServer]:
    server = PluginServer(["VolumeDriver"], name="sdkvol")

    @server.handler("VolumeDriver.Create")
    def create(request: Any) -> Any:
        if request["Name"] == "taken":
            raise PluginError("volume taken exists")
        return {}

    @server.handler("Test.Echo")
    def echo(request: Any) -> Any:
        return request

    yield server
    server.stop()


def test_client_calls_sdk_server(server: PluginServer, short_tmp: Path):
    """Client round-trips JSON with a PluginServer; a handler's PluginError is a PluginCallError."""
    server.start(str(short_tmp / "sdkvol.sock"))
    with Client(f"unix://{short_tmp}/sdkvol.sock") as client:
        assert client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
        assert client.call("Test.Echo", {"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}
        assert client.call("VolumeDriver.Create", {"Name": "v"}) == {}
        with pytest.raises(PluginCallError) as info:
            client.call("VolumeDriver.Create", {"Name": "taken"})
    assert (info.value.status, str(info.value)) == (
        500,
        "VolumeDriver.Create: volume taken exists",
    )


def test_registry_finds_sdk_plugins_by_socket_and_spec(server: PluginServer, short_tmp: Path):
    """A PluginServer on a unix socket and another on TCP with a spec file are both found."""
    sockets, specs = short_tmp / "run", short_tmp / "etc"
    sockets.mkdir()
    specs.mkdir()
    server.start(str(sockets / "sdkvol.sock"))
    remote = PluginServer(["NetworkDriver"], name="sdknet")
    remote.start("tcp://127.0.0.1:0", spec_dir=specs)
    try:
        with LegacyRegistry([sockets], [specs]) as registry:
            assert registry.scan() == ["sdkvol", "sdknet"]
            volume = registry.get("sdkvol", "volumedriver")
            assert volume.client.call("Test.Echo", [1]) == [1]
            (network,) = registry.get_all("NetworkDriver")
            assert (network.name, network.addr) == ("sdknet", remote.address)
    finally:
        remote.stop()
