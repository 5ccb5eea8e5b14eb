"""``async def`` handlers and driver methods, on the event loop the server owns."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PluginError
from pluginkit.sdk import (
    AuthzPlugin,
    InvalidRequestError,
    IpamDriver,
    LogDriver,
    NetworkDriver,
    PluginServer,
    SecretProvider,
    VolumeDriver,
    authz,
    ipam,
    logdriver,
    network,
    secrets,
    volume,
)
from pluginkit.sdk.logdriver import LogEntry, LogInfo, encode_entry, read_entries
from tests._sdk_helpers import RawClient, wait_for

MODES = pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])


@pytest.fixture
def serve(short_tmp: Path) -> Iterator[Any]:
    """Start a server on a socket of its own; yield a function returning a client for it."""
    servers: list[PluginServer] = []
    clients: list[RawClient] = []

    def start(server: PluginServer) -> RawClient:
        path = short_tmp / f"{len(servers)}.sock"
        server.start(path)
        servers.append(server)
        clients.append(RawClient(path))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


# -- PluginServer -------------------------------------------------------------------


@MODES
def test_async_handler_answers_and_runs_on_the_servers_loop(serve: Any, threads: int) -> None:
    """An async def handler's result is the reply; it runs on server.event_loop."""
    server = PluginServer([], threads=threads)
    loops: list[Any] = []

    @server.handler("Echo")
    async def echo(request: Any) -> Any:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return {"got": request}

    before = server.event_loop
    client = serve(server)
    assert before is None
    assert server.event_loop is not None  # started with the server: an async handler exists
    assert client.call("Echo", [1]).json() == {"got": [1]}
    assert client.call("Echo").json() == {"got": None}
    assert loops == [server.event_loop, server.event_loop]


@MODES
def test_async_handlers_run_concurrently(short_tmp: Path, threads: int) -> None:
    """Two requests on two connections wait on each other: both are answered."""
    server = PluginServer([], threads=threads)
    arrived: list[asyncio.Event] = []

    @server.handler("Meet")
    async def meet(request: Any) -> Any:
        if not arrived:
            arrived.append(asyncio.Event())
            await asyncio.wait_for(arrived[0].wait(), 5)
            return "first"
        arrived[0].set()
        return "second"

    path = short_tmp / "s.sock"
    with server:
        server.start(path)
        with RawClient(path) as one, RawClient(path) as two:
            one.send(one.request_bytes("Meet"))
            wait_for(lambda: bool(arrived))
            assert two.call("Meet").json() == "second"
            assert one.read_reply().json() == "first"


@MODES
def test_async_and_sync_handlers_side_by_side(serve: Any, threads: int) -> None:
    """While an async handler waits, sync handlers on other connections are answered."""
    server = PluginServer([], threads=threads)
    release = threading.Event()

    @server.handler("Slow")
    async def slow(request: Any) -> Any:
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "slow"

    server.add_handler("Fast", lambda request: "fast")
    waiting = serve(server)
    waiting.send(waiting.request_bytes("Slow"))
    assert server.address is not None
    with RawClient(server.address[len("unix://") :]) as other:
        for _ in range(3):
            assert other.call("Fast").json() == "fast"
    release.set()
    assert waiting.read_reply().json() == "slow"


@MODES
def test_async_handler_errors_answer_as_sync_ones_do(
    serve: Any, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """PluginError -> 500, InvalidRequestError -> 400, any other exception -> 500, logged."""
    server = PluginServer([], threads=threads)

    @server.handler("Fail")
    async def fail(request: Any) -> Any:
        await asyncio.sleep(0)
        if request == "plugin":
            raise PluginError("volume v1 is busy")
        if request == "invalid":
            raise InvalidRequestError("Name is required")
        raise KeyError("k")

    client = serve(server)
    with caplog.at_level(logging.ERROR, logger="pluginkit.sdk"):
        replies = [client.call("Fail", kind) for kind in ("plugin", "invalid", "other")]
    assert [(r.status, r.json()) for r in replies] == [
        (500, {"Err": "volume v1 is busy"}),
        (400, {"Err": "Name is required"}),
        (500, {"Err": "'k'"}),
    ]
    assert "handler for Fail raised" in caplog.text
    assert "KeyError: 'k'" in caplog.text  # with its traceback


@MODES
def test_async_replies_of_every_kind(serve: Any, threads: int) -> None:
    """None -> {}, bytes as they are, models converted; pipelined requests stay in order."""
    server = PluginServer([], threads=threads)

    @server.handler("Reply")
    async def reply(request: Any) -> Any:
        await asyncio.sleep(0.01 if request == "none" else 0)
        return {
            "none": None,
            "bytes": b'{"raw":1}',
            "model": volume.MountResponse(mountpoint="/m"),
        }[request]

    client = serve(server)
    client.send(
        b"".join(
            client.request_bytes("Reply", f'"{k}"'.encode()) for k in ("none", "bytes", "model")
        )
    )
    replies = [client.read_reply() for _ in range(3)]
    assert [r.json() for r in replies] == [{}, {"raw": 1}, {"Mountpoint": "/m"}]


def test_async_handler_returning_an_awaitable_is_a_500(serve: Any) -> None:
    """An awaitable that gives another awaitable is a bug in the plugin: 500, named."""
    server = PluginServer([])

    async def inner() -> int:
        return 1

    @server.handler("Twice")
    async def twice(request: Any) -> Any:
        return inner()

    client = serve(server)
    reply = client.call("Twice")
    assert (reply.status, reply.json()) == (
        500,
        {"Err": "Twice: the handler's awaitable returned an awaitable"},
    )


def test_stop_waits_for_async_handlers_then_cancels(short_tmp: Path) -> None:
    """stop() lets an async handler finish within stop_timeout; past it the handler is cancelled."""
    server = PluginServer([], stop_timeout=0.3)
    cancelled = threading.Event()

    @server.handler("Sleep")
    async def sleep(request: Any) -> Any:
        try:
            await asyncio.sleep(request)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "slept"

    path = short_tmp / "s.sock"
    server.start(path)
    with RawClient(path) as quick, RawClient(path) as stuck:
        quick.send(quick.request_bytes("Sleep", b"0.1"))
        stuck.send(stuck.request_bytes("Sleep", b"30"))
        time.sleep(0.05)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert quick.read_reply().json() == "slept"
        assert stuck.closed_by_server()
    assert cancelled.wait(5)
    assert not path.exists()


def test_stop_from_an_async_handler(short_tmp: Path) -> None:
    """An async handler may call stop(): its own reply still goes out, then the server stops."""
    server = PluginServer([])

    @server.handler("Quit")
    async def quit_(request: Any) -> Any:
        server.stop()
        return "bye"

    path = short_tmp / "s.sock"
    server.start(path)
    with RawClient(path) as client:
        assert client.call("Quit").json() == "bye"
    wait_for(lambda: not server.serving)
    assert not path.exists()


def test_event_loop_starts_with_the_first_awaitable(serve: Any) -> None:
    """A sync handler returning a coroutine also works; the loop starts then."""
    server = PluginServer([])

    async def later(value: Any) -> Any:
        return value

    server.add_handler("Later", lambda request: later(request))
    client = serve(server)
    assert server.event_loop is None
    assert client.call("Later", "x").json() == "x"
    assert server.event_loop is not None


# -- typed drivers ------------------------------------------------------------------


class AsyncVolumes(VolumeDriver):
    def __init__(self) -> None:
        self.volumes: dict[str, dict[str, str]] = {}
        self.mounts: dict[str, set[str]] = {}

    async def create(self, request: volume.CreateRequest) -> None:
        await asyncio.sleep(0)
        if request.name in self.volumes:
            raise PluginError(f"volume {request.name} exists")
        self.volumes[request.name] = request.options

    async def remove(self, request: volume.RemoveRequest) -> None:
        self.volumes.pop(request.name)

    async def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.mounts.setdefault(request.name, set()).add(request.id)
        return volume.MountResponse(mountpoint=f"/mnt/{request.name}")

    async def unmount(self, request: volume.UnmountRequest) -> None:
        self.mounts[request.name].discard(request.id)

    async def path(self, request: volume.PathRequest) -> volume.PathResponse:
        mounted = self.mounts.get(request.name)
        return volume.PathResponse(mountpoint=f"/mnt/{request.name}" if mounted else "")

    async def get(self, request: volume.GetRequest) -> volume.GetResponse:
        return volume.GetResponse(volume.Volume(name=request.name, status={"opts": 1}))

    async def list(self) -> volume.ListResponse:
        return volume.ListResponse([volume.Volume(name=n) for n in sorted(self.volumes)])

    async def capabilities(self) -> volume.CapabilitiesResponse:
        return volume.CapabilitiesResponse(volume.Capability(scope="global"))


@MODES
def test_async_volume_driver(serve: Any, threads: int) -> None:
    """Every VolumeDriver endpoint may be async def; replies and errors are the sync ones'."""
    driver = AsyncVolumes()
    server = driver.server(threads=threads)
    client = serve(server)
    assert server.event_loop is not None
    calls = [
        ("VolumeDriver.Create", {"Name": "v1", "Opts": {"a": "b"}}),
        ("VolumeDriver.Create", {"Name": "v1"}),
        ("VolumeDriver.Create", {"Opts": {}}),
        ("VolumeDriver.Mount", {"Name": "v1", "ID": "c1"}),
        ("VolumeDriver.Path", {"Name": "v1"}),
        ("VolumeDriver.Get", {"Name": "v1"}),
        ("VolumeDriver.List", None),
        ("VolumeDriver.Unmount", {"Name": "v1", "ID": "c1"}),
        ("VolumeDriver.Remove", {"Name": "v1"}),
        ("VolumeDriver.Capabilities", None),
    ]
    replies = [client.call(method, body) for method, body in calls]
    assert [(r.status, r.json()) for r in replies] == [
        (200, {}),
        (500, {"Err": "volume v1 exists"}),
        (
            400,
            {"Err": "invalid VolumeDriver.Create request: required field missing @ request.Name"},
        ),
        (200, {"Mountpoint": "/mnt/v1"}),
        (200, {"Mountpoint": "/mnt/v1"}),
        (200, {"Volume": {"Name": "v1", "Status": {"opts": 1}}}),
        (200, {"Volumes": [{"Name": "v1"}]}),
        (200, {}),
        (200, {}),
        (200, {"Capabilities": {"Scope": "global"}}),
    ]
    assert driver.volumes == {}


class AsyncNetwork(NetworkDriver):
    async def create_network(self, request: network.CreateNetworkRequest) -> None:
        await asyncio.sleep(0)

    async def delete_network(self, request: network.DeleteNetworkRequest) -> None:
        raise PluginError(f"network {request.network_id} is in use")

    async def create_endpoint(
        self, request: network.CreateEndpointRequest
    ) -> network.CreateEndpointResponse | None:
        return None

    async def delete_endpoint(self, request: network.DeleteEndpointRequest) -> None:
        return None

    async def join(self, request: network.JoinRequest) -> network.JoinResponse:
        return network.JoinResponse(
            interface_name=network.InterfaceName(src_name="veth0", dst_prefix="eth")
        )

    async def leave(self, request: network.LeaveRequest) -> None:
        return None

    async def get_capabilities(self) -> network.CapabilitiesResponse:
        return network.CapabilitiesResponse(scope="global")


class AsyncIpam(IpamDriver):
    async def request_pool(self, request: ipam.RequestPoolRequest) -> ipam.RequestPoolResponse:
        await asyncio.sleep(0)
        return ipam.RequestPoolResponse(pool_id="p1", pool="10.9.0.0/24")

    async def release_pool(self, request: ipam.ReleasePoolRequest) -> None:
        return None

    async def request_address(
        self, request: ipam.RequestAddressRequest
    ) -> ipam.RequestAddressResponse:
        return ipam.RequestAddressResponse(address="10.9.0.2/24")

    async def release_address(self, request: ipam.ReleaseAddressRequest) -> None:
        raise PluginError(f"address {request.address} is not allocated")


@MODES
def test_async_network_and_ipam_drivers(serve: Any, threads: int) -> None:
    """NetworkDriver and IpamDriver methods may be async def, on one server."""
    server = AsyncNetwork().server(threads=threads)
    AsyncIpam().register(server)
    client = serve(server)
    calls = [
        ("NetworkDriver.GetCapabilities", None),
        ("NetworkDriver.CreateNetwork", {"NetworkID": "n1"}),
        ("NetworkDriver.DeleteNetwork", {"NetworkID": "n1"}),
        ("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "e1", "SandboxKey": "/k"}),
        ("IpamDriver.RequestPool", {"AddressSpace": "local"}),
        ("IpamDriver.RequestAddress", {"PoolID": "p1"}),
        ("IpamDriver.ReleaseAddress", {"PoolID": "p1", "Address": "10.9.0.9"}),
    ]
    replies = [client.call(method, body) for method, body in calls]
    assert [(r.status, r.json()) for r in replies] == [
        (200, {"Scope": "global"}),
        (200, {}),
        (500, {"Err": "network n1 is in use"}),
        (
            200,
            {
                "InterfaceName": {"SrcName": "veth0", "DstPrefix": "eth"},
                "Gateway": "",
                "GatewayIPv6": "",
                "StaticRoutes": [],
                "DisableGatewayService": False,
            },
        ),
        (200, {"PoolID": "p1", "Pool": "10.9.0.0/24", "Data": {}}),
        (200, {"Address": "10.9.0.2/24", "Data": {}}),
        (500, {"Err": "address 10.9.0.9 is not allocated"}),
    ]


class AsyncAuthz(AuthzPlugin):
    async def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        await asyncio.sleep(0)
        if request.request_uri == "/broken":
            return authz.AuthzResponse(allow=True, err="policy store unreachable")
        return authz.AuthzResponse(allow=request.request_uri != "/info", msg="no")

    async def authz_response(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        return authz.AuthzResponse(allow=True)


class AsyncVault(SecretProvider):
    async def get_secret(self, request: secrets.SecretRequest) -> secrets.SecretResponse:
        await asyncio.sleep(0)
        if request.secret_name != "db":
            raise PluginError(f"no secret {request.secret_name!r}")
        return secrets.SecretResponse(value="hunter2")


@MODES
def test_async_authz_and_secret_provider(serve: Any, threads: int) -> None:
    """AuthzPlugin (err -> 500 too) and SecretProvider methods may be async def."""
    server = AsyncAuthz().server(threads=threads)
    AsyncVault().register(server)
    client = serve(server)
    calls = [
        ("AuthZPlugin.AuthZReq", {"RequestUri": "/version"}),
        ("AuthZPlugin.AuthZReq", {"RequestUri": "/info"}),
        ("AuthZPlugin.AuthZReq", {"RequestUri": "/broken"}),
        ("AuthZPlugin.AuthZRes", {"RequestUri": "/version"}),
        ("SecretProvider.GetSecret", {"SecretName": "db"}),
        ("SecretProvider.GetSecret", {"SecretName": "other"}),
    ]
    replies = [client.call(method, body) for method, body in calls]
    assert [(r.status, r.json()) for r in replies] == [
        (200, {"Allow": True, "Msg": "no", "Err": ""}),
        (200, {"Allow": False, "Msg": "no", "Err": ""}),
        (500, {"Allow": True, "Msg": "", "Err": "policy store unreachable"}),
        (200, {"Allow": True, "Msg": "", "Err": ""}),
        (200, {"Value": "aHVudGVyMg==", "DoNotReuse": False}),
        (500, {"Err": "no secret 'other'"}),
    ]


class AsyncCollector(LogDriver):
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, bool]] = []

    async def log(self, info: LogInfo, entry: LogEntry) -> None:
        await asyncio.sleep(0)
        running = asyncio.get_running_loop()
        self.got.append((info.container_id, entry.line, running is not None))

    async def read_logs(self, request: logdriver.ReadLogsRequest) -> list[LogEntry]:
        await asyncio.sleep(0)
        return [LogEntry(source="stdout", line=line + b"\n") for _, line, _ in self.got]


@MODES
def test_async_log_driver(short_tmp: Path, threads: int) -> None:
    """An async log() gets every entry in order; an async read_logs() is streamed."""
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo, 0o700)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    driver = AsyncCollector()
    server = driver.server(threads=threads)
    path = short_tmp / "log.sock"
    try:
        with server:
            server.start(path)
            with RawClient(path) as client:
                start = {"File": str(fifo), "Info": {"ContainerID": "c1"}}
                assert client.call("LogDriver.StartLogging", start).json() == {}
                lines = [b"one", b"two", b"three"]
                os.write(fd, b"".join(encode_entry(LogEntry(line=line)) for line in lines))
                wait_for(lambda: len(driver.got) == 3)
                assert client.call("LogDriver.StopLogging", {"File": str(fifo)}).json() == {}
                wait_for(lambda: driver.following() == [])
                assert client.call("LogDriver.Capabilities").json() == {"Cap": {"ReadLogs": True}}
                reply = client.call("LogDriver.ReadLogs", {"Info": {"ContainerID": "c1"}})
    finally:
        os.close(fd)
    assert driver.got == [("c1", b"one", True), ("c1", b"two", True), ("c1", b"three", True)]
    import io

    assert [e.line for e in read_entries(io.BytesIO(reply.body))] == [
        b"one\n",
        b"two\n",
        b"three\n",
    ]


@MODES
def test_client_that_half_closes_still_gets_its_async_reply(short_tmp: Path, threads: int) -> None:
    """A request, then the client's end-of-file while the handler waits: answered, then closed."""
    server = PluginServer([], threads=threads)

    @server.handler("Slow")
    async def slow(request: Any) -> Any:
        await asyncio.sleep(0.1)
        return "late"

    path = short_tmp / "s.sock"
    with server:
        server.start(path)
        with RawClient(path) as client:
            client.send(client.request_bytes("Slow") + client.request_bytes("Slow"))
            client.sock.shutdown(socket.SHUT_WR)
            replies = [client.read_reply().json() for _ in range(2)]
            assert replies == ["late", "late"]
            assert client.closed_by_server()
