"""Typed clients against a Go plugin built on Docker's own wire types.

The Go peer decodes every request strictly (unknown fields refused) into
Docker's structs - ``authorization.Request``, ``logger.Info``,
``logger.ReadConfig``, the log entry protobuf - and go-plugins-helpers'
volume, network and IPAM API structs (that module is not packaged: its
structs are copied),
and answers with Go's encoding/json, so both directions of the wire shape are
checked against Go.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import Client, PluginCallError
from pluginkit.clients import (
    AsyncAuthzClient,
    AsyncIpamDriverClient,
    AsyncLogDriverClient,
    AsyncNetworkDriverClient,
    AsyncVolumeDriverClient,
    AuthzClient,
    IpamDriverClient,
    LogDriverClient,
    NetworkDriverClient,
    VolumeDriverClient,
)
from pluginkit.sdk import authz, ipam, logdriver, network, volume
from tests._clients_helpers import KINDS, ThreadAdapter, run, typed
from tests.conftest import build_go_program

pytestmark = [pytest.mark.go, pytest.mark.slow]

GO_PEER = r"""
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/plugins/logdriver"
	"github.com/docker/docker/daemon/logger"
	"github.com/docker/docker/pkg/authorization"
)

// go-plugins-helpers' volume API (github.com/docker/go-plugins-helpers/volume/api.go).
type volCreateRequest struct {
	Name    string
	Options map[string]string `json:"Opts,omitempty"`
}
type volNameRequest struct{ Name string }
type volMountRequest struct {
	Name string
	ID   string
}
type volMountResponse struct{ Mountpoint string }
type volVolume struct {
	Name       string
	Mountpoint string                 `json:",omitempty"`
	CreatedAt  string                 `json:",omitempty"`
	Status     map[string]interface{} `json:",omitempty"`
}
type volGetResponse struct{ Volume *volVolume }
type volListResponse struct{ Volumes []*volVolume }
type volCapability struct{ Scope string }
type volCapabilitiesResponse struct{ Capabilities volCapability }
type errorResponse struct{ Err string }

// go-plugins-helpers' network and IPAM APIs (network/api.go, ipam/api.go).
type netIPAMData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]interface{}
}
type netCreateNetworkRequest struct {
	NetworkID string
	Options   map[string]interface{}
	IPv4Data  []*netIPAMData
	IPv6Data  []*netIPAMData
}
type netEndpointInterface struct {
	Address     string
	AddressIPv6 string
	MacAddress  string
}
type netCreateEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *netEndpointInterface
	Options    map[string]interface{}
}
type netCreateEndpointResponse struct{ Interface *netEndpointInterface }
type netJoinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]interface{}
}
type netInterfaceName struct {
	SrcName   string
	DstPrefix string
}
type netStaticRoute struct {
	Destination string
	RouteType   int
	NextHop     string
}
type netJoinResponse struct {
	InterfaceName         netInterfaceName
	Gateway               string
	GatewayIPv6           string
	StaticRoutes          []*netStaticRoute
	DisableGatewayService bool
}
type netCapabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}
type ipamRequestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}
type ipamRequestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}
type ipamRequestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}
type ipamRequestAddressResponse struct {
	Address string
	Data    map[string]string
}
type ipamCapabilitiesResponse struct{ RequiresMACAddress bool }

type startLogging struct {
	File string
	Info logger.Info
}
type readLogs struct {
	Info   logger.Info
	Config logger.ReadConfig
}

var (
	mu      sync.Mutex
	volumes = map[string]*volVolume{}
	last    interface{}
)

func reply(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode refuses unknown fields: pluginkit must send only what Docker's types hold.
func decode(w http.ResponseWriter, r *http.Request, v interface{}) bool {
	body, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		reply(w, 400, errorResponse{"go cannot decode " + string(body) + ": " + err.Error()})
		return false
	}
	mu.Lock()
	last = v
	mu.Unlock()
	return true
}

func main() {
	mux := http.NewServeMux()
	handle := func(path string, fn func(http.ResponseWriter, *http.Request)) {
		mux.HandleFunc("/"+path, fn)
	}
	handle("Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string][]string{"Implements": {"VolumeDriver", "authz", "LogDriver"}})
	})
	handle("Test.Last", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reply(w, 200, last)
	})
	handle("VolumeDriver.Create", func(w http.ResponseWriter, r *http.Request) {
		var req volCreateRequest
		if !decode(w, r, &req) {
			return
		}
		if req.Name == "taken" {
			reply(w, 500, errorResponse{"volume taken exists"})
			return
		}
		mu.Lock()
		status := map[string]interface{}{"opts": req.Options}
		volumes[req.Name] = &volVolume{Name: req.Name, Status: status}
		mu.Unlock()
		reply(w, 200, errorResponse{})
	})
	handle("VolumeDriver.Remove", func(w http.ResponseWriter, r *http.Request) {
		var req volNameRequest
		if decode(w, r, &req) {
			mu.Lock()
			delete(volumes, req.Name)
			mu.Unlock()
			reply(w, 200, errorResponse{})
		}
	})
	handle("VolumeDriver.Mount", func(w http.ResponseWriter, r *http.Request) {
		var req volMountRequest
		if decode(w, r, &req) {
			reply(w, 200, volMountResponse{"/go/" + req.Name + "/" + req.ID})
		}
	})
	handle("VolumeDriver.Unmount", func(w http.ResponseWriter, r *http.Request) {
		var req volMountRequest
		if decode(w, r, &req) {
			reply(w, 200, errorResponse{})
		}
	})
	handle("VolumeDriver.Path", func(w http.ResponseWriter, r *http.Request) {
		var req volNameRequest
		if decode(w, r, &req) {
			reply(w, 200, volMountResponse{"/go/" + req.Name})
		}
	})
	handle("VolumeDriver.Get", func(w http.ResponseWriter, r *http.Request) {
		var req volNameRequest
		if !decode(w, r, &req) {
			return
		}
		mu.Lock()
		v, ok := volumes[req.Name]
		mu.Unlock()
		if !ok {
			reply(w, 500, errorResponse{"no such volume " + req.Name})
			return
		}
		created := "2024-01-02T03:04:05Z"
		reply(w, 200, volGetResponse{&volVolume{v.Name, "/go/" + v.Name, created, v.Status}})
	})
	handle("VolumeDriver.List", func(w http.ResponseWriter, r *http.Request) {
		var req struct{}
		if !decode(w, r, &req) {
			return
		}
		mu.Lock()
		names := []string{}
		for name := range volumes {
			names = append(names, name)
		}
		sort.Strings(names)
		list := volListResponse{Volumes: []*volVolume{}}
		for _, name := range names {
			list.Volumes = append(list.Volumes, &volVolume{Name: name})
		}
		mu.Unlock()
		reply(w, 200, list)
	})
	handle("VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, volCapabilitiesResponse{volCapability{"global"}})
	})
	handle("NetworkDriver.GetCapabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, netCapabilitiesResponse{"local", "global"})
	})
	handle("NetworkDriver.CreateNetwork", func(w http.ResponseWriter, r *http.Request) {
		var req netCreateNetworkRequest
		if decode(w, r, &req) {
			reply(w, 200, errorResponse{})
		}
	})
	handle("NetworkDriver.CreateEndpoint", func(w http.ResponseWriter, r *http.Request) {
		var req netCreateEndpointRequest
		if !decode(w, r, &req) {
			return
		}
		res := netCreateEndpointResponse{}
		if req.Interface == nil {
			mac := "02:42:0a:00:00:02"
			res.Interface = &netEndpointInterface{Address: "10.0.0.2/24", MacAddress: mac}
		}
		reply(w, 200, res)
	})
	handle("NetworkDriver.Join", func(w http.ResponseWriter, r *http.Request) {
		var req netJoinRequest
		if !decode(w, r, &req) {
			return
		}
		route := &netStaticRoute{Destination: "10.1.0.0/16", RouteType: 1}
		name := netInterfaceName{"veth-" + req.EndpointID, "eth"}
		reply(w, 200, netJoinResponse{name, "10.0.0.1", "", []*netStaticRoute{route}, true})
	})
	handle("IpamDriver.GetCapabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, ipamCapabilitiesResponse{true})
	})
	handle("IpamDriver.RequestPool", func(w http.ResponseWriter, r *http.Request) {
		var req ipamRequestPoolRequest
		if decode(w, r, &req) {
			reply(w, 200, ipamRequestPoolResponse{"p-" + req.Pool, req.Pool, req.Options})
		}
	})
	handle("IpamDriver.RequestAddress", func(w http.ResponseWriter, r *http.Request) {
		var req ipamRequestAddressRequest
		if decode(w, r, &req) {
			reply(w, 200, ipamRequestAddressResponse{"10.9.0.7/24", nil})
		}
	})
	handle("AuthZPlugin.AuthZReq", func(w http.ResponseWriter, r *http.Request) {
		var req authorization.Request
		if !decode(w, r, &req) {
			return
		}
		names := []string{}
		for _, cert := range req.RequestPeerCertificates {
			names = append(names, cert.Subject.CommonName)
		}
		msg := fmt.Sprintf("%s %s %s body=%q headers=%v certs=%v",
			req.User, req.RequestMethod, req.RequestURI, req.RequestBody, req.RequestHeaders, names)
		allow := !strings.HasSuffix(req.RequestURI, "/exec")
		reply(w, 200, authorization.Response{Allow: allow, Msg: msg})
	})
	handle("AuthZPlugin.AuthZRes", func(w http.ResponseWriter, r *http.Request) {
		var req authorization.Request
		if !decode(w, r, &req) {
			return
		}
		res := authorization.Response{Allow: true}
		if req.ResponseStatusCode == 500 {
			res = authorization.Response{Err: fmt.Sprintf("upstream said %q", req.ResponseBody)}
		}
		reply(w, 200, res)
	})
	handle("LogDriver.StartLogging", func(w http.ResponseWriter, r *http.Request) {
		var req startLogging
		if decode(w, r, &req) {
			reply(w, 200, errorResponse{})
		}
	})
	handle("LogDriver.StopLogging", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ File string }
		if decode(w, r, &req) {
			reply(w, 200, errorResponse{})
		}
	})
	handle("LogDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]logger.Capability{"Cap": {ReadLogs: true}})
	})
	handle("LogDriver.ReadLogs", func(w http.ResponseWriter, r *http.Request) {
		var req readLogs
		if !decode(w, r, &req) {
			return
		}
		w.Header().Set("Content-Type", "application/x-json-stream")
		enc := logdriver.NewLogEntryEncoder(w)
		for i := 0; i < req.Config.Tail; i++ {
			enc.Encode(&logdriver.LogEntry{
				Source:   "stdout",
				TimeNano: int64(i + 1),
				Line:     []byte(fmt.Sprintf("%s line %d\n", req.Info.ContainerID, i)),
				Partial:  i == 1,
			})
		}
	})

	os.Remove(os.Args[1])
	listener, err := net.Listen("unix", os.Args[1])
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	go http.Serve(listener, mux)
	io.Copy(io.Discard, os.Stdin)
}
"""


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_program(GO_PEER, tmp_path_factory.mktemp("gopeer"), "gopeer")


@pytest.fixture
def client(go_peer: Path, short_tmp: Path) -> Iterator[Client]:
    path = short_tmp / "go.sock"
    process = subprocess.Popen(
        [str(go_peer), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        with Client(f"unix://{path}", retry_timeout=0) as c:
            yield c
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_volume_client_with_go_plugin(kind: str, client: Client) -> None:
    """Go decodes every volume request strictly; its replies read into the SDK's models."""
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
            await vols.remove("v2"),
            await vols.list(),
        ]

    assert run(body()) == [
        None,
        None,
        "/go/v1/c1",
        None,
        "/go/v1",
        volume.Volume("v1", "/go/v1", "2024-01-02T03:04:05Z", {"opts": {"size": "1G"}}),
        [volume.Volume("v1"), volume.Volume("v2")],
        volume.Capability("global"),
        None,
        [volume.Volume("v1")],
    ]
    with pytest.raises(PluginCallError) as taken:
        run(vols.create("taken"))
    with pytest.raises(PluginCallError) as missing:
        run(vols.get("nope"))
    assert (taken.value.status, str(taken.value)) == (
        500,
        "VolumeDriver.Create: volume taken exists",
    )
    assert str(missing.value) == "VolumeDriver.Get: no such volume nope"


def test_network_and_ipam_clients_with_go_plugin(kind: str, client: Client) -> None:
    """go-plugins-helpers' network and IPAM structs decode the requests; replies read back."""
    net = typed(kind, NetworkDriverClient, AsyncNetworkDriverClient, client)
    pools = typed(kind, IpamDriverClient, AsyncIpamDriverClient, client)
    pool = network.IPAMData("LocalDefault", "10.0.0.0/24", "10.0.0.1/24", {"host": "10.0.0.9"})

    async def body() -> list[Any]:
        return [
            await net.get_capabilities(),
            await net.create_network("n1", {"com.docker.network.generic": {"k": "v"}}, [pool]),
            client.call("Test.Last"),
            await net.create_endpoint("n1", "e1"),
            await net.create_endpoint("n1", "e2", network.EndpointInterface("10.0.0.5/24")),
            client.call("Test.Last"),
            await net.join("n1", "e1", "/var/run/docker/netns/x", {"o": 1}),
            await pools.get_capabilities(),
            await pools.request_pool("LocalDefault", "10.9.0.0/24", options={"a": "b"}),
            await pools.request_address("p-10.9.0.0/24", options={"mac": "m"}),
            client.call("Test.Last"),
        ]

    assert run(body()) == [
        network.CapabilitiesResponse("local", "global"),
        None,
        {
            "NetworkID": "n1",
            "Options": {"com.docker.network.generic": {"k": "v"}},
            "IPv4Data": [
                {
                    "AddressSpace": "LocalDefault",
                    "Pool": "10.0.0.0/24",
                    "Gateway": "10.0.0.1/24",
                    "AuxAddresses": {"host": "10.0.0.9"},
                }
            ],
            "IPv6Data": [],
        },
        network.CreateEndpointResponse(
            network.EndpointInterface("10.0.0.2/24", "", "02:42:0a:00:00:02")
        ),
        network.CreateEndpointResponse(None),
        {
            "NetworkID": "n1",
            "EndpointID": "e2",
            "Interface": {"Address": "10.0.0.5/24", "AddressIPv6": "", "MacAddress": ""},
            "Options": {},
        },
        network.JoinResponse(
            interface_name=network.InterfaceName("veth-e1", "eth"),
            gateway="10.0.0.1",
            static_routes=[network.StaticRoute("10.1.0.0/16", 1)],
            disable_gateway_service=True,
        ),
        ipam.CapabilitiesResponse(requires_mac_address=True),
        ipam.RequestPoolResponse("p-10.9.0.0/24", "10.9.0.0/24", {"a": "b"}),
        ipam.RequestAddressResponse("10.9.0.7/24"),
        {"PoolID": "p-10.9.0.0/24", "Address": "", "Options": {"mac": "m"}},
    ]


def _certificate(common_name: str) -> authz.PEMCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return authz.PEMCertificate(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def test_authz_client_with_go_plugin(kind: str, client: Client) -> None:
    """Docker's authorization.Request decodes what AuthzClient sends, certificates included."""
    checker = typed(kind, AuthzClient, AsyncAuthzClient, client)
    asked = authz.AuthzRequest(
        user="alice",
        user_authn_method="TLS",
        request_method="POST",
        request_uri="/v1.41/containers/x/exec",
        request_body=b'{"Cmd": ["sh"]}',
        request_headers={"Content-Type": "application/json"},
        request_peer_certificates=[_certificate("alice"), _certificate("ca")],
    )

    async def body() -> list[authz.AuthzResponse]:
        return [
            await checker.authz_request(asked),
            await checker.authz_response(
                authz.AuthzRequest(response_status_code=500, response_body=b"boom")
            ),
            await checker.authz_response(authz.AuthzRequest(response_status_code=200)),
        ]

    assert run(body()) == [
        authz.AuthzResponse(
            allow=False,
            msg='alice POST /v1.41/containers/x/exec body="{\\"Cmd\\": [\\"sh\\"]}" '
            "headers=map[Content-Type:application/json] certs=[alice ca]",
        ),
        authz.AuthzResponse(allow=False, err='upstream said "boom"'),
        authz.AuthzResponse(allow=True),
    ]


def test_log_driver_client_with_go_plugin(kind: str, client: Client) -> None:
    """logger.Info and logger.ReadConfig decode what LogDriverClient sends (Go zero times)."""
    logs = typed(kind, LogDriverClient, AsyncLogDriverClient, client)
    info = logdriver.LogInfo(
        config={"tag": "x"},
        container_id="c1",
        container_name="/web",
        container_args=["-v"],
        container_created="2024-01-02T03:04:05.123456789Z",
        container_labels={"a": "b"},
    )

    async def body() -> list[Any]:
        return [
            await logs.capabilities(),
            await logs.start_logging("/run/fifo/c1", info),
            client.call("Test.Last"),
            await logs.start_logging("/run/fifo/c2"),
            client.call("Test.Last")["Info"]["ContainerCreated"],
            await logs.stop_logging("/run/fifo/c1"),
            client.call("Test.Last"),
        ]

    results = run(body())
    started = results[2]
    assert results[:2] == [logdriver.LogCapability(read_logs=True), None]
    assert started["File"] == "/run/fifo/c1"
    assert {k: v for k, v in started["Info"].items() if v} == {
        "Config": {"tag": "x"},
        "ContainerID": "c1",
        "ContainerName": "/web",
        "ContainerArgs": ["-v"],
        "ContainerCreated": "2024-01-02T03:04:05.123456789Z",
        "ContainerLabels": {"a": "b"},
    }
    assert results[3:] == [None, "0001-01-01T00:00:00Z", None, {"File": "/run/fifo/c1"}]


def test_read_logs_from_go_plugin(client: Client) -> None:
    """Entries Docker's Go encoder streams decode into LogEntry, sync and async."""
    info = logdriver.LogInfo(container_id="c9")
    config = logdriver.ReadConfig(tail=2, since="2024-01-01T00:00:00Z")
    with LogDriverClient(client).read_logs(info, config) as entries:
        sync_got = list(entries)
    sent = client.call("Test.Last")

    async def body() -> list[logdriver.LogEntry]:
        logs = AsyncLogDriverClient(ThreadAdapter(client))
        async with logs.read_logs(info, config) as stream:
            return [entry async for entry in stream]

    expected = [
        logdriver.LogEntry(source="stdout", time_nano=1, line=b"c9 line 0\n"),
        logdriver.LogEntry(source="stdout", time_nano=2, line=b"c9 line 1\n", partial=True),
    ]
    assert sync_got == expected
    assert run(body()) == expected
    assert sent["Config"] == {
        "Since": "2024-01-01T00:00:00Z",
        "Until": "0001-01-01T00:00:00Z",
        "Tail": 2,
        "Follow": False,
    }
    assert json.dumps(sent["Info"]["ContainerID"]) == '"c9"'
