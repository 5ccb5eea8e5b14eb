"""pluginkit's own Client talking to a pluginkit PluginServer (both halves of the protocol)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import Client, PluginCallError, PluginError
from pluginkit.examples.localvolume import LocalVolumeDriver
from pluginkit.sdk import PluginServer


@pytest.fixture(params=[0, 2], ids=["inline", "threads"])
def client(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Client]:
    server = PluginServer(["VolumeDriver"], threads=request.param)
    server.add_handler("Echo", lambda args: args)

    def fail(args: Any) -> Any:
        raise PluginError("volume exists")

    server.add_handler("Fail", fail)
    server.add_handler("Logs", lambda args: iter([b"a\n", b"b\n"]))
    server.add_handler("Size", lambda body: {"size": len(body)}, raw=True)
    server.start(short_tmp / "c.sock")
    assert server.address is not None
    try:
        with Client(server.address, retry_timeout=0) as c:
            yield c
    finally:
        server.stop()


def test_client_call_round_trip(client: Client) -> None:
    """Client.call gets the handshake and an echoed JSON body."""
    assert client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert client.call("Echo", {"Name": "v"}) == {"Name": "v"}


def test_client_sees_err_as_plugin_call_error(client: Client) -> None:
    """A raising handler reaches the Client as PluginCallError with Docker's message."""
    with pytest.raises(PluginCallError) as info:
        client.call("Fail", {})
    assert (info.value.status, info.value.message, str(info.value)) == (
        500,
        "volume exists",
        "Fail: volume exists",
    )


def test_client_unknown_method_404(client: Client) -> None:
    """An unknown method is a PluginCallError with status 404."""
    with pytest.raises(PluginCallError) as info:
        client.call("Nope")
    assert info.value.status == 404


def test_client_stream(client: Client) -> None:
    """Client.stream reads a chunked streamed reply."""
    with client.stream("Logs") as body:
        assert body.read() == b"a\nb\n"


def test_client_send_file(client: Client) -> None:
    """Client.send_file streams a body into a raw handler."""
    assert client.send_file("Size", io.BytesIO(b"x" * 100000)) == {"size": 100000}


def test_client_drives_example_volume_driver(short_tmp: Path) -> None:
    """The example volume driver works end to end through the Client."""
    server = LocalVolumeDriver(short_tmp / "vols").server()
    with server:
        server.start(short_tmp / "lv.sock")
        assert server.address is not None
        with Client(server.address, retry_timeout=0) as c:
            c.call("VolumeDriver.Create", {"Name": "v1", "Opts": None})
            mount = c.call("VolumeDriver.Mount", {"Name": "v1", "ID": "x"})
            assert mount == {"Mountpoint": str(short_tmp / "vols" / "v1" / "_data")}
            assert [v["Name"] for v in c.call("VolumeDriver.List")["Volumes"]] == ["v1"]
