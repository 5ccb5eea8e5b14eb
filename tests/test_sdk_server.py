"""PluginServer: the handshake, routing, errors and serving, over real sockets."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import PluginError
from pluginkit.sdk import CONTENT_TYPE, PluginServer
from tests._sdk_helpers import RawClient, wait_for


@pytest.fixture(params=[0, 4], ids=["inline", "threads"])
def server(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[PluginServer]:
    srv = PluginServer(["VolumeDriver"], name="t", threads=request.param)

    @srv.handler("Echo")
    def echo(request: Any) -> Any:
        return request

    @srv.handler("Fail")
    def fail(request: Any) -> Any:
        raise PluginError("volume exists")

    srv.start(short_tmp / "p.sock")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: PluginServer) -> Iterator[RawClient]:
    assert server.address is not None
    with RawClient.for_url(server.address) as c:
        yield c


def test_activate_answers_implements(client: RawClient) -> None:
    """Plugin.Activate answers the Implements list with Docker's v1.1 content type."""
    reply = client.call("Plugin.Activate")
    assert reply.status == 200
    assert reply.json() == {"Implements": ["VolumeDriver"]}
    assert reply.headers["content-type"] == CONTENT_TYPE


def test_echo_round_trip(client: RawClient) -> None:
    """A handler gets the decoded JSON body and its return value is sent as JSON."""
    reply = client.call("Echo", {"Name": "v1", "Opts": {"a": "b"}})
    assert (reply.status, reply.json()) == (200, {"Name": "v1", "Opts": {"a": "b"}})
    assert reply.headers["content-type"] == CONTENT_TYPE


def test_empty_body_is_none_and_none_is_empty_object(client: RawClient) -> None:
    """An empty request body reaches the handler as None; a None reply is sent as {}."""
    reply = client.call("Echo")
    assert (reply.status, reply.body) == (200, b"{}")


def test_plugin_error_answers_500_err(client: RawClient) -> None:
    """A handler raising PluginError answers HTTP 500 {"Err": message}."""
    reply = client.call("Fail", {})
    assert (reply.status, reply.json()) == (500, {"Err": "volume exists"})


def test_unexpected_exception_is_logged_not_leaked(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Any other exception also answers 500 with its message; the traceback goes to logging."""
    srv = PluginServer([])
    srv.add_handler("Boom", lambda request: 1 / 0)
    with srv:
        srv.start(short_tmp / "b.sock")
        with caplog.at_level(logging.ERROR, "pluginkit.sdk"), RawClient(short_tmp / "b.sock") as c:
            reply = c.call("Boom")
    assert (reply.status, reply.json()) == (500, {"Err": "division by zero"})
    assert "Traceback" not in reply.body.decode()
    assert [r.getMessage() for r in caplog.records] == ["handler for Boom raised"]
    assert caplog.records[0].exc_info is not None


def test_unknown_method_is_404(client: RawClient) -> None:
    """An unknown method answers 404 with an Err naming it."""
    reply = client.call("VolumeDriver.Nope", {})
    assert reply.status == 404
    assert reply.json() == {"Err": "plugin does not implement method 'VolumeDriver.Nope'"}


def test_bad_json_is_400_and_server_keeps_serving(client: RawClient) -> None:
    """A body that is not JSON answers 400 with a clear message; the connection stays usable."""
    client.send(client.request_bytes("Echo", b"{nope"))
    reply = client.read_reply()
    assert reply.status == 400
    assert reply.json()["Err"].startswith("Echo: request body is not valid JSON: ")
    assert client.call("Echo", [1]).json() == [1]


def test_keep_alive_many_requests_one_connection(client: RawClient) -> None:
    """Many requests on one keep-alive connection are all answered in order."""
    for i in range(200):
        assert client.call("Echo", {"i": i}).json() == {"i": i}


def test_pipelined_requests_answered_in_order(client: RawClient) -> None:
    """Requests sent back to back before reading are answered in order."""
    client.send(b"".join(client.request_bytes("Echo", json.dumps(i).encode()) for i in range(50)))
    assert [client.read_reply().json() for _ in range(50)] == list(range(50))


def test_chunked_request_body(client: RawClient) -> None:
    """A chunked request body is decoded."""
    client.send(
        b"POST /Echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n4\r\n 42}\r\n0\r\n\r\n'
    )
    assert client.read_reply().json() == {"a": 42}


def test_bytes_split_anywhere(client: RawClient) -> None:
    """A request arriving one byte at a time is parsed."""
    for byte in client.request_bytes("Echo", b'{"x": true}'):
        client.send(bytes([byte]))
    assert client.read_reply().json() == {"x": True}


def test_connection_close_is_honoured(client: RawClient) -> None:
    """A request with Connection: close is answered, then the server closes."""
    client.send(
        b"POST /Echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    )
    reply = client.read_reply()
    assert (reply.status, reply.headers["connection"]) == (200, "close")
    assert client.closed_by_server()


def test_malformed_request_is_400_then_closed(client: RawClient) -> None:
    """A request line that does not parse answers 400 and closes the connection."""
    client.send(b"garbage\r\n\r\n")
    reply = client.read_reply()
    assert (reply.status, reply.json()) == (400, {"Err": "malformed request line 'garbage'"})
    assert client.closed_by_server()


def test_address_is_unix_url(server: PluginServer, short_tmp: Path) -> None:
    """After start, address is the unix:// URL really served."""
    assert server.address == f"unix://{short_tmp / 'p.sock'}"


def test_unix_socket_mode_0660(server: PluginServer, short_tmp: Path) -> None:
    """The unix socket gets mode 0660, like go-plugins-helpers' ServeUnix."""
    assert stat.S_IMODE((short_tmp / "p.sock").stat().st_mode) == 0o660


def test_socket_gid(short_tmp: Path) -> None:
    """gid= sets the socket's group."""
    # root may give any group; others only a group they belong to
    others = [g for g in os.getgroups() if g != os.getgid()]
    if os.geteuid() == 0:
        gid = os.getgid() + 4242
    elif others:
        gid = others[0]
    else:
        pytest.skip("not root and in no supplementary group: no other group to give")
    srv = PluginServer([])
    with srv:
        srv.start(short_tmp / "g.sock", gid=gid)
        assert (short_tmp / "g.sock").stat().st_gid == gid


def test_stop_removes_socket(short_tmp: Path) -> None:
    """stop() removes the socket file and address becomes None."""
    srv = PluginServer([])
    srv.start(short_tmp / "s.sock")
    srv.stop()
    assert not (short_tmp / "s.sock").exists()
    assert srv.address is None


def test_parent_dir_created_and_stale_socket_replaced(short_tmp: Path) -> None:
    """The socket's directory is created and a stale socket file (nobody listening) is replaced."""
    path = short_tmp / "sub" / "s.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    srv = PluginServer(["X"])
    with srv:
        srv.start(f"unix://{path}")
        with RawClient(path) as c:
            assert c.call("Plugin.Activate").json() == {"Implements": ["X"]}


def test_live_socket_is_not_taken_over(server: PluginServer, short_tmp: Path) -> None:
    """Starting on a socket another server listens on fails clearly."""
    with pytest.raises(PluginError, match="another server is listening there"):
        PluginServer([]).start(short_tmp / "p.sock")


def test_regular_file_is_not_deleted(short_tmp: Path) -> None:
    """A path that exists and is not a socket is refused and left alone."""
    (short_tmp / "f.sock").write_text("data")
    with pytest.raises(PluginError, match="exists and is not a socket"):
        PluginServer([]).start(short_tmp / "f.sock")
    assert (short_tmp / "f.sock").read_text() == "data"


def test_tcp_port_zero_reports_real_port() -> None:
    """tcp://127.0.0.1:0 serves on a free port and address tells which."""
    srv = PluginServer(["NetworkDriver"])
    with srv:
        srv.start("tcp://127.0.0.1:0")
        assert srv.address is not None
        assert srv.address.startswith("tcp://127.0.0.1:")
        assert not srv.address.endswith(":0")
        with RawClient.for_url(srv.address) as c:
            assert c.call("Plugin.Activate").json() == {"Implements": ["NetworkDriver"]}


def test_tcp_spec_file_written_and_removed(short_tmp: Path) -> None:
    """spec_dir= writes <name>.spec with the served URL and removes it on stop."""
    srv = PluginServer([], name="tcpplug")
    srv.start("tcp://127.0.0.1:0", spec_dir=short_tmp / "specs")
    spec = short_tmp / "specs" / "tcpplug.spec"
    assert spec.read_text() == f"{srv.address}\n"
    assert stat.S_IMODE(spec.stat().st_mode) == 0o644
    assert [p.name for p in spec.parent.iterdir()] == ["tcpplug.spec"]
    srv.stop()
    assert not spec.exists()


def test_spec_file_of_a_newer_server_is_left_alone(short_tmp: Path) -> None:
    """Stopping a server does not remove a spec file another server has since written."""
    first, second = PluginServer([], name="same"), PluginServer([], name="same")
    spec = short_tmp / "same.spec"
    with first, second:
        first.start("tcp://127.0.0.1:0", spec_dir=short_tmp)
        second.start("tcp://127.0.0.1:0", spec_dir=short_tmp)
        first.stop()
        assert spec.read_text() == f"{second.address}\n"
    assert not spec.exists()


def test_env_socket_convention(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """address=None serves at $PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET."""
    monkeypatch.setenv("PLUGINKIT_SOCKET_DIR", str(short_tmp / "run"))
    monkeypatch.setenv("PLUGINKIT_SOCKET", "env.sock")
    srv = PluginServer([])
    with srv:
        srv.start()
        assert srv.address == f"unix://{short_tmp / 'run' / 'env.sock'}"


def test_no_address_no_name_is_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an address, the env vars or a name, start() says what to do."""
    monkeypatch.delenv("PLUGINKIT_SOCKET_DIR", raising=False)
    monkeypatch.delenv("PLUGINKIT_SOCKET", raising=False)
    with pytest.raises(ValueError, match="no address to serve on"):
        PluginServer([]).start()


def test_enter_does_not_start() -> None:
    """Entering the context manager does not start serving."""
    with PluginServer([]) as srv:
        assert srv.address is None


def test_sixty_four_concurrent_clients(server: PluginServer) -> None:
    """64 clients calling at the same time are all served."""
    assert server.address is not None
    address = server.address
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with RawClient.for_url(address) as c:
                results[n] = [c.call("Echo", {"n": n, "i": i}).json()["i"] for i in range(20)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {n: list(range(20)) for n in range(64)}


def test_stop_lets_in_flight_request_finish(short_tmp: Path) -> None:
    """stop() waits for a request being handled; its client gets the full reply."""
    entered = threading.Event()
    release = threading.Event()
    srv = PluginServer([])

    @srv.handler("Slow")
    def slow(request: Any) -> Any:
        entered.set()
        release.wait(10)
        return {"done": True}

    srv.start(short_tmp / "s.sock")
    c = RawClient(short_tmp / "s.sock")
    c.send(c.request_bytes("Slow"))
    assert entered.wait(10)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    release.set()
    reply = c.read_reply()
    stopper.join()
    assert (reply.status, reply.json()) == (200, {"done": True})
    assert reply.headers["connection"] == "close"
    assert not (short_tmp / "s.sock").exists()
    c.close()


def test_stop_closes_idle_connections(server: PluginServer, client: RawClient) -> None:
    """stop() closes idle keep-alive connections instead of waiting for them."""
    client.call("Echo", {})
    server.stop()
    assert client.closed_by_server()


def test_streaming_iterator_reply_is_chunked(short_tmp: Path) -> None:
    """A handler returning an iterator of bytes streams a chunked reply."""
    srv = PluginServer([])
    srv.add_handler("Logs", lambda request: iter([b"line 1\n", b"", b"line 2\n"]))
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            reply = c.call("Logs")
            assert reply.headers["transfer-encoding"] == "chunked"
            assert reply.body == b"line 1\nline 2\n"
            assert c.call("Logs").body == b"line 1\nline 2\n"


def test_streaming_file_reply(short_tmp: Path) -> None:
    """A handler returning a binary file streams its content and closes it."""
    (short_tmp / "data").write_bytes(b"x" * 300000)
    opened = []

    def handler(request: Any) -> Any:
        fh = (short_tmp / "data").open("rb")
        opened.append(fh)
        return fh

    srv = PluginServer([])
    srv.add_handler("File", handler)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            assert c.call("File").body == b"x" * 300000
    assert opened[0].closed


def test_threads_option_serves_concurrently(short_tmp: Path) -> None:
    """With threads=2, a blocked handler does not hold up another connection."""
    release = threading.Event()
    srv = PluginServer([], threads=2)
    srv.add_handler("Block", lambda request: {"released": release.wait(10)})
    srv.add_handler("Echo", lambda request: request)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as blocked, RawClient(short_tmp / "s.sock") as c:
            blocked.send(blocked.request_bytes("Block"))
            assert c.call("Echo", {"a": 1}).json() == {"a": 1}
            release.set()
            assert blocked.read_reply().json() == {"released": True}


def test_duplicate_handler_rejected() -> None:
    """Registering a method twice, or Plugin.Activate, is refused."""
    srv = PluginServer([])
    srv.add_handler("A", lambda r: r)
    with pytest.raises(ValueError, match="method 'A' already has a handler"):
        srv.add_handler("A", lambda r: r)
    with pytest.raises(ValueError, match=r"Plugin\.Activate is built in"):
        srv.add_handler("Plugin.Activate", lambda r: r)


@pytest.mark.parametrize("threads", [0, 2])
def test_stop_from_a_handler(short_tmp: Path, threads: int) -> None:
    """A handler may call stop(): its reply is still sent, then the server stops."""
    srv = PluginServer([], threads=threads, stop_timeout=30)

    @srv.handler("Shutdown")
    def shutdown(request: Any) -> Any:
        srv.stop()
        return {"bye": True}

    srv.start(short_tmp / "s.sock")
    with RawClient(short_tmp / "s.sock") as c:
        reply = c.call("Shutdown")
        assert (reply.status, reply.json()) == (200, {"bye": True})
        assert c.closed_by_server()
    wait_for(lambda: not srv.serving)
    assert not (short_tmp / "s.sock").exists()


def test_expect_100_continue(client: RawClient) -> None:
    """A client sending Expect: 100-continue gets "100 Continue", then the reply."""
    client.send(
        b"POST /Echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n"
    )
    assert client.read_reply().status == 100
    client.send(b'{"a":1}')
    assert client.read_reply().json() == {"a": 1}


def test_head_request_has_no_body(client: RawClient) -> None:
    """A HEAD request gets the headers of the reply and no body."""
    reply = client.call("Plugin.Activate", verb="HEAD")
    assert (reply.status, reply.headers["content-length"]) == (200, "31")
    assert client.call("Echo", {"after": "head"}).json() == {"after": "head"}


def test_body_too_large_is_413(short_tmp: Path) -> None:
    """A body above max_body answers 413 and closes the connection."""
    srv = PluginServer([], max_body=100)
    srv.add_handler("Echo", lambda request: request)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            c.send(c.request_bytes("Echo", b"[" + b"1," * 100 + b"1]"))
            reply = c.read_reply()
            assert (reply.status, reply.json()) == (
                413,
                {"Err": "request body is larger than 100 bytes"},
            )
            assert c.closed_by_server()


def test_handler_reply_not_json_is_500(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A handler returning something JSON cannot encode answers 500 naming the method."""
    srv = PluginServer([])
    srv.add_handler("Odd", lambda request: {"x": object()})
    with srv, caplog.at_level(logging.ERROR, "pluginkit.sdk"):
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            reply = c.call("Odd")
    assert reply.status == 500
    assert reply.json()["Err"].startswith("Odd: the plugin's reply is not JSON: ")


def test_raw_handler_gets_bytes(short_tmp: Path) -> None:
    """raw=True hands the body over as bytes, undecoded."""
    srv = PluginServer([])
    srv.add_handler("Raw", lambda body: {"len": len(body), "type": type(body).__name__}, raw=True)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            c.send(c.request_bytes("Raw", b"\x00\x01not json"))
            assert c.read_reply().json() == {"len": 10, "type": "bytes"}


def test_start_twice_is_refused(server: PluginServer) -> None:
    """start() on a serving server fails, naming where it serves."""
    with pytest.raises(PluginError, match="the server is already serving at unix://"):
        server.start("tcp://127.0.0.1:0")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make a certificate"
)
@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_tls_over_tcp(short_tmp: Path, threads: int) -> None:
    """certfile/keyfile serve TLS; a verifying client gets the handshake and a large reply."""
    cert, key = _self_signed(short_tmp)
    big = bytes(range(256)) * 8192  # 2 MiB: written in many pieces
    srv = PluginServer(["VolumeDriver"], threads=threads)
    srv.add_handler("Big", lambda request: big)
    with srv:
        srv.start("tcp://127.0.0.1:0", certfile=cert, keyfile=key)
        assert srv.address is not None
        port = int(srv.address.rpartition(":")[2])
        context = ssl.create_default_context(cafile=str(cert))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            client = RawClient.__new__(RawClient)
            client.sock, client.buf = tls, b""
            for _ in range(3):
                assert client.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}
                assert client.call("Big").body == big


def test_half_closed_client_still_gets_reply(client: RawClient) -> None:
    """A client that shuts down its sending side after a request still gets the reply."""
    client.send(client.request_bytes("Echo", b'{"last": 1}'))
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_reply().json() == {"last": 1}
    assert client.closed_by_server()


def test_stop_is_bounded_by_a_stuck_inline_handler(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """stop(timeout) returns even when an inline handler never finishes; the socket is removed."""
    entered = threading.Event()
    release = threading.Event()
    srv = PluginServer([])

    @srv.handler("Stuck")
    def stuck(request: Any) -> Any:
        entered.set()
        release.wait(30)
        return {}

    srv.start(short_tmp / "s.sock")
    c = RawClient(short_tmp / "s.sock")
    try:
        c.send(c.request_bytes("Stuck"))
        assert entered.wait(10)
        with caplog.at_level(logging.WARNING, "pluginkit.sdk"):
            srv.stop(timeout=0.1)
        assert not srv.serving
        assert not (short_tmp / "s.sock").exists()
        assert "still running after the stop timeout" in caplog.text
    finally:
        release.set()
        c.close()


SLOW_PLUGIN = """
import sys, threading, time
from pluginkit.sdk import PluginServer

server = PluginServer(["VolumeDriver"])

@server.handler("Slow")
def slow(request):
    print("in handler", flush=True)
    time.sleep(1.0)
    return {"finished": True}

server.serve(sys.argv[1])
print("served", flush=True)
"""


@contextlib.contextmanager
def plugin_process(script: str, sock: Path) -> Iterator[subprocess.Popen[str]]:
    """Run ``script`` (serving at ``sock``) in a Python process; yield it once it listens."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(sock)],
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=30)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_sigterm_during_request_lets_it_finish(short_tmp: Path) -> None:
    """SIGTERM to a process in serve() lets the in-flight request finish, then it exits 0."""
    sock = short_tmp / "slow.sock"
    with plugin_process(SLOW_PLUGIN, sock) as proc, RawClient(sock) as c:
        c.send(c.request_bytes("Slow"))
        assert proc.stdout is not None
        assert proc.stdout.readline() == "in handler\n"
        proc.send_signal(signal.SIGTERM)
        reply = c.read_reply()
        assert (reply.status, reply.json()) == (200, {"finished": True})
        assert proc.wait(30) == 0
        assert proc.stdout.read() == "served\n"
        assert not sock.exists()


STUCK_PLUGIN = """
import logging, sys, time
from pluginkit.sdk import PluginServer

logging.basicConfig()

server = PluginServer(["VolumeDriver"], stop_timeout=120)

@server.handler("Stuck")
def stuck(request):
    print("in handler", flush=True)
    try:
        time.sleep(120)
    except Exception:
        print("a handler's except Exception caught the stop", flush=True)
    return {}

server.serve(sys.argv[1])
print("served", flush=True)
"""


def test_a_second_sigterm_stops_at_once(short_tmp: Path) -> None:
    """SIGTERM waits for a stuck inline handler; a second one stops serve() at once, cleaned up."""
    sock = short_tmp / "stuck.sock"
    with plugin_process(STUCK_PLUGIN, sock) as proc, RawClient(sock) as c:
        c.send(c.request_bytes("Stuck"))
        assert proc.stdout is not None
        assert proc.stdout.readline() == "in handler\n"
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)  # graceful: the handler may take its time
        assert sock.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # well before the handler's 120 s
        assert c.closed_by_server()
        assert proc.stdout.read() == "served\n"
        assert proc.stderr is not None
        assert "stopped at once by a second SIGTERM" in proc.stderr.read()
        assert not sock.exists()


def test_deeply_nested_json_is_400_and_server_keeps_serving(client: RawClient) -> None:
    """A body nested deeper than the JSON decoder can go answers 400; the server lives on."""
    client.send(client.request_bytes("Echo", b"[" * 100_000))
    reply = client.read_reply()
    assert (reply.status, reply.json()) == (
        400,
        {"Err": "Echo: request body is not valid JSON: it is nested too deeply"},
    )
    assert client.call("Echo", {"after": "deep"}).json() == {"after": "deep"}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_reply_nested_too_deeply_is_500(
    short_tmp: Path, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply too deep to encode answers 500 naming the method, and is logged; serving goes on."""
    srv = PluginServer([], threads=threads)
    srv.add_handler("Deep", lambda request: _nested(100_000))
    srv.add_handler("Echo", lambda request: request)
    with srv, caplog.at_level(logging.ERROR, "pluginkit.sdk"):
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            reply = c.call("Deep")
            assert (reply.status, reply.json()) == (
                500,
                {"Err": "Deep: the plugin's reply is not JSON: it is nested too deeply"},
            )
            assert c.call("Echo", [1]).json() == [1]
    assert "handler for Deep returned a value that is not JSON" in caplog.text


class _Treacherous:
    """A reply whose attribute lookups fail in an unexpected way."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_failure_while_building_a_reply_is_500_and_logged(
    short_tmp: Path, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception while turning a handler's result into a reply answers 500; serving goes on."""
    srv = PluginServer([], threads=threads)
    srv.add_handler("Odd", lambda request: _Treacherous())
    srv.add_handler("Echo", lambda request: request)
    with srv, caplog.at_level(logging.ERROR, "pluginkit.sdk"):
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            reply = c.call("Odd")
            assert (reply.status, reply.json(), reply.headers["connection"]) == (
                500,
                {"Err": "Odd: the plugin server failed to build the reply: no read here"},
                "close",
            )
            assert c.closed_by_server()
        with RawClient(short_tmp / "s.sock") as c:
            assert c.call("Echo", [3]).json() == [3]
    assert "plugin server at unix://" in caplog.text
    assert "failed to answer /Odd" in caplog.text


FD_LIMITED_PLUGIN = """
import logging, resource, sys
from pluginkit.sdk import PluginServer

logging.basicConfig(filename=sys.argv[2], level=logging.WARNING, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
server = PluginServer([], max_connections=1000)  # a cap above the limit: accept() fails
server.add_handler("Echo", lambda request: request)
server.serve(sys.argv[1])
"""


def test_out_of_file_descriptors_backs_off_and_recovers(short_tmp: Path) -> None:
    """When accept() runs out of descriptors the server backs off (no log flood) and recovers."""
    sock, log = short_tmp / "fd.sock", short_tmp / "fd.log"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", FD_LIMITED_PLUGIN, str(sock), str(log)],
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    clients: list[socket.socket] = []
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=30)
        for _ in range(40):  # more than the server has descriptors for
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(sock))
            clients.append(client)
        wait_for(lambda: log.exists() and "accept failed" in log.read_text())
        threading.Event().wait(0.5)  # hold the descriptors for a while
        for client in clients:
            client.close()
        clients.clear()

        def served() -> bool:
            with RawClient(sock, timeout=5) as c:
                return bool(c.call("Echo", [1]).json() == [1])

        wait_for(served)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        failures = [line for line in log.read_text().splitlines() if "accept failed" in line]
        assert 1 <= len(failures) <= 15, f"{len(failures)} accept failures logged"
        assert "Too many open files; retrying in 0.005 s" in failures[0]
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_client_not_reading_its_reply_does_not_hold_a_worker(short_tmp: Path) -> None:
    """With threads=1, a client that leaves a large reply unread does not stall other clients."""
    big = b"x" * 8_000_000  # far more than a socket buffer holds
    srv = PluginServer([], threads=1)
    srv.add_handler("Big", lambda request: big)
    srv.add_handler("Echo", lambda request: request)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as slow, RawClient(short_tmp / "s.sock") as other:
            slow.send(slow.request_bytes("Big"))
            assert other.call("Echo", {"n": 1}).json() == {"n": 1}
            assert other.call("Echo", {"n": 2}).json() == {"n": 2}
            reply = slow.read_reply()
            assert (reply.status, len(reply.body), reply.body == big) == (200, len(big), True)
            assert slow.call("Echo", {"n": 3}).json() == {"n": 3}


def _refused(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    finally:
        probe.close()
    return False


def test_stop_under_load_refuses_new_and_finishes_in_flight(short_tmp: Path) -> None:
    """During stop(), new connections are refused while every in-flight request still finishes."""
    entered = threading.Semaphore(0)
    release = threading.Event()
    srv = PluginServer([], threads=4)

    @srv.handler("Slow")
    def slow(request: Any) -> Any:
        entered.release()
        release.wait(10)
        return request

    srv.start(short_tmp / "s.sock")
    clients = [RawClient(short_tmp / "s.sock") for _ in range(4)]
    try:
        for n, c in enumerate(clients):
            c.send(c.request_bytes("Slow", json.dumps({"n": n}).encode()))
        for _ in clients:
            assert entered.acquire(timeout=10)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        wait_for(lambda: _refused(short_tmp / "s.sock"))
        assert stopper.is_alive()
        release.set()
        replies = [c.read_reply() for c in clients]
        stopper.join(30)
        assert not stopper.is_alive()
        assert [(r.status, r.json(), r.headers["connection"]) for r in replies] == [
            (200, {"n": n}, "close") for n in range(4)
        ]
        assert all(c.closed_by_server() for c in clients)
        assert not (short_tmp / "s.sock").exists()
    finally:
        release.set()
        for c in clients:
            c.close()


_wire_pieces = st.sampled_from(
    [
        b"POST /Echo HTTP/1.1\r\n",
        b"POST /Echo HTTP/1.0\r\n",
        b"GET / HTTP/1.1\r\n",
        b"Content-Length: 2\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: 99999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"Connection: close\r\n",
        b"\r\n",
        b"{}",
        b"[[[[",
        b"2\r\n{}\r\n0\r\n\r\n",
        b"\xff\x00\n",
    ]
)


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_any_bytes_on_the_wire_never_stop_the_server(short_tmp: Path, threads: int) -> None:
    """Whatever a client sends and however it hangs up, the server answers the next client."""
    srv = PluginServer([], threads=threads, max_body=1000)
    srv.add_handler("Echo", lambda request: request)
    sock = short_tmp / "s.sock"

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.one_of(_wire_pieces, st.binary(max_size=40)), max_size=12))
    def send(pieces: list[bytes]) -> None:
        with RawClient(sock, timeout=10) as c:
            c.send(b"".join(pieces))
            c.sock.shutdown(socket.SHUT_WR)
            while c.sock.recv(65536):  # the server must close its side once we did
                pass
        with RawClient(sock, timeout=10) as c:
            assert c.call("Echo", {"ok": True}).json() == {"ok": True}

    with srv:
        srv.start(sock)
        send()


def test_http10_keep_alive_is_confirmed_and_kept(client: RawClient) -> None:
    """An HTTP/1.0 client asking for keep-alive gets "Connection: keep-alive", and keeps it."""
    for n in range(2):
        client.send(
            b"POST /Echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 7\r\n\r\n"
            b'{"n":%d}' % n
        )
        reply = client.read_reply()
        assert (reply.status, reply.json(), reply.headers["connection"]) == (
            200,
            {"n": n},
            "keep-alive",
        )


def test_http10_plain_request_is_answered_then_closed(client: RawClient) -> None:
    """An HTTP/1.0 request without keep-alive is answered with "Connection: close", then closed."""
    client.send(b"POST /Echo HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    reply = client.read_reply()
    assert (reply.status, reply.headers["connection"]) == (200, "close")
    assert client.closed_by_server()


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_http10_streamed_reply_is_not_chunked(short_tmp: Path, threads: int) -> None:
    """HTTP/1.0 knows no chunked coding: a streamed reply is sent raw and ended by closing."""
    srv = PluginServer([], threads=threads)
    srv.add_handler("Logs", lambda request: iter([b"line 1\n", b"", b"line 2\n"]))
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            c.send(b"POST /Logs HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            data = b""
            while chunk := c.sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    assert body == b"line 1\nline 2\n"


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_stream_failing_midway_is_cut_and_logged(
    short_tmp: Path, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An iterator raising mid-stream closes the connection (no last chunk) and is logged."""

    def pieces() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("disk gone")

    srv = PluginServer([], threads=threads)
    srv.add_handler("Logs", lambda request: pieces())
    srv.add_handler("Echo", lambda request: request)
    with srv, caplog.at_level(logging.ERROR, "pluginkit.sdk"):
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as c:
            c.send(c.request_bytes("Logs"))
            data = b""
            while piece := c.sock.recv(65536):
                data += piece
        with RawClient(short_tmp / "s.sock") as c:
            assert c.call("Echo", [4]).json() == [4]
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"5\r\nfirst\r\n"  # cut: no "0\r\n\r\n", so the client sees it failed
    assert "RuntimeError: disk gone" in caplog.text


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_stalled_request_is_answered_408_and_closed(short_tmp: Path, threads: int) -> None:
    """A client that starts a request and stalls (slowloris) is answered 408 and disconnected."""
    srv = PluginServer([], threads=threads, read_timeout=0.2)
    srv.add_handler("Echo", lambda request: request)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as idle, RawClient(short_tmp / "s.sock") as slow:
            assert idle.call("Echo", [1]).json() == [1]
            slow.send(b"POST /Echo HTTP/1.1\r\nContent-Le")
            reply = slow.read_reply()
            assert (reply.status, reply.json(), reply.headers["connection"]) == (
                408,
                {"Err": "request not completed within 0.2 s"},
                "close",
            )
            assert slow.closed_by_server()
            # an idle keep-alive connection is not a stalled request: it stays open
            assert idle.call("Echo", [2]).json() == [2]


def test_read_timeout_must_be_positive() -> None:
    """read_timeout is a positive number of seconds or None."""
    with pytest.raises(ValueError, match=r"read_timeout must be a number > 0 or None, not 0"):
        PluginServer([], read_timeout=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_body": -1}, "max_body must be an int >= 0, not -1"),
        ({"max_body": "1M"}, "max_body must be an int >= 0, not '1M'"),
        ({"stop_timeout": -1}, "stop_timeout must be a number >= 0, not -1"),
        ({"stop_timeout": None}, "stop_timeout must be a number >= 0, not None"),
    ],
)
def test_bad_limits_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    """max_body and stop_timeout of the wrong type or sign fail at construction, named."""
    with pytest.raises(ValueError, match="must be") as info:
        PluginServer([], **options)
    assert str(info.value) == message


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make a certificate"
)
def test_stalled_tls_handshake_is_cut(short_tmp: Path) -> None:
    """A TCP client that never starts its TLS handshake is disconnected after read_timeout."""
    cert, key = _self_signed(short_tmp)
    srv = PluginServer([], read_timeout=0.2)
    with srv:
        srv.start("tcp://127.0.0.1:0", certfile=cert, keyfile=key)
        assert srv.address is not None
        port = int(srv.address.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            assert raw.recv(1) == b""


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_half_closed_client_gets_every_pipelined_reply(short_tmp: Path, threads: int) -> None:
    """Two pipelined requests then EOF: both are answered, then the connection is closed."""
    srv = PluginServer([], threads=threads)

    def slow(request: Any) -> Any:
        time.sleep(0.05)
        return request

    srv.add_handler("Slow", slow)
    with srv:
        srv.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as client:
            client.send(client.request_bytes("Slow", b"[1]") + client.request_bytes("Slow", b"[2]"))
            client.sock.shutdown(socket.SHUT_WR)
            assert [client.read_reply().json() for _ in range(2)] == [[1], [2]]
            assert client.closed_by_server()


INHERITING_PLUGIN = """
import os
from pluginkit.sdk import PluginServer

server = PluginServer(["VolumeDriver"])

@server.handler("Env")
def env(request):
    return {k: os.environ.get(k) for k in ("LISTEN_FDS", "LISTEN_PID")}

server.serve()
"""


def test_serves_on_an_inherited_socket_and_leaves_its_path(short_tmp: Path) -> None:
    """LISTEN_FDS/LISTEN_PID (systemd's convention): fd 3 is served as is, its path kept."""
    from pluginkit.runtime._listen_fd import exec_with_listen_fd

    path = short_tmp / "given.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    root = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-c", INHERITING_PLUGIN]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        argv,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=exec_with_listen_fd(listener.fileno(), argv, env),
    )
    try:
        with RawClient(path, timeout=30) as c:
            # The variables are gone once read: children of the plugin do not see them.
            assert c.call("Env").json() == {"LISTEN_FDS": None, "LISTEN_PID": None}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"plugin server listening on unix://{path}" in err
        assert stat.S_ISSOCK(path.lstat().st_mode)  # not removed: it is not the server's
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def test_listen_fds_of_another_process_is_ignored(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LISTEN_PID that is not ours: the server binds its own socket; the variables go."""
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("PLUGINKIT_SOCKET_DIR", str(short_tmp))
    monkeypatch.setenv("PLUGINKIT_SOCKET", "own.sock")
    with PluginServer(["VolumeDriver"]) as srv:
        srv.start()
        assert srv.address == f"unix://{short_tmp / 'own.sock'}"
        assert "LISTEN_FDS" not in os.environ
        assert "LISTEN_PID" not in os.environ
    assert not (short_tmp / "own.sock").exists()


def test_more_than_one_inherited_socket_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server serves one inherited socket: LISTEN_FDS=2 is refused, naming the count."""
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    srv = PluginServer(["VolumeDriver"])
    with pytest.raises(PluginError) as info:
        srv.start()
    assert str(info.value) == "LISTEN_FDS=2: the server serves on one inherited socket, not 2"
    assert not srv.serving
