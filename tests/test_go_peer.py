"""Wire compatibility with Docker's own Go code (pkg/plugins), both directions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _async_adapter import client_kind, parametrize_clients
from _client_helpers import GO_CLIENT, GO_SERVER, GoServer, HTTPPluginServer, echo
from conftest import build_go_program

from pluginkit import Client, LegacyRegistry, PluginCallError

# Building the Go peers takes seconds (minutes with a cold Go cache).
pytestmark = [pytest.mark.go, pytest.mark.slow]

# The calls below run with Client and with AsyncClient (behind the name Client).
pytest_generate_tests = parametrize_clients(
    both=[
        "test_pluginkit_client_calls_go_server",
        "test_pluginkit_client_calls_go_server_over_tcp",
        "test_large_chunked_replies_from_go",
    ]
)
__all__ = ["client_kind"]  # the fixture that puts AsyncClient behind Client


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    workdir = tmp_path_factory.mktemp("go")
    return (
        build_go_program(GO_SERVER, workdir, "goserver"),
        build_go_program(GO_CLIENT, workdir, "goclient"),
    )


@pytest.fixture
def go_server(go_binaries: tuple[Path, Path], short_tmp: Path) -> Iterator[GoServer]:
    server = GoServer(go_binaries[0], [str(short_tmp / "go.sock"), "tcp:127.0.0.1:0"])
    yield server
    server.close()


def go_client(go_binaries: tuple[Path, Path], *args: str) -> str:
    result = subprocess.run(
        [str(go_binaries[1]), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pluginkit_client_calls_go_server(go_server: GoServer, short_tmp: Path):
    """pluginkit's Client talks to a Go net/http plugin server over a unix socket."""
    with Client(f"unix://{short_tmp}/go.sock") as client:
        payload = {"Name": "vol", "Opts": {"size": "1G"}}
        assert client.call("Test.Echo", payload) == payload
        assert client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
        assert client.call("Test.Headers") == {
            "Accept": "application/vnd.docker.plugins.v1.2+json",
            "Host": "plugin.moby.localhost",
            "ContentType": "",
        }
        with pytest.raises(PluginCallError) as info:
            client.call("Test.Err")
        with pytest.raises(PluginCallError) as missing:
            client.call("No.Such")
    assert (info.value.status, str(info.value)) == (500, "Test.Err: boom")
    assert (missing.value.status, missing.value.message) == (404, "404 page not found\n")


def test_pluginkit_client_calls_go_server_over_tcp(go_server: GoServer):
    """The same over TCP, with a host:port Host header."""
    (address,) = go_server.tcp_addresses
    with Client(f"tcp://{address}") as client:
        assert client.call("Test.Echo", [1, "two"]) == [1, "two"]
        assert client.call("Test.Headers")["Host"] == address
        with client.stream("Test.Echo", {"s": 1}) as body:
            assert json.load(body) == {"s": 1}
        assert client.send_file("Test.Echo", b'{"f": 2}') == {"f": 2}


def test_go_client_calls_python_plugin(go_binaries: tuple[Path, Path], short_tmp: Path):
    """Docker's Go client calls a plugin served from Python and reads its JSON."""
    path = short_tmp / "py.sock"
    with HTTPPluginServer(path, {"Test.Echo": echo}) as server:
        out = go_client(go_binaries, "call", f"unix://{path}", "Test.Echo", '{"a": [1, 2]}')
    assert json.loads(out) == {"a": [1, 2]}
    assert server.requests[0].headers["accept"] == "application/vnd.docker.plugins.v1.2+json"


@pytest.fixture
def plugin_dirs(go_binaries: tuple[Path, Path], short_tmp: Path) -> Iterator[tuple[Path, Path]]:
    """Socket and spec dirs with plugins in every form Docker knows, served by Go."""
    sockets, specs = short_tmp / "run", short_tmp / "etc"
    (sockets / "nested").mkdir(parents=True)
    (specs / "deep").mkdir(parents=True)
    elsewhere = short_tmp / "elsewhere"
    elsewhere.mkdir()
    server = GoServer(
        go_binaries[0],
        [
            str(sockets / "alpha.sock"),
            str(sockets / "nested" / "nested.sock"),
            str(elsewhere / "spec.sock"),
            str(elsewhere / "json.sock"),
            str(elsewhere / "deep.sock"),
        ],
    )
    (specs / "byspec.spec").write_text(f"unix://{elsewhere}/spec.sock\n")
    (specs / "byjson.json").write_text(json.dumps({"Addr": f"unix://{elsewhere}/json.sock"}))
    (specs / "deep" / "deep.spec").write_text(f"unix://{elsewhere}/deep.sock")
    yield sockets, specs
    server.close()


def test_scan_agrees_with_go(go_binaries: tuple[Path, Path], plugin_dirs: tuple[Path, Path]):
    """Scan finds the same names, in the same order, as Docker's plugins.Scan."""
    sockets, specs = plugin_dirs
    go_names = json.loads(go_client(go_binaries, "scan", str(sockets), str(specs)))
    with LegacyRegistry([sockets], [specs]) as registry:
        assert registry.scan() == go_names == ["alpha", "nested", "byjson", "byspec", "deep"]


def test_get_agrees_with_go(go_binaries: tuple[Path, Path], plugin_dirs: tuple[Path, Path]):
    """get() resolves every plugin to the address Docker's plugins.Get does, and activates it."""
    sockets, specs = plugin_dirs
    with LegacyRegistry([sockets], [specs]) as registry:
        for name in registry.scan():
            go = json.loads(
                go_client(go_binaries, "get", str(sockets), str(specs), name, "VolumeDriver")
            )
            plugin = registry.get(name, "VolumeDriver")
            assert (plugin.name, plugin.addr) == (go["Name"], go["Addr"])


def test_get_all_agrees_with_go(go_binaries: tuple[Path, Path], plugin_dirs: tuple[Path, Path]):
    """get_all() returns as many plugins as Docker's plugins.GetAll."""
    sockets, specs = plugin_dirs
    _, go_found = go_client(
        go_binaries, "getall", str(sockets), str(specs), "VolumeDriver", "1"
    ).split()
    with LegacyRegistry([sockets], [specs]) as registry:
        assert len(registry.get_all("VolumeDriver")) == int(go_found) == 5


def test_large_chunked_replies_from_go(go_server: GoServer, short_tmp: Path):
    """Go answers big bodies chunked; call() and stream() decode them."""
    payload = {"data": "x" * 300_000, "list": list(range(2000))}
    with Client(f"unix://{short_tmp}/go.sock") as client:
        assert client.call("Test.Echo", payload) == payload
        with client.stream("Test.Echo", payload) as body:
            assert json.load(body) == payload
        assert client.call("Test.Echo", [1]) == [1]
