"""Typed protocol clients (pluginkit.clients) against SDK plugins served on real sockets.

Every behaviour runs twice: with the blocking client and with its asyncio twin
over an async caller.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import (
    Client,
    ErrInadequateCapability,
    Plugin,
    PluginCallError,
    PluginError,
    PluginProtocolError,
)
from pluginkit.clients import (
    AsyncAuthzClient,
    AsyncIpamDriverClient,
    AsyncLogDriverClient,
    AsyncNetworkDriverClient,
    AsyncSecretProviderClient,
    AsyncVolumeDriverClient,
    AuthzClient,
    IpamDriverClient,
    LogDriverClient,
    NetworkDriverClient,
    SecretProviderClient,
    VolumeDriverClient,
)
from pluginkit.sdk import PluginServer, authz, ipam, logdriver, network, secrets, volume
from pluginkit.sdk.logdriver import LogEntry, LogInfo, ReadConfig, encode_entry
from pluginkit.testing import serve_plugin
from tests._clients_helpers import KINDS, ThreadAdapter, run, typed
from tests._sdk_helpers import wait_for


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- volumes -------------------------------------------------------------------------


class Volumes(volume.VolumeDriver):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def create(self, request: volume.CreateRequest) -> None:
        self.requests.append(request)
        if request.name == "taken":
            raise PluginError("volume taken exists")

    def remove(self, request: volume.RemoveRequest) -> None:
        self.requests.append(request)

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.requests.append(request)
        return volume.MountResponse(mountpoint=f"/mnt/{request.name}")

    def unmount(self, request: volume.UnmountRequest) -> None:
        self.requests.append(request)

    def path(self, request: volume.PathRequest) -> volume.PathResponse:
        self.requests.append(request)
        return volume.PathResponse()

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        self.requests.append(request)
        return volume.GetResponse(
            volume.Volume(request.name, "/mnt/x", "2024-01-02T03:04:05Z", {"size": 3})
        )

    def list(self) -> volume.ListResponse:
        return volume.ListResponse([volume.Volume("a"), volume.Volume("b", "/mnt/b")])

    def capabilities(self) -> volume.CapabilitiesResponse:
        return volume.CapabilitiesResponse(volume.Capability("global"))


def test_volume_methods_round_trip(kind: str) -> None:
    """Every VolumeDriver method sends the SDK's request model and returns its reply content."""
    driver = Volumes()
    with serve_plugin(driver) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)

        async def body() -> list[Any]:
            return [
                await vols.create("v1", {"size": "1G"}),
                await vols.create("v2"),
                await vols.mount("v1", "c1"),
                await vols.unmount("v1", "c1"),
                await vols.path("v1"),
                await vols.get("v1"),
                await vols.list(),
                await vols.capabilities(),
                await vols.remove("v1"),
            ]

        results = run(body())
    assert results == [
        None,
        None,
        "/mnt/v1",
        None,
        "",
        volume.Volume("v1", "/mnt/x", "2024-01-02T03:04:05Z", {"size": 3}),
        [volume.Volume("a"), volume.Volume("b", "/mnt/b")],
        volume.Capability("global"),
        None,
    ]
    assert driver.requests == [
        volume.CreateRequest("v1", {"size": "1G"}),
        volume.CreateRequest("v2", {}),
        volume.MountRequest("v1", "c1"),
        volume.UnmountRequest("v1", "c1"),
        volume.PathRequest("v1"),
        volume.GetRequest("v1"),
        volume.RemoveRequest("v1"),
    ]


def _recording_server(capability: str, replies: dict[str, Any]) -> tuple[PluginServer, list[Any]]:
    """A plain server that records (method, JSON body) and answers ``replies[method]``."""
    server = PluginServer([capability])
    seen: list[Any] = []
    for method, reply in replies.items():

        def handle(body: Any, method: str = method, reply: Any = reply) -> Any:
            seen.append((method, body))
            return reply

        server.add_handler(method, handle)
    return server, seen


def test_volume_requests_have_dockers_wire_shape(kind: str) -> None:
    """The JSON bodies are the ones Docker's volume proxy sends (``{}`` for List/Capabilities)."""
    server, seen = _recording_server(
        "VolumeDriver",
        {
            f"VolumeDriver.{m}": {}
            for m in ("Create", "Remove", "Unmount", "Path", "List", "Capabilities")
        }
        | {
            "VolumeDriver.Get": {"Volume": {"Name": "v"}},
            "VolumeDriver.Mount": {"Mountpoint": "/m"},
        },
    )
    with serve_plugin(server) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)

        async def body() -> None:
            await vols.create("v", {"o": "1"})
            await vols.remove("v")
            await vols.mount("v", "c")
            await vols.unmount("v", "c")
            await vols.path("v")
            await vols.get("v")
            await vols.list()
            await vols.capabilities()

        run(body())
    assert seen == [
        ("VolumeDriver.Create", {"Name": "v", "Opts": {"o": "1"}}),
        ("VolumeDriver.Remove", {"Name": "v"}),
        ("VolumeDriver.Mount", {"Name": "v", "ID": "c"}),
        ("VolumeDriver.Unmount", {"Name": "v", "ID": "c"}),
        ("VolumeDriver.Path", {"Name": "v"}),
        ("VolumeDriver.Get", {"Name": "v"}),
        ("VolumeDriver.List", {}),
        ("VolumeDriver.Capabilities", {}),
    ]


def test_plugin_error_is_plugin_call_error(kind: str) -> None:
    """A plugin's error reaches the caller as PluginCallError with Docker's text."""
    with serve_plugin(Volumes()) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)
        with pytest.raises(PluginCallError) as info:
            run(vols.create("taken"))
    assert (info.value.status, info.value.method, str(info.value)) == (
        500,
        "VolumeDriver.Create",
        "VolumeDriver.Create: volume taken exists",
    )


def test_err_in_a_200_reply_is_plugin_call_error(kind: str) -> None:
    """A 200 reply with a non-empty Err is an error, as Docker's proxies treat it."""
    server, _ = _recording_server(
        "VolumeDriver", {"VolumeDriver.Mount": {"Mountpoint": "", "Err": "no space left"}}
    )
    with serve_plugin(server) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)
        with pytest.raises(PluginCallError) as info:
            run(vols.mount("v", "c"))
    assert (info.value.status, str(info.value)) == (200, "VolumeDriver.Mount: no space left")


def test_reply_that_does_not_fit_is_protocol_error(kind: str) -> None:
    """A reply that does not fit names the method, the model and the field (Docker's names)."""
    server, _ = _recording_server(
        "VolumeDriver",
        {
            "VolumeDriver.Get": {"Volume": {"Name": 5}},
            "VolumeDriver.List": ["not", "an", "object"],
            "VolumeDriver.Mount": {},
        },
    )
    with serve_plugin(server) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)
        with pytest.raises(PluginProtocolError) as bad_field:
            run(vols.get("v"))
        with pytest.raises(PluginProtocolError) as bad_type:
            run(vols.list())
        with pytest.raises(PluginProtocolError) as missing:
            run(vols.mount("v", "c"))
        addr = client.addr
    assert str(bad_field.value) == (
        f"VolumeDriver.Get: reply from plugin at {addr} does not fit GetResponse: "
        "invalid value for type, expected str (got int) @ reply.Volume.Name"
    )
    assert str(bad_type.value) == (
        f"VolumeDriver.List: reply from plugin at {addr} does not fit ListResponse: "
        "ListResponse expects a JSON object, got list"
    )
    assert str(missing.value) == (
        f"VolumeDriver.Mount: reply from plugin at {addr} does not fit MountResponse: "
        "required field missing @ reply.Mountpoint"
    )


def test_optional_endpoint_missing_gives_dockers_default(kind: str) -> None:
    """404 on Capabilities means local scope; 404 on a required method is an error."""
    server, _ = _recording_server("VolumeDriver", {})
    with serve_plugin(server) as client:
        vols = typed(kind, VolumeDriverClient, AsyncVolumeDriverClient, client)
        assert run(vols.capabilities()) == volume.Capability("local")
        with pytest.raises(PluginCallError) as info:
            run(vols.list())
    assert info.value.status == 404


# -- targets -------------------------------------------------------------------------


def test_targets_plugin_client_and_address() -> None:
    """A Plugin (its client), a Client, or an address (a client made, then closed)."""
    with serve_plugin(Volumes()) as client:
        plugin = Plugin("vols", client.addr, client=client, capabilities=["VolumeDriver"])
        assert VolumeDriverClient(plugin).client is client
        assert VolumeDriverClient(client).client is client
        with VolumeDriverClient(client.addr) as owned:
            assert owned.client is not client
            assert owned.list() == [volume.Volume("a"), volume.Volume("b", "/mnt/b")]
            assert repr(owned) == f"VolumeDriverClient({client.addr!r})"
        with pytest.raises(PluginError, match="closed"):
            owned.list()
        with VolumeDriverClient(client):
            pass
        assert client.call("VolumeDriver.List")  # a client passed in stays open


def test_plugin_without_the_capability_is_refused() -> None:
    """A Plugin lacking the protocol's capability raises ErrInadequateCapability, both kinds."""
    plugin = Plugin("net", "unix:///nowhere.sock", capabilities=["NetworkDriver"])
    with pytest.raises(ErrInadequateCapability) as info:
        VolumeDriverClient(plugin)
    assert str(info.value) == 'plugin "net" found, but not with "volumedriver" capability'
    with pytest.raises(ErrInadequateCapability):
        AsyncVolumeDriverClient(plugin)
    authz_plugin = Plugin("a", "unix:///nowhere.sock", capabilities=["authz"])
    with pytest.raises(ErrInadequateCapability, match='"secretprovider"'):
        SecretProviderClient(authz_plugin)


def test_wrong_target_types() -> None:
    """Anything else is a TypeError naming what is accepted."""
    with pytest.raises(TypeError) as sync_info:
        VolumeDriverClient(42)  # type: ignore[arg-type]
    assert (
        str(sync_info.value) == "VolumeDriverClient takes a Plugin, a Client or an address, not int"
    )
    with pytest.raises(TypeError) as async_info:
        AsyncVolumeDriverClient(42)  # type: ignore[arg-type]
    assert str(async_info.value) == (
        "AsyncVolumeDriverClient takes a Plugin, an AsyncClient or an address, not int"
    )
    with Client("unix:///nowhere.sock") as client, pytest.raises(TypeError) as mixed:
        AsyncVolumeDriverClient(client)  # type: ignore[arg-type]
    assert str(mixed.value) == (
        "AsyncVolumeDriverClient needs an async client; a Client goes to VolumeDriverClient"
    )


def test_async_targets_plugin_and_address() -> None:
    """Async twins: a Plugin lends its async_client; an address makes an AsyncClient (closed)."""
    from pluginkit import AsyncClient

    with serve_plugin(Volumes()) as client:
        plugin = Plugin("vols", client.addr, client=client, capabilities=["VolumeDriver"])

        async def body() -> list[Any]:
            lent = AsyncVolumeDriverClient(plugin)
            async with AsyncVolumeDriverClient(client.addr) as owned:
                listed = await owned.list()
                mountpoint = await lent.mount("v1", "c1")
            with pytest.raises(PluginError, match="closed"):
                await owned.list()
            still = await lent.path("v1")  # the plugin's client stays open
            await plugin.async_client.aclose()
            return [
                lent.client is plugin.async_client,
                isinstance(owned.client, AsyncClient),
                listed,
                mountpoint,
                still,
            ]

        assert run(body()) == [
            True,
            True,
            [volume.Volume("a"), volume.Volume("b", "/mnt/b")],
            "/mnt/v1",
            "",
        ]


def test_async_client_passed_in_is_not_closed() -> None:
    """async with closes only what the typed client made."""
    with serve_plugin(Volumes()) as client:
        adapter = ThreadAdapter(client)

        async def body() -> list[volume.Volume]:
            async with AsyncVolumeDriverClient(adapter) as vols:
                return await vols.list()

        assert run(body()) == [volume.Volume("a"), volume.Volume("b", "/mnt/b")]
    assert adapter.closed is False


def test_async_calls_run_concurrently() -> None:
    """Many coroutines share one async typed client."""
    with serve_plugin(Volumes(), threads=4) as client:
        vols = AsyncVolumeDriverClient(ThreadAdapter(client))

        async def body() -> list[str]:
            return list(await asyncio.gather(*(vols.mount(f"v{i}", "c") for i in range(20))))

        assert run(body()) == [f"/mnt/v{i}" for i in range(20)]


# -- network and IPAM ------------------------------------------------------------------


class Net(network.NetworkDriver):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def get_capabilities(self) -> network.CapabilitiesResponse:
        return network.CapabilitiesResponse("global", "local")

    def create_network(self, request: network.CreateNetworkRequest) -> None:
        self.requests.append(request)

    def delete_network(self, request: network.DeleteNetworkRequest) -> None:
        self.requests.append(request)

    def create_endpoint(
        self, request: network.CreateEndpointRequest
    ) -> network.CreateEndpointResponse:
        self.requests.append(request)
        return network.CreateEndpointResponse(network.EndpointInterface(address="10.0.0.2/24"))

    def endpoint_oper_info(self, request: network.InfoRequest) -> network.InfoResponse:
        return network.InfoResponse({"id": request.endpoint_id})

    def delete_endpoint(self, request: network.DeleteEndpointRequest) -> None:
        self.requests.append(request)

    def join(self, request: network.JoinRequest) -> network.JoinResponse:
        self.requests.append(request)
        return network.JoinResponse(
            interface_name=network.InterfaceName("veth0", "eth"),
            gateway="10.0.0.1",
            static_routes=[network.StaticRoute("10.1.0.0/16", 1)],
        )

    def leave(self, request: network.LeaveRequest) -> None:
        self.requests.append(request)

    def discover_new(self, request: network.DiscoveryNotification) -> None:
        self.requests.append(request)


def test_network_methods_round_trip(kind: str) -> None:
    """NetworkDriver methods send libnetwork's requests and return the SDK's reply models."""
    driver = Net()
    pool = network.IPAMData("s", "10.0.0.0/24", "10.0.0.1/24")
    with serve_plugin(driver) as client:
        net = typed(kind, NetworkDriverClient, AsyncNetworkDriverClient, client)

        async def body() -> list[Any]:
            return [
                await net.get_capabilities(),
                await net.create_network("n1", {"k": "v"}, [pool]),
                await net.allocate_network("n1"),
                await net.create_endpoint("n1", "e1", options={"o": 1}),
                await net.endpoint_oper_info("n1", "e1"),
                await net.join("n1", "e1", "/var/run/netns/x"),
                await net.leave("n1", "e1"),
                await net.discover_new(1, {"Address": "10.0.0.9"}),
                await net.program_external_connectivity("n1", "e1", {"p": 80}),
                await net.revoke_external_connectivity("n1", "e1"),
                await net.delete_endpoint("n1", "e1"),
                await net.free_network("n1"),
                await net.delete_network("n1"),
            ]

        results = run(body())
    assert results == [
        network.CapabilitiesResponse("global", "local"),
        None,
        network.AllocateNetworkResponse(),
        network.CreateEndpointResponse(network.EndpointInterface(address="10.0.0.2/24")),
        network.InfoResponse({"id": "e1"}),
        network.JoinResponse(
            interface_name=network.InterfaceName("veth0", "eth"),
            gateway="10.0.0.1",
            static_routes=[network.StaticRoute("10.1.0.0/16", 1)],
        ),
        *[None] * 7,
    ]
    assert driver.requests == [
        network.CreateNetworkRequest("n1", {"k": "v"}, [pool]),
        network.CreateEndpointRequest("n1", "e1", None, {"o": 1}),
        network.JoinRequest("n1", "e1", "/var/run/netns/x"),
        network.LeaveRequest("n1", "e1"),
        network.DiscoveryNotification(1, {"Address": "10.0.0.9"}),
        network.DeleteEndpointRequest("n1", "e1"),
        network.DeleteNetworkRequest("n1"),
    ]


def test_network_optional_connectivity_calls_tolerate_404(kind: str) -> None:
    """As libnetwork: a plugin without (Program|Revoke)ExternalConnectivity is fine."""
    server, _ = _recording_server("NetworkDriver", {})
    with serve_plugin(server) as client:
        net = typed(kind, NetworkDriverClient, AsyncNetworkDriverClient, client)
        assert run(net.program_external_connectivity("n", "e")) is None
        assert run(net.revoke_external_connectivity("n", "e")) is None
        with pytest.raises(PluginCallError):
            run(net.join("n", "e"))


class Ipam(ipam.IpamDriver):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def request_pool(self, request: ipam.RequestPoolRequest) -> ipam.RequestPoolResponse:
        self.requests.append(request)
        return ipam.RequestPoolResponse("p1", request.pool or "10.9.0.0/24", {"x": "y"})

    def release_pool(self, request: ipam.ReleasePoolRequest) -> None:
        self.requests.append(request)

    def request_address(self, request: ipam.RequestAddressRequest) -> ipam.RequestAddressResponse:
        self.requests.append(request)
        return ipam.RequestAddressResponse("10.9.0.2/24")

    def release_address(self, request: ipam.ReleaseAddressRequest) -> None:
        self.requests.append(request)


def test_ipam_methods_round_trip(kind: str) -> None:
    """IpamDriver methods send the SDK's requests and return its reply models."""
    driver = Ipam()
    with serve_plugin(driver) as client:
        pools = typed(kind, IpamDriverClient, AsyncIpamDriverClient, client)

        async def body() -> list[Any]:
            return [
                await pools.get_capabilities(),
                await pools.get_default_address_spaces(),
                await pools.request_pool("local", "10.8.0.0/16", v6=False, options={"a": "b"}),
                await pools.request_address("p1", options={"mac": "m"}),
                await pools.release_address("p1", "10.9.0.2/24"),
                await pools.release_pool("p1"),
            ]

        results = run(body())
    assert results == [
        ipam.CapabilitiesResponse(),
        ipam.AddressSpacesResponse(),
        ipam.RequestPoolResponse("p1", "10.8.0.0/16", {"x": "y"}),
        ipam.RequestAddressResponse("10.9.0.2/24"),
        None,
        None,
    ]
    assert driver.requests == [
        ipam.RequestPoolRequest("local", "10.8.0.0/16", "", {"a": "b"}),
        ipam.RequestAddressRequest("p1", "", {"mac": "m"}),
        ipam.ReleaseAddressRequest("p1", "10.9.0.2/24"),
        ipam.ReleasePoolRequest("p1"),
    ]


def test_ipam_capabilities_default_on_404(kind: str) -> None:
    """As libnetwork: a plugin without GetCapabilities needs no MAC address."""
    server, _ = _recording_server("IpamDriver", {})
    with serve_plugin(server) as client:
        pools = typed(kind, IpamDriverClient, AsyncIpamDriverClient, client)
        assert run(pools.get_capabilities()) == ipam.CapabilitiesResponse(False)


# -- authz and secrets ----------------------------------------------------------------


class NoExec(authz.AuthzPlugin):
    def __init__(self) -> None:
        self.requests: list[authz.AuthzRequest] = []

    def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        self.requests.append(request)
        if request.request_uri.endswith("/exec"):
            return authz.AuthzResponse(allow=False, msg="exec is not allowed")
        return authz.AuthzResponse(allow=True)


def test_authz_round_trip(kind: str) -> None:
    """AuthZReq/AuthZRes send the whole request (bytes, PEM) and return the verdict."""
    driver = NoExec()
    pem = authz.PEMCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    asked = authz.AuthzRequest(
        user="alice",
        request_method="POST",
        request_uri="/v1.41/containers/x/exec",
        request_body=b"\x00{}",
        request_headers={"Content-Type": "application/json"},
        request_peer_certificates=[pem],
    )
    with serve_plugin(driver) as client:
        checker = typed(kind, AuthzClient, AsyncAuthzClient, client)

        async def body() -> list[Any]:
            return [await checker.authz_request(asked), await checker.authz_response(asked)]

        results = run(body())
    assert results == [
        authz.AuthzResponse(allow=False, msg="exec is not allowed"),
        authz.AuthzResponse(allow=True),
    ]
    assert driver.requests == [asked]


def test_authz_err_is_part_of_the_verdict(kind: str) -> None:
    """An Err in an authz reply is returned (the engine tells it from a denial), not raised."""
    server, _ = _recording_server(
        "authz", {"AuthZPlugin.AuthZReq": {"Allow": False, "Err": "policy store down"}}
    )
    with serve_plugin(server) as client:
        checker = typed(kind, AuthzClient, AsyncAuthzClient, client)
        verdict = run(checker.authz_request(authz.AuthzRequest(user="u")))
    assert verdict == authz.AuthzResponse(allow=False, err="policy store down")


def test_authz_needs_a_request_model(kind: str) -> None:
    """A dict instead of an AuthzRequest is a TypeError before anything is sent."""
    with serve_plugin(NoExec()) as client:
        checker = typed(kind, AuthzClient, AsyncAuthzClient, client)
        with pytest.raises(
            TypeError, match=r"AuthZPlugin\.AuthZReq takes an AuthzRequest, not dict"
        ):
            run(checker.authz_request({"User": "u"}))


class Vault(secrets.SecretProvider):
    def get_secret(self, request: secrets.SecretRequest) -> secrets.SecretResponse:
        if request.secret_name != "db":
            raise PluginError(f"no secret {request.secret_name!r} here")
        return secrets.SecretResponse(value=f"pw-for-{request.service_name}", do_not_reuse=True)


def test_secret_provider_round_trip(kind: str) -> None:
    """GetSecret returns the value as bytes; a refusal is PluginCallError."""
    with serve_plugin(Vault()) as client:
        vault = typed(kind, SecretProviderClient, AsyncSecretProviderClient, client)
        got = run(vault.get_secret(secrets.SecretRequest(secret_name="db", service_name="web")))
        with pytest.raises(PluginCallError) as info:
            run(vault.get_secret(secrets.SecretRequest(secret_name="other")))
    assert got == secrets.SecretResponse(value=b"pw-for-web", do_not_reuse=True)
    assert str(info.value) == "SecretProvider.GetSecret: no secret 'other' here"


# -- logging ----------------------------------------------------------------------------


ENTRIES = [
    LogEntry(source="stdout", time_nano=1_700_000_000_000_000_001, line=b"hello\n"),
    LogEntry(source="stderr", time_nano=2, line=b"oops", partial=True),
]


class Recorder(logdriver.LogDriver):
    def __init__(self) -> None:
        self.got: list[tuple[str, LogEntry]] = []
        self.read_requests: list[logdriver.ReadLogsRequest] = []

    def log(self, info: LogInfo, entry: LogEntry) -> None:
        self.got.append((info.container_id, entry))

    def read_logs(self, request: logdriver.ReadLogsRequest) -> Iterator[LogEntry]:
        self.read_requests.append(request)
        yield from ENTRIES[: request.config.tail or None]


def test_log_driver_follows_a_fifo(kind: str, short_tmp: Path) -> None:
    """start_logging/stop_logging drive the plugin's FIFO reader; capabilities say ReadLogs."""
    driver = Recorder()
    fifo = short_tmp / "c1.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # like the engine: the FIFO is open before StartLogging
    with serve_plugin(driver) as client:
        logs = typed(kind, LogDriverClient, AsyncLogDriverClient, client)
        try:
            assert run(logs.capabilities()) == logdriver.LogCapability(read_logs=True)
            run(logs.start_logging(str(fifo), LogInfo(container_id="c1")))
            for entry in ENTRIES:
                os.write(writer, encode_entry(entry))
            wait_for(lambda: len(driver.got) == 2)
            run(logs.stop_logging(str(fifo)))
        finally:
            os.close(writer)
        wait_for(lambda: driver.following() == [])
        with pytest.raises(PluginCallError, match=r"cannot open the log stream .*missing\.fifo"):
            run(logs.start_logging(str(short_tmp / "missing.fifo")))
    assert driver.got == [("c1", e) for e in ENTRIES]


def test_log_driver_read_logs_streams_entries(short_tmp: Path) -> None:
    """read_logs yields the entries the plugin streams, sync and async."""
    driver = Recorder()
    info = LogInfo(container_id="c1", config={"max-size": "1m"})
    with serve_plugin(driver) as client:
        with LogDriverClient(client).read_logs(info, ReadConfig(tail=1)) as entries:
            sync_got = list(entries)

        async def body() -> list[LogEntry]:
            logs = AsyncLogDriverClient(ThreadAdapter(client))
            async with logs.read_logs(info) as entries:
                return [entry async for entry in entries]

        async_got = run(body())

        async def real() -> list[LogEntry]:
            logs = AsyncLogDriverClient(client.addr)
            try:
                async with logs.read_logs(info, ReadConfig(tail=2)) as entries:
                    return [entry async for entry in entries]
            finally:
                await logs.aclose()

        real_got = run(real())
    assert sync_got == ENTRIES[:1]
    assert async_got == ENTRIES
    assert real_got == ENTRIES
    assert driver.read_requests == [
        logdriver.ReadLogsRequest(
            info=LogInfo(container_id="c1", config={"max-size": "1m"}, container_created=GO_ZERO),
            config=ReadConfig(since=GO_ZERO, until=GO_ZERO, tail=1),
        ),
        logdriver.ReadLogsRequest(
            info=LogInfo(container_id="c1", config={"max-size": "1m"}, container_created=GO_ZERO),
            config=ReadConfig(since=GO_ZERO, until=GO_ZERO),
        ),
        logdriver.ReadLogsRequest(
            info=LogInfo(container_id="c1", config={"max-size": "1m"}, container_created=GO_ZERO),
            config=ReadConfig(since=GO_ZERO, until=GO_ZERO, tail=2),
        ),
    ]


GO_ZERO = "0001-01-01T00:00:00Z"


def test_log_driver_without_read_logs(kind: str) -> None:
    """A plugin without ReadLogs: capabilities say so; read_logs is PluginCallError 404."""
    with serve_plugin(logdriver.LogDriver()) as client:
        logs = typed(kind, LogDriverClient, AsyncLogDriverClient, client)
        assert run(logs.capabilities()) == logdriver.LogCapability(read_logs=False)
        with pytest.raises(PluginCallError) as info, LogDriverClient(client).read_logs(LogInfo()):
            pass
    assert info.value.status == 404


# -- any value goes through unchanged ---------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def test_any_request_and_reply_round_trips() -> None:
    """Whatever names, options and statuses: the driver gets them and the host gets them back."""
    driver = Echoes()
    with serve_plugin(driver) as client:
        vols = VolumeDriverClient(client)

        @settings(max_examples=60, deadline=None)
        @given(name=_TEXT, opts=st.dictionaries(_TEXT, _TEXT, max_size=5), size=st.integers())
        def check(name: str, opts: dict[str, str], size: int) -> None:
            vols.create(name, opts)
            assert driver.created[-1] == volume.CreateRequest(name, opts)
            got = vols.get(name)
            assert got == volume.Volume(name, f"/mnt/{name}", None, {"opts": opts})
            assert vols.mount(name, str(size)) == f"/mnt/{name}/{size}"

        check()


class Echoes(volume.VolumeDriver):
    def __init__(self) -> None:
        self.created: list[volume.CreateRequest] = []

    def create(self, request: volume.CreateRequest) -> None:
        self.created.append(request)

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        opts = self.created[-1].options
        return volume.GetResponse(
            volume.Volume(request.name, f"/mnt/{request.name}", None, {"opts": opts})
        )

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        return volume.MountResponse(f"/mnt/{request.name}/{request.id}")
