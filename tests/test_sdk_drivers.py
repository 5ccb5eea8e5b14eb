"""Typed drivers: Docker's JSON in, attrs models to the methods, Docker's JSON out."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import PluginError
from pluginkit.sdk import (
    AuthzPlugin,
    IpamDriver,
    NetworkDriver,
    PluginServer,
    SecretProvider,
    VolumeDriver,
    authz,
    converter,
    ipam,
    logdriver,
    network,
    secrets,
    volume,
)
from tests._sdk_helpers import RawClient


class RecordingVolumes(VolumeDriver):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def create(self, request: volume.CreateRequest) -> None:
        self.calls.append(request)
        if request.name == "exists":
            raise PluginError("volume exists")

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.calls.append(request)
        return volume.MountResponse(mountpoint=f"/mnt/{request.name}")

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        return volume.GetResponse(volume=volume.Volume(name=request.name, status={"a": 1}))

    def list(self) -> volume.ListResponse:
        return volume.ListResponse(volumes=[volume.Volume(name="v1", mountpoint="/mnt/v1")])


@pytest.fixture
def serve(short_tmp: Path) -> Iterator[Any]:
    servers: list[PluginServer] = []
    clients: list[RawClient] = []

    def start(server: PluginServer) -> RawClient:
        server.start(short_tmp / f"{len(servers)}.sock")
        servers.append(server)
        assert server.address is not None
        clients.append(RawClient.for_url(server.address))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def test_volume_activate_implements(serve: Any) -> None:
    """A VolumeDriver's server announces VolumeDriver."""
    c = serve(RecordingVolumes().server())
    assert c.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}


def test_volume_create_gets_typed_request(serve: Any) -> None:
    """Create receives a CreateRequest built from Name/Opts and answers {}."""
    driver = RecordingVolumes()
    c = serve(driver.server())
    reply = c.call("VolumeDriver.Create", {"Name": "v1", "Opts": {"size": "1G"}})
    assert (reply.status, reply.json()) == (200, {})
    assert driver.calls == [volume.CreateRequest(name="v1", options={"size": "1G"})]


def test_volume_null_opts_accepted(serve: Any) -> None:
    """ "Opts": null (as the engine sends) becomes an empty dict."""
    driver = RecordingVolumes()
    c = serve(driver.server())
    assert c.call("VolumeDriver.Create", {"Name": "v1", "Opts": None}).status == 200
    assert driver.calls == [volume.CreateRequest(name="v1", options={})]


def test_volume_missing_opts_accepted(serve: Any) -> None:
    """A request without Opts is accepted."""
    driver = RecordingVolumes()
    c = serve(driver.server())
    assert c.call("VolumeDriver.Create", {"Name": "v1"}).status == 200
    assert driver.calls == [volume.CreateRequest(name="v1", options={})]


def test_volume_error_is_err_500(serve: Any) -> None:
    """A driver method raising answers 500 {"Err": message}."""
    c = serve(RecordingVolumes().server())
    reply = c.call("VolumeDriver.Create", {"Name": "exists"})
    assert (reply.status, reply.json()) == (500, {"Err": "volume exists"})


def test_volume_mount_reply_uses_docker_names(serve: Any) -> None:
    """Mount gets Name and ID, and its reply is {"Mountpoint": ...}."""
    driver = RecordingVolumes()
    c = serve(driver.server())
    reply = c.call("VolumeDriver.Mount", {"Name": "v1", "ID": "abc123"})
    assert reply.json() == {"Mountpoint": "/mnt/v1"}
    assert driver.calls == [volume.MountRequest(name="v1", id="abc123")]


def test_volume_get_and_list_shapes(serve: Any) -> None:
    """Get and List answer Docker's Volume shape, leaving out fields that are None."""
    c = serve(RecordingVolumes().server())
    assert c.call("VolumeDriver.Get", {"Name": "v2"}).json() == {
        "Volume": {"Name": "v2", "Status": {"a": 1}}
    }
    assert c.call("VolumeDriver.List").json() == {
        "Volumes": [{"Name": "v1", "Mountpoint": "/mnt/v1"}]
    }


def test_volume_capabilities_default_local(serve: Any) -> None:
    """Capabilities not overridden answers {"Capabilities": {"Scope": "local"}}."""
    c = serve(RecordingVolumes().server())
    assert c.call("VolumeDriver.Capabilities").json() == {"Capabilities": {"Scope": "local"}}


def test_volume_unimplemented_required_is_404(serve: Any) -> None:
    """A required endpoint the subclass does not implement answers 404."""
    c = serve(RecordingVolumes().server())
    assert c.call("VolumeDriver.Remove", {"Name": "v1"}).status == 404


def test_volume_bad_request_is_400(serve: Any) -> None:
    """A request missing a required field answers 400 saying which."""
    c = serve(RecordingVolumes().server())
    reply = c.call("VolumeDriver.Mount", {"ID": "x"})
    assert reply.status == 400
    assert reply.json() == {
        "Err": "invalid VolumeDriver.Mount request: required field missing @ request.Name"
    }


def test_implemented_lists_served_methods() -> None:
    """implemented() names the endpoints the driver serves."""
    assert RecordingVolumes().implemented() == [
        "VolumeDriver.Create",
        "VolumeDriver.Mount",
        "VolumeDriver.Get",
        "VolumeDriver.List",
        "VolumeDriver.Capabilities",
    ]


class Bridge(NetworkDriver):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def create_network(self, request: network.CreateNetworkRequest) -> None:
        self.calls.append(request)

    def delete_network(self, request: network.DeleteNetworkRequest) -> None:
        self.calls.append(request)

    def create_endpoint(
        self, request: network.CreateEndpointRequest
    ) -> network.CreateEndpointResponse:
        self.calls.append(request)
        return network.CreateEndpointResponse(
            interface=network.EndpointInterface(mac_address="02:42:ac:11:00:02")
        )

    def delete_endpoint(self, request: network.DeleteEndpointRequest) -> None:
        self.calls.append(request)

    def join(self, request: network.JoinRequest) -> network.JoinResponse:
        self.calls.append(request)
        return network.JoinResponse(
            interface_name=network.InterfaceName(src_name="veth1", dst_prefix="eth"),
            gateway="10.0.0.1",
            static_routes=[network.StaticRoute(destination="10.1.0.0/16", route_type=1)],
        )

    def leave(self, request: network.LeaveRequest) -> None:
        self.calls.append(request)


def test_network_create_network_fields(serve: Any) -> None:
    """CreateNetwork decodes NetworkID, Options and IPv4Data/IPv6Data (null included)."""
    driver = Bridge()
    c = serve(driver.server())
    body = {
        "NetworkID": "n1",
        "Options": {"com.docker.network.generic": {"mtu": "1400"}},
        "IPv4Data": [
            {
                "AddressSpace": "LocalDefault",
                "Pool": "10.0.0.0/24",
                "Gateway": "10.0.0.1/24",
                "AuxAddresses": None,
            }
        ],
        "IPv6Data": None,
    }
    assert c.call("NetworkDriver.CreateNetwork", body).json() == {}
    assert driver.calls == [
        network.CreateNetworkRequest(
            network_id="n1",
            options={"com.docker.network.generic": {"mtu": "1400"}},
            ipv4_data=[
                network.IPAMData(
                    address_space="LocalDefault", pool="10.0.0.0/24", gateway="10.0.0.1/24"
                )
            ],
        )
    ]


def test_network_create_endpoint_reply(serve: Any) -> None:
    """CreateEndpoint decodes Interface and answers Interface with Docker's names."""
    driver = Bridge()
    c = serve(driver.server())
    body = {
        "NetworkID": "n1",
        "EndpointID": "e1",
        "Interface": {"Address": "10.0.0.2/24", "AddressIPv6": "", "MacAddress": ""},
        "Options": None,
    }
    assert c.call("NetworkDriver.CreateEndpoint", body).json() == {
        "Interface": {"Address": "", "AddressIPv6": "", "MacAddress": "02:42:ac:11:00:02"}
    }
    assert driver.calls[0].interface == network.EndpointInterface(address="10.0.0.2/24")


def test_network_join_reply_shape(serve: Any) -> None:
    """Join answers InterfaceName, Gateway and StaticRoutes as libnetwork expects."""
    c = serve(Bridge().server())
    body = {
        "NetworkID": "n1",
        "EndpointID": "e1",
        "SandboxKey": "/var/run/docker/netns/x",
        "Options": {},
    }
    assert c.call("NetworkDriver.Join", body).json() == {
        "InterfaceName": {"SrcName": "veth1", "DstPrefix": "eth"},
        "Gateway": "10.0.0.1",
        "GatewayIPv6": "",
        "StaticRoutes": [{"Destination": "10.1.0.0/16", "RouteType": 1, "NextHop": ""}],
        "DisableGatewayService": False,
    }


def test_network_optional_defaults(serve: Any) -> None:
    """Optional network endpoints answer Docker's defaults when not overridden."""
    c = serve(Bridge().server())
    assert c.call("NetworkDriver.GetCapabilities").json() == {"Scope": "local"}
    ids = {"NetworkID": "n1", "EndpointID": "e1"}
    assert c.call("NetworkDriver.EndpointOperInfo", ids).json() == {"Value": {}}
    assert c.call("NetworkDriver.ProgramExternalConnectivity", ids).json() == {}
    assert c.call("NetworkDriver.RevokeExternalConnectivity", ids).json() == {}
    assert (
        c.call("NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {}}).json() == {}
    )
    assert c.call("NetworkDriver.AllocateNetwork", {"NetworkID": "n1"}).json() == {"Options": {}}
    assert c.call("NetworkDriver.FreeNetwork", {"NetworkID": "n1"}).json() == {}


class Pools(IpamDriver):
    def request_pool(self, request: ipam.RequestPoolRequest) -> ipam.RequestPoolResponse:
        return ipam.RequestPoolResponse(pool_id="p1", pool=request.pool or "10.9.0.0/24")

    def release_pool(self, request: ipam.ReleasePoolRequest) -> None:
        pass

    def request_address(self, request: ipam.RequestAddressRequest) -> ipam.RequestAddressResponse:
        return ipam.RequestAddressResponse(address="10.9.0.2/24")

    def release_address(self, request: ipam.ReleaseAddressRequest) -> None:
        pass


def test_ipam_endpoints(serve: Any) -> None:
    """IPAM calls use PoolID/Address names; capabilities and address spaces have defaults."""
    c = serve(Pools().server())
    assert c.call("Plugin.Activate").json() == {"Implements": ["IpamDriver"]}
    assert c.call("IpamDriver.GetCapabilities").json() == {"RequiresMACAddress": False}
    assert c.call("IpamDriver.GetDefaultAddressSpaces").json() == {
        "LocalDefaultAddressSpace": "LocalDefault",
        "GlobalDefaultAddressSpace": "GlobalDefault",
    }
    body = {"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "", "Options": None, "V6": False}
    assert c.call("IpamDriver.RequestPool", body).json() == {
        "PoolID": "p1",
        "Pool": "10.9.0.0/24",
        "Data": {},
    }
    assert c.call("IpamDriver.RequestAddress", {"PoolID": "p1", "Address": ""}).json() == {
        "Address": "10.9.0.2/24",
        "Data": {},
    }
    assert c.call("IpamDriver.ReleaseAddress", {"PoolID": "p1", "Address": "10.9.0.2"}).json() == {}


def test_network_and_ipam_share_one_server(serve: Any) -> None:
    """register() puts two drivers on one server; Activate lists both."""
    server = Bridge().server()
    Pools().register(server)
    c = serve(server)
    assert c.call("Plugin.Activate").json() == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert c.call("IpamDriver.RequestAddress", {"PoolID": "p1"}).status == 200


class NoExec(AuthzPlugin):
    def __init__(self) -> None:
        self.seen: list[authz.AuthzRequest] = []

    def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        self.seen.append(request)
        if request.request_uri.endswith("/exec"):
            return authz.AuthzResponse(allow=False, msg="exec is not allowed")
        return authz.AuthzResponse(allow=True)


def test_authz_request_decoding_and_verdict(serve: Any) -> None:
    """AuthZReq decodes RequestUri, UserAuthNMethod and base64 bodies; replies Allow/Msg/Err."""
    plugin = NoExec()
    c = serve(plugin.server())
    assert c.call("Plugin.Activate").json() == {"Implements": ["authz"]}
    body = {
        "User": "alice",
        "UserAuthNMethod": "TLS",
        "RequestMethod": "POST",
        "RequestUri": "/v1.41/containers/x/exec",
        "RequestBody": base64.b64encode(b'{"Cmd": ["sh"]}').decode(),
        "RequestHeaders": {"Content-Type": "application/json"},
        "RequestPeerCertificates": None,
    }
    assert c.call("AuthZPlugin.AuthZReq", body).json() == {
        "Allow": False,
        "Msg": "exec is not allowed",
        "Err": "",
    }
    seen = plugin.seen[0]
    assert (seen.user, seen.user_authn_method, seen.request_body) == (
        "alice",
        "TLS",
        b'{"Cmd": ["sh"]}',
    )
    assert c.call("AuthZPlugin.AuthZRes", {"RequestUri": "/info"}).json() == {
        "Allow": True,
        "Msg": "",
        "Err": "",
    }


class Broken(AuthzPlugin):
    def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        return authz.AuthzResponse(allow=True, err="policy store unreachable")

    def authz_response(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        return authz.AuthzResponse(allow=False, msg="m", err="late failure")


def test_authz_err_is_answered_500_with_the_whole_verdict(serve: Any) -> None:
    """An AuthzResponse with err is sent with HTTP 500, as go-plugins-helpers does."""
    c = serve(Broken().server())
    reply = c.call("AuthZPlugin.AuthZReq", {"RequestUri": "/info"})
    assert (reply.status, reply.json()) == (
        500,
        {"Allow": True, "Msg": "", "Err": "policy store unreachable"},
    )
    reply = c.call("AuthZPlugin.AuthZRes", {"RequestUri": "/info"})
    assert (reply.status, reply.json()) == (
        500,
        {"Allow": False, "Msg": "m", "Err": "late failure"},
    )


class Vault(SecretProvider):
    def __init__(self) -> None:
        self.seen: list[secrets.SecretRequest] = []

    def get_secret(self, request: secrets.SecretRequest) -> secrets.SecretResponse:
        self.seen.append(request)
        if request.secret_name == "missing":
            raise PluginError("no secret 'missing' in the vault")
        if request.secret_name == "one-time":
            return secrets.SecretResponse(value=b"\x00\xff", do_not_reuse=True)
        return secrets.SecretResponse(value="hunter2")


# What a Docker 20.10 swarm worker sent for `docker service create --secret
# db-password ...` (ids shortened), plus the labels and ports it sends when set.
_GET_SECRET = {
    "SecretName": "db-password",
    "SecretLabels": {"env": "prod"},
    "ServiceID": "63snlly31rfd",
    "ServiceName": "probe",
    "ServiceLabels": None,
    "TaskID": "lh1tw7lnztz2",
    "TaskName": "probe.1.lh1tw7lnztz2",
    "TaskImage": "pk-busybox:probe",
    "NodeID": "trnk084yzqce",
    "ServiceEndpointSpec": {
        "Ports": [{"Name": "web", "Protocol": 1, "TargetPort": 80, "PublishedPort": 8080}]
    },
}


def test_secret_provider_decodes_the_engines_request(serve: Any) -> None:
    """GetSecret decodes every field the engine sends; the value goes back as base64."""
    plugin = Vault()
    c = serve(plugin.server())
    assert c.call("Plugin.Activate").json() == {"Implements": ["secretprovider"]}
    reply = c.call("SecretProvider.GetSecret", _GET_SECRET)
    assert (reply.status, reply.json()) == (
        200,
        {"Value": base64.b64encode(b"hunter2").decode(), "DoNotReuse": False},
    )
    assert plugin.seen == [
        secrets.SecretRequest(
            secret_name="db-password",
            secret_labels={"env": "prod"},
            service_id="63snlly31rfd",
            service_name="probe",
            task_id="lh1tw7lnztz2",
            task_name="probe.1.lh1tw7lnztz2",
            task_image="pk-busybox:probe",
            node_id="trnk084yzqce",
            service_endpoint_spec=secrets.EndpointSpec(
                ports=[
                    secrets.PortConfig(name="web", protocol=1, target_port=80, published_port=8080)
                ]
            ),
        )
    ]


def test_secret_provider_bytes_do_not_reuse_and_errors(serve: Any) -> None:
    """Binary values and DoNotReuse reach the wire; a raised error is 500 {"Err"}."""
    c = serve(Vault().server())
    one_time = c.call("SecretProvider.GetSecret", {"SecretName": "one-time"})
    assert one_time.json() == {"Value": "AP8=", "DoNotReuse": True}
    missing = c.call("SecretProvider.GetSecret", {"SecretName": "missing"})
    assert (missing.status, missing.json()) == (500, {"Err": "no secret 'missing' in the vault"})
    wrong = c.call("SecretProvider.GetSecret", {"SecretName": 7})
    assert wrong.status == 400
    assert wrong.json() == {
        "Err": "invalid SecretProvider.GetSecret request: "
        "invalid value for type, expected str (got int) @ request.SecretName"
    }


def test_secret_provider_without_get_secret_serves_nothing(serve: Any) -> None:
    """A provider that does not implement get_secret answers 404, as a Go plugin would."""
    c = serve(SecretProvider().server())
    assert c.call("Plugin.Activate").json() == {"Implements": ["secretprovider"]}
    assert c.call("SecretProvider.GetSecret", {"SecretName": "x"}).status == 404


def test_secret_response_takes_text_as_utf8() -> None:
    """A str value is stored as its UTF-8 bytes."""
    assert secrets.SecretResponse(value="pässword").value == "pässword".encode()
    assert secrets.SecretResponse().value == b""


def test_converter_round_trip_bytes_as_base64() -> None:
    """The converter writes bytes as base64 and reads them back."""
    data = converter.unstructure(authz.AuthzRequest(request_body=b"\x00\xff"))
    assert data["RequestBody"] == "AP8="
    assert converter.structure(data, authz.AuthzRequest).request_body == b"\x00\xff"


def test_converter_ignores_unknown_fields() -> None:
    """Fields a newer engine adds are ignored."""
    assert converter.structure({"Name": "v", "ID": "i", "New": 1}, volume.MountRequest) == (
        volume.MountRequest(name="v", id="i")
    )


def test_sdk_public_names() -> None:
    """pluginkit.sdk exports exactly its documented public names."""
    import pluginkit.sdk

    assert sorted(pluginkit.sdk.__all__) == sorted(
        [
            "CONTENT_TYPE",
            "AuthzPlugin",
            "Driver",
            "Endpoint",
            "Handler",
            "InvalidRequestError",
            "IpamDriver",
            "LogDriver",
            "NetworkDriver",
            "PluginServer",
            "SecretProvider",
            "VolumeDriver",
            "authz",
            "converter",
            "ipam",
            "json_name",
            "logdriver",
            "network",
            "secrets",
            "volume",
        ]
    )
    for name in pluginkit.sdk.__all__:
        assert getattr(pluginkit.sdk, name) is not None


_text = st.text(max_size=20)
_opts = st.dictionaries(_text, _text, max_size=3)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.builds(volume.CreateRequest, name=_text, options=_opts),
        st.builds(volume.MountRequest, name=_text, id=_text),
        st.builds(
            volume.GetResponse,
            volume=st.builds(
                volume.Volume,
                name=_text,
                mountpoint=st.none() | _text,
                created_at=st.none() | _text,
                status=st.none() | st.dictionaries(_text, st.integers(), max_size=2),
            ),
        ),
        st.builds(
            network.CreateNetworkRequest,
            network_id=_text,
            options=st.dictionaries(_text, _text, max_size=2),
            ipv4_data=st.lists(st.builds(network.IPAMData, pool=_text, gateway=_text), max_size=2),
        ),
        st.builds(ipam.RequestPoolRequest, pool=_text, options=_opts, v6=st.booleans()),
        st.builds(
            authz.AuthzRequest,
            user=_text,
            request_uri=_text,
            request_body=st.binary(max_size=50),
            request_headers=_opts,
        ),
    )
)
def test_models_round_trip_through_json(model: Any) -> None:
    """Any model survives unstructure -> JSON text -> structure unchanged."""
    data = json.loads(json.dumps(converter.unstructure(model)))
    assert converter.structure(data, type(model)) == model


@pytest.mark.parametrize(
    ("method", "body", "err"),
    [
        (
            "VolumeDriver.Mount",
            {"Name": 5, "ID": "x"},
            "invalid VolumeDriver.Mount request: invalid value for type, expected str "
            "(got int) @ request.Name",
        ),
        (
            "VolumeDriver.Create",
            {"Name": "v", "Opts": {"size": 10}},
            "invalid VolumeDriver.Create request: invalid value for type, expected str "
            "(got int) @ request.Opts['size']",
        ),
        (
            "VolumeDriver.Mount",
            {"Name": {"a": 1}},
            "invalid VolumeDriver.Mount request: invalid value for type, expected str "
            "(got dict) @ request.Name",
        ),
    ],
)
def test_volume_wrong_typed_field_is_400(serve: Any, method: str, body: Any, err: str) -> None:
    """A field of the wrong JSON type answers 400 naming its JSON name, not coerced to text."""
    driver = RecordingVolumes()
    c = serve(driver.server())
    reply = c.call(method, body)
    assert (reply.status, reply.json()) == (400, {"Err": err})
    assert driver.calls == []


@pytest.mark.parametrize(
    ("body", "cls", "err"),
    [
        (
            {"V6": "false"},
            ipam.RequestPoolRequest,
            "invalid value for type, expected bool (got str) @ request.V6",
        ),
        (
            {"DiscoveryType": 1.7},
            network.DiscoveryNotification,
            "invalid value for type, expected int (got float) @ request.DiscoveryType",
        ),
        (
            {"DiscoveryType": True},
            network.DiscoveryNotification,
            "invalid value for type, expected int (got bool) @ request.DiscoveryType",
        ),
        (
            {"NetworkID": "n", "IPv4Data": [{"Pool": 3}]},
            network.CreateNetworkRequest,
            "invalid value for type, expected str (got int) @ request.IPv4Data[0].Pool",
        ),
        (
            {"ResponseStatusCode": "200"},
            authz.AuthzRequest,
            "invalid value for type, expected int (got str) @ request.ResponseStatusCode",
        ),
    ],
)
def test_wrong_json_types_are_not_coerced(body: Any, cls: type[Any], err: str) -> None:
    """Scalars must have the JSON type Docker sends; the error names the JSON field."""
    from pluginkit.sdk._driver import _describe

    with pytest.raises(cattrs.BaseValidationError) as info:
        converter.structure(body, cls)
    assert _describe(info.value, cls) == err


def test_right_json_types_still_accepted() -> None:
    """Well-typed values, nulls and missing optionals still structure as before."""
    assert converter.structure(
        {"V6": True, "Options": None, "Pool": "10.0.0.0/8"}, ipam.RequestPoolRequest
    ) == ipam.RequestPoolRequest(pool="10.0.0.0/8", v6=True)
    assert converter.structure(
        {"DiscoveryType": 1, "DiscoveryData": {"x": [1]}}, network.DiscoveryNotification
    ) == network.DiscoveryNotification(discovery_type=1, discovery_data={"x": [1]})


_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVGb3JUZXN0czAKBggqhkjOPQQDAjAP\n"
    "-----END CERTIFICATE-----\n"
)


def test_authz_peer_certificates_arrive_as_pem_text(serve: Any) -> None:
    """Docker sends each peer certificate as base64 of its PEM; the method gets the PEM text."""
    plugin = NoExec()
    c = serve(plugin.server())
    wire = base64.b64encode(_PEM.encode()).decode()  # what Go's json.Marshal([]byte(pem)) gives
    body = {"RequestUri": "/info", "RequestPeerCertificates": [wire]}
    assert c.call("AuthZPlugin.AuthZReq", body).json()["Allow"] is True
    assert plugin.seen[0].request_peer_certificates == [_PEM]
    request = authz.AuthzRequest(request_peer_certificates=[_PEM])
    assert converter.unstructure(request)["RequestPeerCertificates"] == [wire]


def test_authz_peer_certificate_not_base64_is_400(serve: Any) -> None:
    """A peer certificate that is not base64 answers 400 naming the field."""
    c = serve(NoExec().server())
    reply = c.call("AuthZPlugin.AuthZReq", {"RequestPeerCertificates": ["-----BEGIN"]})
    assert (reply.status, reply.json()) == (
        400,
        {
            "Err": "invalid AuthZPlugin.AuthZReq request: invalid value for type, expected "
            "PEMCertificate @ request.RequestPeerCertificates[0]"
        },
    )


def test_driver_server_passes_options_and_default_name(short_tmp: Path) -> None:
    """driver.server() names the server after default_name unless told, and passes the limits."""
    from pluginkit.examples.localvolume import LocalVolumeDriver

    server = LocalVolumeDriver(short_tmp).server(threads=2, read_timeout=None, max_body=10)
    assert (server.name, server.threads, server.read_timeout, server.max_body) == (
        "localvolume",
        2,
        None,
        10,
    )
    assert LocalVolumeDriver(short_tmp).server(name="other").name == "other"
    assert RecordingVolumes().server().name is None


def _wire_names(model: type[Any]) -> list[str]:
    from pluginkit.sdk._convert import wire_name

    return [wire_name(a) for a in attrs.fields(model)]


def test_every_reference_endpoint_is_declared() -> None:
    """Each driver declares every endpoint of go-plugins-helpers' API, by Docker's name."""
    assert [e.method for e in VolumeDriver.endpoints] == [
        f"VolumeDriver.{m}"
        for m in ("Create", "Remove", "Mount", "Unmount", "Path", "Get", "List", "Capabilities")
    ]
    assert sorted(e.method for e in NetworkDriver.endpoints) == sorted(
        f"NetworkDriver.{m}"
        for m in (
            "GetCapabilities",
            "CreateNetwork",
            "AllocateNetwork",
            "DeleteNetwork",
            "FreeNetwork",
            "CreateEndpoint",
            "EndpointOperInfo",
            "DeleteEndpoint",
            "Join",
            "Leave",
            "DiscoverNew",
            "DiscoverDelete",
            "ProgramExternalConnectivity",
            "RevokeExternalConnectivity",
        )
    )
    assert sorted(e.method for e in IpamDriver.endpoints) == sorted(
        f"IpamDriver.{m}"
        for m in (
            "GetCapabilities",
            "GetDefaultAddressSpaces",
            "RequestPool",
            "ReleasePool",
            "RequestAddress",
            "ReleaseAddress",
        )
    )
    assert [e.method for e in AuthzPlugin.endpoints] == [
        "AuthZPlugin.AuthZReq",
        "AuthZPlugin.AuthZRes",
    ]


@pytest.mark.parametrize(
    ("model", "names"),
    [
        (volume.CreateRequest, ["Name", "Opts"]),
        (volume.MountRequest, ["Name", "ID"]),
        (volume.Volume, ["Name", "Mountpoint", "CreatedAt", "Status"]),
        (volume.CapabilitiesResponse, ["Capabilities"]),
        (network.CreateNetworkRequest, ["NetworkID", "Options", "IPv4Data", "IPv6Data"]),
        (network.IPAMData, ["AddressSpace", "Pool", "Gateway", "AuxAddresses"]),
        (network.EndpointInterface, ["Address", "AddressIPv6", "MacAddress"]),
        (network.JoinRequest, ["NetworkID", "EndpointID", "SandboxKey", "Options"]),
        (
            network.JoinResponse,
            [
                "InterfaceName",
                "Gateway",
                "GatewayIPv6",
                "StaticRoutes",
                "DisableGatewayService",
            ],
        ),
        (network.InterfaceName, ["SrcName", "DstPrefix"]),
        (network.StaticRoute, ["Destination", "RouteType", "NextHop"]),
        (network.CapabilitiesResponse, ["Scope", "ConnectivityScope"]),
        (network.DiscoveryNotification, ["DiscoveryType", "DiscoveryData"]),
        (network.InfoResponse, ["Value"]),
        (ipam.CapabilitiesResponse, ["RequiresMACAddress"]),
        (
            ipam.AddressSpacesResponse,
            ["LocalDefaultAddressSpace", "GlobalDefaultAddressSpace"],
        ),
        (ipam.RequestPoolRequest, ["AddressSpace", "Pool", "SubPool", "Options", "V6"]),
        (ipam.RequestPoolResponse, ["PoolID", "Pool", "Data"]),
        (ipam.RequestAddressRequest, ["PoolID", "Address", "Options"]),
        (ipam.ReleaseAddressRequest, ["PoolID", "Address"]),
        (
            authz.AuthzRequest,
            [
                "User",
                "UserAuthNMethod",
                "RequestMethod",
                "RequestUri",
                "RequestBody",
                "RequestHeaders",
                "RequestPeerCertificates",
                "ResponseStatusCode",
                "ResponseBody",
                "ResponseHeaders",
            ],
        ),
        (authz.AuthzResponse, ["Allow", "Msg", "Err"]),
        (
            secrets.SecretRequest,
            [
                "SecretName",
                "SecretLabels",
                "ServiceHostname",
                "ServiceID",
                "ServiceName",
                "ServiceLabels",
                "TaskID",
                "TaskName",
                "TaskImage",
                "NodeID",
                "ServiceEndpointSpec",
            ],
        ),
        (secrets.SecretResponse, ["Value", "DoNotReuse"]),
        (
            logdriver.LogInfo,
            [
                "Config",
                "ContainerID",
                "ContainerName",
                "ContainerEntrypoint",
                "ContainerArgs",
                "ContainerImageID",
                "ContainerImageName",
                "ContainerCreated",
                "ContainerEnv",
                "ContainerLabels",
                "LogPath",
                "DaemonName",
            ],
        ),
        (logdriver.StartLoggingRequest, ["File", "Info"]),
        (logdriver.StopLoggingRequest, ["File"]),
        (logdriver.CapabilitiesResponse, ["Cap"]),
        (logdriver.LogCapability, ["ReadLogs"]),
        (logdriver.ReadLogsRequest, ["Info", "Config"]),
        (logdriver.ReadConfig, ["Since", "Until", "Tail", "Follow"]),
        (secrets.EndpointSpec, ["Mode", "Ports"]),
        (
            secrets.PortConfig,
            ["Name", "Protocol", "TargetPort", "PublishedPort", "PublishMode"],
        ),
    ],
)
def test_models_use_dockers_json_names(model: type[Any], names: list[str]) -> None:
    """Every model field goes on the wire under the exact name Docker's Go structs use."""
    assert _wire_names(model) == names
