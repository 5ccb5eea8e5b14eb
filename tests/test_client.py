"""Client: Docker's plugin calls over real sockets (ports of pkg/plugins/client_test.go)."""

# Nested with-blocks read as "server, then client, then expected error".
# ruff: noqa: SIM117

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _async_adapter import client_kind, parametrize_clients
from _client_helpers import (
    HTTPPluginServer,
    RawServer,
    Request,
    activate,
    echo,
    full_backlog,
    read_request,
    reply,
)
from hypothesis import given
from hypothesis import strategies as st

from pluginkit import (
    Client,
    InvalidConfigError,
    PluginCallError,
    PluginConnectionError,
    PluginProtocolError,
    PluginTimeoutError,
    TLSConfig,
)
from pluginkit._client import (
    _backoff,
    _BadReply,
    _Chunked,
    _complete,
    _parse_head,
    call_concurrently,
    parse_address,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

# Every test that makes calls runs with Client and with AsyncClient (behind
# the name Client); these look inside the sync client or need one.
pytest_generate_tests = parametrize_clients(
    [
        "test_forked_child_does_not_share_pooled_connections",  # the test's loop is a thread
        "test_bare_lf_reply_heads_are_accepted",  # ends with call_concurrently
    ]
)
__all__ = ["client_kind"]  # the fixture that puts AsyncClient behind Client


def keep_alive(first: bytes | None = None, then: bytes = OK) -> Callable[[socket.socket], None]:
    """A RawServer behaviour answering ``then`` to every request, ``first`` to the very first."""
    pending = [] if first is None else [first]

    def behaviour(conn: socket.socket) -> None:
        with contextlib.suppress(IndexError):
            reply(conn, pending.pop())  # only on the first connection
        while read_request(conn):
            conn.sendall(then)

    return behaviour


@pytest.fixture
def echo_server(short_tmp: Path) -> Iterator[HTTPPluginServer]:
    with HTTPPluginServer(
        short_tmp / "echo.sock", {"Test.Echo": echo, "Plugin.Activate": activate("VolumeDriver")}
    ) as server:
        yield server


# -- ports of Docker's client tests ------------------------------------------


def test_failed_connection():
    """Nothing listening and no retries: PluginConnectionError naming the method and address."""
    with Client("tcp://127.0.0.1:1", retry_timeout=0) as client:
        with pytest.raises(PluginConnectionError) as info:
            client.call("Service.Method")
    assert str(info.value) == (
        "Service.Method: cannot connect to plugin at tcp://127.0.0.1:1: Connection refused"
    )
    assert isinstance(info.value, ConnectionError)


def test_fail_once_then_retry(short_tmp: Path, caplog: pytest.LogCaptureFixture):
    """A connection dropped before any reply is retried (logged as a re-send), and succeeds."""
    calls = []

    def behaviour(conn: socket.socket) -> None:
        calls.append(1)
        if len(calls) == 1:
            read_request(conn)
            return  # drop it, like Docker's panicking handler
        reply(conn, OK)

    with RawServer(short_tmp / "p.sock", behaviour) as server:
        with Client(server.addr, backoff_unit=0.01) as client:
            with caplog.at_level(logging.WARNING, logger="pluginkit.client"):
                assert client.call("Test.FailOnce") == {}
    assert len(calls) == 2
    assert caplog.messages == [
        f"Test.FailOnce: the connection to plugin at {server.addr} broke before any reply:"
        " connection closed by the plugin, sending the request again in 0.01 s"
    ]


def test_echo_input_output(echo_server: HTTPPluginServer):
    """JSON round-trips; the request is a POST with Docker's headers and no Content-Type."""
    manifest = {"Implements": ["VolumeDriver", "NetworkDriver"]}
    with Client(echo_server.addr) as client:
        assert client.call("Test.Echo", manifest) == manifest
        assert client.call("Test.Echo") is None
    first, second = echo_server.requests
    assert first.http_method == "POST"
    assert first.method == "Test.Echo"
    assert first.headers["accept"] == "application/vnd.docker.plugins.v1.2+json"
    assert first.headers["host"] == "plugin.moby.localhost"
    assert "content-type" not in first.headers
    assert json.loads(first.body) == manifest
    assert second.body == b""
    assert second.headers["content-length"] == "0"


@pytest.mark.parametrize(("retries", "delay"), [(0, 1), (1, 2), (2, 4), (4, 16), (6, 30), (10, 30)])
def test_backoff(retries: int, delay: int):
    """Docker's backoff doubles from 1 and is capped at 30."""
    assert _backoff(retries) == delay


def test_retry_schedule_gives_up_like_docker(short_tmp: Path):
    """Retries stop when elapsed + next delay reaches retry_timeout: 5 attempts (Docker: ~15 s)."""

    def behaviour(conn: socket.socket) -> None:
        return  # accept and close: a connection failure every time

    with RawServer(short_tmp / "p.sock", behaviour) as server:
        # Docker's 30 s budget and 1 s unit, scaled down 20 times.
        with Client(server.addr, retry_timeout=1.5, backoff_unit=0.05) as client:
            with pytest.raises(PluginConnectionError) as info:
                client.call("Test.Method")
        attempts = server.accepted
    assert attempts == 5
    assert str(info.value).endswith("(gave up after 5 attempts)")


def test_retry_disabled_with_zero(short_tmp: Path):
    """retry_timeout=0 makes exactly one attempt."""
    with RawServer(short_tmp / "p.sock", lambda conn: None) as server:
        with Client(server.addr, retry_timeout=0) as client:
            with pytest.raises(PluginConnectionError):
                client.call("Test.Method")
        assert server.accepted == 1


def test_retry_waits_for_a_socket_that_appears(short_tmp: Path):
    """A plugin whose socket shows up during the retries is reached."""
    path = short_tmp / "late.sock"
    holder: list[HTTPPluginServer] = []

    def start_later() -> None:
        time.sleep(0.05)
        server = HTTPPluginServer(path, {"Test.Echo": echo})
        holder.append(server.__enter__())

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        with Client(f"unix://{path}", retry_timeout=5, backoff_unit=0.02) as client:
            assert client.call("Test.Echo", [1]) == [1]
    finally:
        thread.join()
        for server in holder:
            server.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("addr", "tls", "target"),
    [
        ("tcp://127.0.0.1:8080", False, ("127.0.0.1", 8080)),
        ("unix:///run/docker/plugins/x.sock", False, "/run/docker/plugins/x.sock"),
        ("http://example.com:8080", False, ("example.com", 8080)),
        ("https://example.com", True, ("example.com", 443)),
        ("http://example.com/docker/plugin", False, ("example.com", 80)),
    ],
)
def test_client_scheme(addr: str, tls: bool, target: object):
    """tcp, unix and http speak plain HTTP; only https is TLS; URL paths are ignored."""
    address = parse_address(addr)
    assert address.tls is tls
    got = address.unix_path if address.unix_path is not None else (address.host, address.port)
    assert got == target


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("localhost:8080", "invalid plugin address 'localhost:8080': no scheme"),
        ("ftp://x:1", "invalid plugin address 'ftp://x:1': unknown scheme 'ftp'"),
        ("tcp://host", "invalid plugin address 'tcp://host': no port"),
        ("unix://", "invalid plugin address 'unix://': empty socket path"),
        ("tcp://:80", "invalid plugin address 'tcp://:80': no host"),
    ],
)
def test_bad_addresses(addr: str, message: str):
    """Bad addresses fail at construction with a message naming them."""
    with pytest.raises(InvalidConfigError) as info:
        Client(addr)
    assert str(info.value).startswith(message)


def test_unix_path_too_long():
    """A unix socket path over 107 bytes is refused with Docker's message."""
    path = "/" + "x" * 120
    with pytest.raises(InvalidConfigError) as info:
        Client(f"unix://{path}")
    assert str(info.value) == f"unix socket path {path!r} is too long"


def test_timeout_is_not_retried(short_tmp: Path):
    """A plugin slower than the timeout gives PluginTimeoutError, with one request only."""
    release = threading.Event()

    def slow(request: Request) -> tuple[int, bytes]:
        release.wait(5)
        return 200, b"{}"

    with HTTPPluginServer(short_tmp / "slow.sock", {"Test.Slow": slow}) as server:
        with Client(server.addr, timeout=0.05) as client:
            with pytest.raises(PluginTimeoutError) as info:
                client.call("Test.Slow")
        release.set()
        assert len(server.requests) == 1
    assert str(info.value) == f"Test.Slow: plugin at {server.addr} did not answer within 0.05 s"
    assert isinstance(info.value, TimeoutError)


def test_request_timeout_per_call(short_tmp: Path):
    """A per-call timeout applies even when the client has none."""
    release = threading.Event()

    def blocked(request: Request) -> tuple[int, bytes]:
        release.wait(5)
        return 200, b"{}"

    with HTTPPluginServer(short_tmp / "b.sock", {"Test.Block": blocked}) as server:
        with Client(server.addr) as client, pytest.raises(PluginTimeoutError):
            client.call("Test.Block", timeout=0.01, retry_timeout=0)
        release.set()


def test_client_stream(echo_server: HTTPPluginServer):
    """stream() yields the body as a binary stream."""
    m = {"Implements": ["VolumeDriver"]}
    with Client(echo_server.addr) as client:
        with client.stream("Test.Echo", m) as body:
            assert json.load(body) == m
        # The connection went back to the pool and serves the next call.
        assert client.call("Test.Echo", [2]) == [2]


def test_client_send_file_bytes_and_file(echo_server: HTTPPluginServer, tmp_path: Path):
    """send_file() sends bytes, regular files (sized) and other file objects (chunked)."""
    m = {"Implements": ["VolumeDriver"]}
    data = json.dumps(m).encode()
    path = tmp_path / "body.json"
    path.write_bytes(data)
    with Client(echo_server.addr) as client:
        assert client.send_file("Test.Echo", data) == m
        with path.open("rb") as file:
            assert client.send_file("Test.Echo", file) == m
        assert client.send_file("Test.Echo", io.BytesIO(data)) == m
    sized, streamed = echo_server.requests[1], echo_server.requests[2]
    assert sized.headers["content-length"] == str(len(data))
    assert streamed.headers["transfer-encoding"] == "chunked"


def test_send_file_rejects_other_types(echo_server: HTTPPluginServer):
    """send_file() of a str is a TypeError naming the type."""
    with Client(echo_server.addr) as client:
        with pytest.raises(TypeError, match="bytes or a binary file, not str"):
            client.send_file("Test.Echo", "text")  # type: ignore[arg-type]


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"Err": "volume exists"}', "volume exists"),
        (400, b"plain text error", "plain text error"),
        (500, b'{"Err": ""}', '{"Err": ""}'),
        (404, b"404 page not found\n", "404 page not found\n"),
    ],
)
def test_http_errors(short_tmp: Path, status: int, body: bytes, message: str):
    """Non-200 replies raise PluginCallError (Err, else the body) and are not retried."""
    with HTTPPluginServer(
        short_tmp / "e.sock", {"VolumeDriver.Create": lambda r: (status, body)}
    ) as s:
        with Client(s.addr) as client, pytest.raises(PluginCallError) as info:
            client.call("VolumeDriver.Create", {"Name": "v"})
        assert len(s.requests) == 1
    assert (info.value.method, info.value.status, info.value.message) == (
        "VolumeDriver.Create",
        status,
        message,
    )
    assert str(info.value) == f"VolumeDriver.Create: {message}"


def test_stream_http_error(short_tmp: Path):
    """stream() raises PluginCallError on a non-200 reply."""
    with HTTPPluginServer(short_tmp / "e.sock", {"X": lambda r: (500, b'{"Err":"no"}')}) as s:
        with Client(s.addr) as client:
            with pytest.raises(PluginCallError, match=r"^X: no$"):
                with client.stream("X"):
                    pass


def test_non_json_reply(short_tmp: Path):
    """A 200 reply that is not JSON is a PluginProtocolError naming method and address."""
    with HTTPPluginServer(short_tmp / "n.sock", {"X.Y": lambda r: (200, b"<html>")}) as s:
        with Client(s.addr) as client:
            with pytest.raises(PluginProtocolError) as info:
                client.call("X.Y")
    assert str(info.value).startswith(f"X.Y: reply from plugin at {s.addr} is not JSON: ")


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b'{"a": 1} \r\n\t', {"a": 1}), (b'{"a": 1}\x0b', None), (b'{"a": 1} x', None)],
)
def test_only_json_whitespace_may_follow_the_reply(short_tmp: Path, body: bytes, expected: object):
    """After the JSON value only JSON whitespace is accepted, exactly as json.loads decides."""
    with HTTPPluginServer(short_tmp / "w.sock", {"X.Y": lambda r: (200, body)}) as s:
        with Client(s.addr) as client:
            if expected is not None:
                assert client.call("X.Y") == expected
                return
            with pytest.raises(PluginProtocolError) as info:
                client.call("X.Y")
    assert str(info.value).startswith(f"X.Y: reply from plugin at {s.addr} is not JSON: ")
    assert "Extra data" in str(info.value)


DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON, deeper than Python's decoder goes


@pytest.mark.parametrize("path", ["fast", "general", "concurrent"])
def test_too_deeply_nested_reply_is_a_protocol_error(short_tmp: Path, path: str):
    """A reply nested deeper than the decoder goes is a PluginProtocolError; the call is over."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(DEEP), DEEP)
    with serving(short_tmp, raw, path) as (server, client):
        with pytest.raises(PluginProtocolError) as info:
            call_on(path, client)
        assert client.call("X") == {}  # the connection, read to the end, was kept
        assert server.accepted == 1
    assert str(info.value) == (
        f"X: reply from plugin at {server.addr} is not JSON: it is nested too deeply"
        f" (reply starts with {DEEP[:60]!r})"
    )


def test_too_deeply_nested_error_reply_is_its_body(short_tmp: Path):
    """A non-200 reply nested too deeply to look for `Err` gives its body as the message."""
    with HTTPPluginServer(short_tmp / "e.sock", {"X": lambda r: (500, DEEP)}) as s:
        with Client(s.addr) as client, pytest.raises(PluginCallError) as info:
            client.call("X")
    assert (info.value.status, info.value.message) == (500, DEEP.decode())


def test_truncated_reply(short_tmp: Path):
    """A reply cut short of its Content-Length is a PluginProtocolError, not retried."""
    raw = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":'
    with RawServer(short_tmp / "t.sock", lambda conn: reply(conn, raw)) as server:
        with Client(server.addr, backoff_unit=0.01) as client:
            with pytest.raises(PluginProtocolError) as info:
                client.call("X.Y")
        assert server.accepted == 1
    assert str(info.value) == (
        f"X.Y: invalid reply from plugin at {server.addr}: reply truncated: got 5 of 100 bytes"
    )


def test_not_http_reply(short_tmp: Path):
    """Garbage instead of HTTP is a PluginProtocolError."""
    with RawServer(short_tmp / "g.sock", lambda conn: reply(conn, b"SSH-2.0-x\r\n\r\n")) as s:
        with Client(s.addr) as client:
            with pytest.raises(PluginProtocolError, match=r"not an HTTP/1\.x reply"):
                client.call("X.Y")


def test_response_size_cap(short_tmp: Path):
    """A reply over max_response_size is refused with a clear message."""
    big = b"[" + b"1," * 600 + b"1]"
    with (
        HTTPPluginServer(
            short_tmp / "big.sock", {"Big": lambda r: (200, big), "Small": echo}
        ) as server,
        Client(server.addr, max_response_size=1000) as client,
    ):
        assert client.call("Small", [1]) == [1]  # the next call reuses this connection
        with pytest.raises(PluginProtocolError) as info:
            client.call("Big")
    assert str(info.value) == (
        f"Big: invalid reply from plugin at {server.addr}: the reply ({len(big)} bytes or more)"
        " is larger than the limit of 1000 bytes (max_response_size)"
    )


def test_chunked_reply(short_tmp: Path):
    """Chunked replies are decoded, and the connection is kept for the next call."""
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
    )

    def behaviour(conn: socket.socket) -> None:
        reply(conn, raw)
        reply(conn, raw)

    with RawServer(short_tmp / "c.sock", behaviour) as server:
        with Client(server.addr) as client:
            assert client.call("X") == {"a": 1}
            assert client.call("X") == {"a": 1}
        assert server.accepted == 1


def test_body_until_close(short_tmp: Path):
    """An HTTP/1.0 reply without length ends at close, and is read whole."""
    raw = b'HTTP/1.0 200 OK\r\n\r\n{"old": true}'
    with RawServer(short_tmp / "o.sock", lambda conn: reply(conn, raw)) as server:
        with Client(server.addr) as client:
            assert client.call("X") == {"old": True}
            assert client.call("X") == {"old": True}
        assert server.accepted == 2


# -- connections -----------------------------------------------------------


def test_keep_alive_reuses_one_connection(short_tmp: Path):
    """Sequential calls share one kept-alive connection."""

    def behaviour(conn: socket.socket) -> None:
        for _ in range(3):
            reply(conn, OK)

    with RawServer(short_tmp / "k.sock", behaviour) as server:
        with Client(server.addr) as client:
            for _ in range(3):
                assert client.call("X") == {}
        assert server.accepted == 1


def test_connection_close_is_honoured(short_tmp: Path):
    """A reply with Connection: close is not reused."""
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    with RawServer(short_tmp / "k.sock", lambda conn: reply(conn, raw)) as server:
        with Client(server.addr, retry_timeout=0) as client:
            assert client.call("X") == {}
            assert client.call("X") == {}
        assert server.accepted == 2


def test_stale_pooled_connection_is_replaced(short_tmp: Path):
    """A kept connection the plugin closed is retried once on a fresh one, even without retries."""
    with RawServer(short_tmp / "s.sock", lambda conn: reply(conn, OK)) as server:
        with Client(server.addr, retry_timeout=0) as client:
            assert client.call("X") == {}
            assert client.call("X") == {}  # the first connection was closed after one reply
        assert server.accepted == 2


def test_thread_safety(echo_server: HTTPPluginServer):
    """Many threads calling one client each get their own answers."""
    errors: list[BaseException] = []

    with Client(echo_server.addr) as client:

        def worker(n: int) -> None:
            try:
                for i in range(20):
                    assert client.call("Test.Echo", [n, i]) == [n, i]
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(echo_server.requests) == 160


def test_closed_client_refuses_calls(echo_server: HTTPPluginServer):
    """After close(), call, send_file and stream raise PluginConnectionError naming the method."""
    client = Client(echo_server.addr)
    assert client.call("Test.Echo", 1) == 1
    client.close()
    with pytest.raises(PluginConnectionError) as raised:
        client.call("Test.Echo", 1)
    assert str(raised.value) == (
        f"Test.Echo: cannot call plugin at {echo_server.addr}: client is closed"
    )
    with pytest.raises(PluginConnectionError) as raised:
        client.send_file("Test.Send", b"data")
    assert str(raised.value) == (
        f"Test.Send: cannot call plugin at {echo_server.addr}: client is closed"
    )
    with pytest.raises(PluginConnectionError) as raised:
        with client.stream("Test.Stream"):
            pass
    assert str(raised.value) == (
        f"Test.Stream: cannot call plugin at {echo_server.addr}: client is closed"
    )
    assert len(echo_server.requests) == 1


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_full_listen_backlog_is_a_connection_failure(short_tmp: Path, timeout: float | None):
    """A plugin whose backlog is full is a connection failure at once, never a hang."""
    outcome: list[BaseException] = []

    def call(client: Client) -> None:
        try:
            client.call("X")
        except PluginConnectionError as exc:
            outcome.append(exc)

    with full_backlog(short_tmp / "full.sock") as addr:
        with Client(addr, timeout=timeout, retry_timeout=0) as client:
            caller = threading.Thread(target=call, args=(client,), daemon=True)
            caller.start()
            caller.join(5)
    assert [str(exc) for exc in outcome] == [
        f"X: cannot connect to plugin at {addr}: Resource temporarily unavailable"
    ]


def test_full_listen_backlog_is_retried(short_tmp: Path, caplog: pytest.LogCaptureFixture):
    """A full backlog is retried with backoff like any connection failure (Go fails the dial)."""
    with full_backlog(short_tmp / "full.sock") as addr:
        with Client(addr, retry_timeout=0.5, backoff_unit=0.1) as client:
            with caplog.at_level(logging.WARNING, logger="pluginkit.client"):
                with pytest.raises(PluginConnectionError) as info:
                    client.call("X")
    assert str(info.value) == (
        f"X: cannot connect to plugin at {addr}: Resource temporarily unavailable"
        " (gave up after 3 attempts)"
    )
    assert caplog.messages == [
        f"X: cannot connect to plugin at {addr}: Resource temporarily unavailable,"
        f" retrying in {delay:g} s"
        for delay in (0.1, 0.2)
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry_timeout": -1}, "retry_timeout must be >= 0, not -1"),
        ({"retry_timeout": float("nan")}, "retry_timeout must be >= 0, not nan"),
        ({"backoff_unit": 0}, "backoff_unit must be > 0, not 0"),
        ({"backoff_unit": float("nan")}, "backoff_unit must be > 0, not nan"),
    ],
)
def test_bad_retry_settings_are_refused(kwargs: dict[str, float], message: str):
    """A negative or NaN retry budget (NaN would retry forever) or backoff unit is a ValueError."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        Client("unix:///x.sock", **kwargs)
    with (
        Client("unix:///x.sock") as client,
        pytest.raises(ValueError, match=r"^retry_timeout must be >= 0, not nan$"),
    ):
        client.call("X", retry_timeout=float("nan"))


def test_constructor_does_not_connect(short_tmp: Path):
    """Building a Client for a socket that does not exist yet is fine."""
    client = Client(f"unix://{short_tmp}/nothing.sock")
    assert client.addr == f"unix://{short_tmp}/nothing.sock"
    client.close()


def test_bad_method_name(echo_server: HTTPPluginServer):
    """A method with spaces or newlines is refused before anything is sent."""
    with Client(echo_server.addr) as client, pytest.raises(ValueError, match="invalid method name"):
        client.call("X Y\r\nHost: evil")


# -- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[HTTPPluginServer]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with HTTPPluginServer(None, {"Test.Echo": echo}, tls=context) as server:
        yield server


def test_tls_with_ca_file(tls_server: HTTPPluginServer, certificate: tuple[Path, Path]):
    """https:// with the server's certificate as CA works."""
    with Client(tls_server.addr, tls=TLSConfig(ca_file=str(certificate[0]))) as client:
        assert client.call("Test.Echo", {"tls": True}) == {"tls": True}
    assert tls_server.requests[0].headers["host"] == tls_server.addr.removeprefix("https://")


def test_tls_connection_is_kept_alive(tls_server: HTTPPluginServer):
    """Calls over TLS reuse one kept-alive connection."""
    accepted: list[object] = []
    server = tls_server._server
    get_request = server.get_request

    def counting() -> tuple[socket.socket, object]:
        accepted.append(1)
        return get_request()

    server.get_request = counting  # type: ignore[method-assign]
    with Client(tls_server.addr, tls=TLSConfig(insecure_skip_verify=True)) as client:
        for i in range(5):
            assert client.call("Test.Echo", [i]) == [i]
            assert client.call("Test.Echo", [i], timeout=5) == [i]
    assert len(accepted) == 1


def test_tls_insecure_skip_verify(tls_server: HTTPPluginServer):
    """insecure_skip_verify accepts a self-signed certificate."""
    with Client(tls_server.addr, tls=TLSConfig(insecure_skip_verify=True)) as client:
        assert client.call("Test.Echo", [1]) == [1]


def test_tls_unverified_is_not_retried(tls_server: HTTPPluginServer):
    """A certificate that does not verify fails at once (no 15 s of retries)."""
    with (
        Client(tls_server.addr, retry_timeout=30) as client,
        pytest.raises(PluginConnectionError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.call("Test.Echo", [1])


def test_tls_checks_the_host_name(tls_server: HTTPPluginServer, certificate: tuple[Path, Path]):
    """A trusted certificate for another name fails; insecure_skip_verify accepts it."""
    port = tls_server.addr.rsplit(":", 1)[1]
    addr = f"https://localhost:{port}"  # the certificate is for 127.0.0.1 only
    with (
        Client(addr, tls=TLSConfig(ca_file=str(certificate[0])), retry_timeout=30) as client,
        pytest.raises(PluginConnectionError, match="Hostname mismatch"),
    ):
        client.call("Test.Echo", [1])
    with Client(addr, tls=TLSConfig(insecure_skip_verify=True)) as client:
        assert client.call("Test.Echo", [1]) == [1]


def test_tls_missing_ca_file(tls_server: HTTPPluginServer, tmp_path: Path):
    """A CA file that does not exist is an InvalidConfigError naming it."""
    missing = tmp_path / "nope.pem"
    with (
        Client(tls_server.addr, tls=TLSConfig(ca_file=str(missing))) as client,
        pytest.raises(InvalidConfigError, match=f"cannot load CA file {missing}"),
    ):
        client.call("Test.Echo")


# -- parsers (hypothesis) ------------------------------------------------------


@given(
    body=st.binary(max_size=300),
    sizes=st.lists(st.integers(min_value=1, max_value=50), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
)
def test_chunked_decoder_round_trip(body: bytes, sizes: list[int], cuts: list[int]):
    """Any body, chunked any way and fed in any pieces, decodes to itself."""
    encoded = b""
    rest = body
    for size in sizes:
        if not rest:
            break
        chunk, rest = rest[:size], rest[size:]
        encoded += b"%x\r\n%b\r\n" % (len(chunk), chunk)
    if rest:
        encoded += b"%x\r\n%b\r\n" % (len(rest), rest)
    encoded += b"0\r\n\r\n"
    decoder = _Chunked()
    position = 0
    for cut in [*cuts, len(encoded)]:
        assert decoder.feed(encoded[position : position + cut]) == b""
        position += cut
        if position >= len(encoded):
            break
    assert decoder.done
    assert bytes(decoder.out) == body


@given(
    length=st.integers(min_value=0, max_value=10**9),
    name=st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]),
    close=st.booleans(),
)
def test_head_parser(length: int, name: str, close: bool):
    """Header names are case-insensitive; Connection: close ends keep-alive."""
    head = f"HTTP/1.1 200 OK\r\nDate: x\r\n{name}: {length}".encode()
    if close:
        head += b"\r\nConnection: close"
    parsed = _parse_head(head)
    assert (parsed.status, parsed.length, parsed.chunked, parsed.keep_alive) == (
        200,
        length,
        False,
        not close,
    )


@given(data=st.binary(max_size=200))
def test_complete_never_crashes(data: bytes):
    """Arbitrary bytes as a reply either parse, need more, or raise the parser's error."""
    from pluginkit._client import _BadReply, _TooLarge

    with contextlib.suppress(_BadReply, _TooLarge):
        _complete(data, True, 1000)


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5})?", fullmatch=True),
    port=st.integers(min_value=1, max_value=65535),
    scheme=st.sampled_from(["tcp", "http", "https"]),
)
def test_tcp_addresses_parse(host: str, port: int, scheme: str):
    """Every scheme://host:port parses to that host and port, with a Host header to match."""
    address = parse_address(f"{scheme}://{host}:{port}")
    assert (address.host, address.port, address.host_header) == (host, port, f"{host}:{port}")


def test_stream_http_error_reads_the_whole_body(short_tmp: Path):
    """A long error body from stream() is read whole into the message."""
    text = "e" * 200_000
    body = json.dumps({"Err": text}).encode()
    with HTTPPluginServer(short_tmp / "e.sock", {"X": lambda r: (500, body)}) as s:
        with Client(s.addr) as client:
            with pytest.raises(PluginCallError) as info:
                with client.stream("X"):
                    pass
    assert info.value.message == text


def test_stream_chunked_body(short_tmp: Path):
    """stream() decodes a chunked body as it is read."""
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    def behaviour(conn: socket.socket) -> None:
        reply(conn, raw)
        reply(conn, OK)

    with RawServer(short_tmp / "c.sock", behaviour) as server:
        with Client(server.addr) as client:
            with client.stream("Logs") as body:
                assert body.read() == b"hello world"
            assert client.call("X") == {}  # the connection was reused
        assert server.accepted == 1


def test_interim_100_reply_is_skipped(short_tmp: Path):
    """A 100 Continue before the real reply is skipped."""
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    with RawServer(short_tmp / "i.sock", lambda conn: reply(conn, raw)) as server:
        with Client(server.addr) as client:
            assert client.call("X") == {}


def test_stream_per_call_timeout_mid_body(short_tmp: Path):
    """A body stalling past stream()'s own timeout gives PluginTimeoutError naming that timeout."""
    done = threading.Event()

    def stall(conn: socket.socket) -> None:
        reply(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        done.wait(5)

    with RawServer(short_tmp / "s.sock", stall) as server:
        with Client(server.addr) as client:
            with pytest.raises(PluginTimeoutError) as info:
                with client.stream("Logs", timeout=0.05) as body:
                    body.read()
        done.set()
    assert str(info.value) == f"Logs: plugin at {server.addr} did not answer within 0.05 s"


def test_reply_sent_before_the_request_was_read(short_tmp: Path):
    """A plugin that answers and closes without reading a big request: its reply is the result."""
    raw = (
        b"HTTP/1.1 413 Too Large\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
        b'{"Err":"too big"}'
    )

    def early(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(raw)

    with RawServer(short_tmp / "e.sock", early) as server:
        with Client(server.addr, backoff_unit=0.01) as client:
            with pytest.raises(PluginCallError) as info:
                client.call("Test.Big", {"data": "x" * 4_000_000})
            with pytest.raises(PluginCallError) as info_file:
                client.send_file("Test.Big", io.BytesIO(b"y" * 4_000_000))
            with pytest.raises(PluginCallError) as info_stream:
                with client.stream("Test.Big", {"data": "x" * 4_000_000}):
                    pass
        assert server.accepted == 3
    for error in (info.value, info_file.value, info_stream.value):
        assert (error.status, error.message) == (413, "too big")


def test_timeout_spans_sending_and_receiving(short_tmp: Path):
    """The call's timeout covers sending the request and waiting for the reply together."""
    done = threading.Event()
    big = short_tmp / "big"
    big.write_bytes(b"y" * 4_000_000)

    def slow_reader(conn: socket.socket) -> None:
        # Read the request late (the client's send takes ~0.5 s), then answer
        # 1.25 s after the connection came: past the 1 s timeout of the call.
        accepted = time.monotonic()
        time.sleep(0.5)
        read_request(conn)
        time.sleep(max(0.0, accepted + 1.25 - time.monotonic()))
        conn.sendall(OK)
        done.wait(5)

    with RawServer(short_tmp / "t.sock", slow_reader) as server:
        with Client(server.addr, timeout=1.0, retry_timeout=0) as client:
            with pytest.raises(PluginTimeoutError):
                client.call("Test.Big", {"data": "x" * 4_000_000})
            with pytest.raises(PluginTimeoutError), big.open("rb") as file:
                client.send_file("Test.Big", file)
            with pytest.raises(PluginTimeoutError):
                with client.stream("Test.Big", {"data": "x" * 4_000_000}):
                    pass
        done.set()


def test_forked_child_does_not_share_pooled_connections(short_tmp: Path):
    """After fork() the child opens its own connection; the parent keeps using its own."""

    with RawServer(short_tmp / "f.sock", keep_alive()) as server:
        with Client(server.addr) as client:
            assert client.call("X") == {}
            pid = os.fork()
            if pid == 0:  # the child: exit at once, whatever happens
                code = 1
                try:
                    code = 0 if client.call("X") == {} else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert server.accepted == 2
            assert client.call("X") == {}
        assert server.accepted == 2


def test_pooled_connection_with_unsolicited_bytes_is_not_reused(short_tmp: Path):
    """Bytes a plugin sends on an idle kept-alive connection are never read as the next reply."""
    stale = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"stale":1}'
    # The first two connections send `stale` once the client has its reply.
    go = [threading.Event(), threading.Event()]
    sent = [threading.Event(), threading.Event()]
    turns = iter(zip(go, sent, strict=True))

    def behaviour(conn: socket.socket) -> None:
        turn = next(turns, None)
        reply(conn, OK)
        if turn is not None:
            turn[0].wait(5)
            conn.sendall(stale)  # nobody asked for it
            turn[1].set()
        while read_request(conn):
            conn.sendall(OK)

    with RawServer(short_tmp / "u.sock", behaviour) as server:
        with Client(server.addr) as client:
            assert client.call("X") == {}
            go[0].set()
            assert sent[0].wait(5)
            assert client.call("X") == {}  # the fast path (pooled, no timeout)
            go[1].set()
            assert sent[1].wait(5)
            assert client.call("X", timeout=5) == {}  # the general path
            assert client.call("X") == {}
        assert server.accepted == 3


def test_stream_left_mid_body_closes_the_connection(short_tmp: Path):
    """Leaving stream() before the body's end closes its connection; the next call opens one."""
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
    with RawServer(short_tmp / "m.sock", keep_alive(first=big)) as server:
        with Client(server.addr) as client:
            with client.stream("Logs") as body:
                assert body.read(10) == b"x" * 10
            assert client.call("X") == {}
            assert client.call("X") == {}
        assert server.accepted == 2


def test_bare_lf_reply_heads_are_accepted(short_tmp: Path):
    """Reply heads whose lines end with a bare LF are read, as Go's and Python's clients do."""
    raw = b'HTTP/1.1 200 OK\nContent-Length: 8\n\n{"a": 1}'
    with RawServer(short_tmp / "lf.sock", keep_alive(then=raw)) as server:
        with Client(server.addr, timeout=5) as client:
            assert client.call("X") == {"a": 1}
            with client.stream("X") as body:
                assert body.read() == b'{"a": 1}'
        with Client(server.addr) as client:  # no timeout: the pooled fast path
            assert client.call("X") == {"a": 1}
            assert client.call("X") == {"a": 1}
        with Client(server.addr) as client:  # get_all's multiplexed activations
            assert call_concurrently([(client, "X")], timeout=5) == [{"a": 1}]
        assert server.accepted == 3


def test_switching_protocols_reply_is_not_pooled(short_tmp: Path):
    """A 101 reply is a PluginCallError and its connection (no longer HTTP) is not reused."""
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
    with RawServer(short_tmp / "up.sock", keep_alive(first=switch)) as server:
        with Client(server.addr) as client:
            with pytest.raises(PluginCallError) as info:
                client.call("X")
            assert info.value.status == 101
            assert client.call("X") == {}


# -- malformed replies (Go's net/http rejects these; so do we) ----------------

# How a call meets a reply: on a pooled connection without timeout (the fast
# path), on a fresh connection with a timeout (the general path), through
# stream(), or multiplexed by call_concurrently (legacy activations).
PATHS = ["fast", "general", "stream", "concurrent"]


def in_turn(*first: bytes, then: bytes = OK) -> Callable[[socket.socket], None]:
    """A RawServer behaviour: the first connection answers ``first`` in order, then ``then``."""
    pending = list(reversed(first))

    def behaviour(conn: socket.socket) -> None:
        mine, pending[:] = pending[:], []  # only the first connection gets them
        while read_request(conn):
            conn.sendall(mine.pop() if mine else then)

    return behaviour


def call_on(path: str, client: Client) -> object:
    """Make one call to method ``X`` the way ``path`` names; return its decoded reply."""
    if path == "stream":
        with client.stream("X") as body:
            return json.loads(body.read() or b"null")
    if path == "concurrent":
        [result] = call_concurrently([(client, "X")], timeout=10)
        if isinstance(result, Exception):
            raise result
        return result
    return client.call("X")


@contextlib.contextmanager
def serving(short_tmp: Path, raw: bytes, path: str) -> Iterator[tuple[RawServer, Client]]:
    """A server whose first connection answers ``raw`` to the call made on ``path``."""
    first = [OK, raw] if path == "fast" else [raw]
    with (
        RawServer(short_tmp / "m.sock", in_turn(*first)) as server,
        Client(server.addr, timeout=None if path == "fast" else 10) as client,
    ):
        if path == "fast":
            assert client.call("X") == {}  # pools the connection the reply comes on
        yield server, client


def rejected(short_tmp: Path, raw: bytes, path: str) -> str:
    """Answer a call made on ``path`` with ``raw``; return the error's detail.

    Also checks the error names method and address, and that the connection
    was not reused: the next call opens a new one.
    """
    with serving(short_tmp, raw, path) as (server, client):
        with pytest.raises(PluginProtocolError) as info:
            call_on(path, client)
        assert client.call("X") == {}
        assert server.accepted == 2
    prefix = f"X: invalid reply from plugin at {server.addr}: "
    assert str(info.value).startswith(prefix)
    return str(info.value)[len(prefix) :]


def head(*lines: bytes, body: bytes = b"{}") -> bytes:
    """A 200 reply with these header lines."""
    return b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"Content-Length : 2", "whitespace before the colon"),
        (b"Content-Length\t: 2", "whitespace before the colon"),
        (b"Content-Length 2", "no colon"),
        (b"Content Length: 2", "invalid header name"),
        (b": 2", "invalid header name"),
    ],
)
def test_malformed_header_line_is_rejected(short_tmp: Path, path: str, line: bytes, reason: str):
    """A header line that is not `name: value` is a PluginProtocolError quoting it, never a hang."""
    raw = head(b"Date: x", line, b"Content-Length: 2" if b"2" not in line else b"X: y")
    detail = rejected(short_tmp, raw, path)
    assert detail == f"malformed header line {line.decode()!r}: {reason}"


@pytest.mark.parametrize("path", PATHS)
def test_malformed_header_line_is_quoted_safely(short_tmp: Path, path: str):
    """A long or binary bad header line is quoted repr'd and cut at 80 bytes."""
    line = b"X-\x1b[31m \x00" + b"a" * 200 + b": 1"
    detail = rejected(short_tmp, head(line, b"Content-Length: 2"), path)
    shown = repr(line[:80].decode("latin-1"))
    assert detail == f"malformed header line {shown}...: invalid header name"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "lines",
    [
        [b"X-A: a", b" b", b"Content-Length: 2"],
        [b"\tX-A: a", b"Content-Length: 2"],
        [b"Content-Length:", b" 2"],
    ],
)
def test_obsolete_line_folding_is_rejected(short_tmp: Path, path: str, lines: list[bytes]):
    """A header line starting with a space or tab (obs-fold) is refused, not unfolded."""
    [folded] = [line for line in lines if line[:1] in b" \t"]
    detail = rejected(short_tmp, head(*lines), path)
    assert detail == (
        f"malformed header line {folded.decode()!r}: obsolete line folding is not supported"
    )


_FRAMING = {b"content-length", b"transfer-encoding", b"connection"}
_TOKEN_BYTES = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_LINE = st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(name=_LINE.filter(lambda b: b":" not in b and b.lower() not in _FRAMING), value=_LINE)
def test_header_line_is_accepted_only_with_a_token_name(name: bytes, value: bytes):
    """Any header line parses when its name is a token, and is refused as malformed otherwise."""
    raw = b"HTTP/1.1 200 OK\r\n" + name + b":" + value + b"\r\nContent-Length: 2"
    if name and set(name) <= _TOKEN_BYTES:
        assert _parse_head(raw).length == 2
    else:
        with pytest.raises(_BadReply, match=r"^malformed header line "):
            _parse_head(raw)


@pytest.mark.parametrize("path", PATHS)
def test_conflicting_content_lengths_are_rejected(short_tmp: Path, path: str):
    """Two Content-Length headers with different values are refused (Go refuses them too)."""
    raw = head(b"Content-Length: 2", b"Date: x", b"content-length:  3", body=b"{}x")
    detail = rejected(short_tmp, raw, path)
    assert detail == "multiple Content-Length headers with different values: '2' and '3'"


@pytest.mark.parametrize("path", PATHS)
def test_identical_content_lengths_are_accepted(short_tmp: Path, path: str):
    """Repeated Content-Length headers with one value are one length; the connection is kept."""
    raw = head(b"Content-Length: 2", b"Content-Length:2 ")
    with serving(short_tmp, raw, path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("value", [b"-1", b"+2", b"0x2", b"2 2", b"2,2", b"", b"\xd9\xa2"])
def test_bad_content_length_is_rejected(short_tmp: Path, path: str, value: bytes):
    """A Content-Length that is not plain decimal digits is refused."""
    detail = rejected(short_tmp, head(b"Content-Length: " + value), path)
    assert detail == f"bad Content-Length {value.decode('latin-1')!r}"


@pytest.mark.parametrize("path", PATHS)
def test_chunked_wins_over_content_length_and_closes(short_tmp: Path, path: str):
    """With both framings chunked wins (RFC 9112 6.3), and the connection is not reused."""
    raw = head(b"Content-Length: 100", b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n")
    with serving(short_tmp, raw, path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("lines", "detail"),
    [
        ([b"Transfer-Encoding: gzip, chunked"], "unsupported Transfer-Encoding 'gzip, chunked'"),
        ([b"Transfer-Encoding: gzip"], "unsupported Transfer-Encoding 'gzip'"),
        (
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
            "multiple Transfer-Encoding headers",
        ),
    ],
)
def test_unsupported_transfer_encoding_is_rejected(
    short_tmp: Path, path: str, lines: list[bytes], detail: str
):
    """Only a single `Transfer-Encoding: chunked` is understood, as in Go's client."""
    raw = head(*lines, body=b"2\r\n{}\r\n0\r\n\r\n")
    assert rejected(short_tmp, raw, path) == detail


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("lines", "body", "encoding"),
    [
        ([b"Transfer-Encoding: chunked"], b"2\r\n{}\r\n0\r\n\r\n", "chunked"),
        ([b"Content-Length: 2", b"Transfer-Encoding: chunked"], b"{}", "chunked"),
        ([b"Transfer-Encoding: gzip"], b"{}", "gzip"),
    ],
    ids=["chunked", "with-content-length", "gzip"],
)
def test_transfer_encoding_in_http10_reply_is_rejected(
    short_tmp: Path, path: str, lines: list[bytes], body: bytes, encoding: str
):
    """An HTTP/1.0 reply with Transfer-Encoding is refused as faulty framing, and not pooled."""
    raw = (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
        + b"".join(line + b"\r\n" for line in lines)
        + b"\r\n"
        + body
    )
    assert rejected(short_tmp, raw, path) == (
        f"Transfer-Encoding {encoding!r} in an HTTP/1.0 reply"
        " (its framing cannot be trusted, RFC 9112 6.1)"
    )


@pytest.mark.parametrize("path", PATHS)
def test_http10_keep_alive_reply_with_content_length_is_pooled(short_tmp: Path, path: str):
    """An HTTP/1.0 reply with Content-Length and `Connection: keep-alive` keeps its connection."""
    raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}"
    with serving(short_tmp, raw, path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 1


@pytest.mark.parametrize("path", PATHS)
def test_bare_lf_head_before_a_crlf_blank_line_in_the_body(short_tmp: Path, path: str):
    """A head ended by a bare-LF blank line is read right when the body holds CRLF CRLF; pooled."""
    raw = b"HTTP/1.1 200 OK\nContent-Length: 6\n\n{}\r\n\r\n"
    with serving(short_tmp, raw, path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 1


@pytest.mark.parametrize("path", PATHS)
def test_interim_replies_with_headers_are_skipped(short_tmp: Path, path: str):
    """Well-formed 1xx replies (with headers, bare LF too) before the reply are skipped; pooled."""
    raw = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 100 Continue\nX-A: 1\n\n" + OK
    )
    with serving(short_tmp, raw, path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("interim", "detail"),
    [
        (
            b"HTTP/1.1 100 Continue\r\nContent-Length : 0\r\n\r\n",
            "malformed header line 'Content-Length : 0': whitespace before the colon",
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n  ; rel=preload\r\n\r\n",
            "malformed header line '  ; rel=preload': obsolete line folding is not supported",
        ),
        (
            b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "multiple Content-Length headers with different values: '1' and '2'",
        ),
        (
            b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip\r\n\r\n",
            "unsupported Transfer-Encoding 'gzip'",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX Y: 1\r\n\r\n",
            "malformed header line 'X Y: 1': invalid header name",
        ),
        (b"XTTP/1.1 100 Continue\r\n\r\n", "not an HTTP/1.x reply: b'XTTP/1.1 100 Continue'"),
    ],
    ids=["space-before-colon", "folding", "content-lengths", "encoding", "second", "status-line"],
)
def test_malformed_interim_reply_is_rejected(
    short_tmp: Path, path: str, interim: bytes, detail: str
):
    """An interim 1xx reply is checked like a final head: a malformed one is refused."""
    assert rejected(short_tmp, interim + OK, path) == detail


def trickled(raw: bytes, then: bytes = OK) -> Callable[[socket.socket], None]:
    """A RawServer behaviour: the first reply goes out in 7-byte pieces, later ones whole."""
    pending = [raw]

    def behaviour(conn: socket.socket) -> None:
        while read_request(conn):
            if not pending:
                conn.sendall(then)
                continue
            data = pending.pop()
            for at in range(0, len(data), 7):
                conn.sendall(data[at : at + 7])
                time.sleep(0.0005)

    return behaviour


@pytest.mark.parametrize("path", ["general", "stream", "concurrent"])
@pytest.mark.parametrize(
    "last",
    [b"", b"HTTP/1.1 100 Continue\r\nX-A : 1\r\n\r\n"],
    ids=["valid", "malformed-last"],
)
def test_interim_replies_trickling_in(short_tmp: Path, path: str, last: bytes):
    """1xx replies split across receives are each checked once, and the reply after them is read."""
    interims = b"HTTP/1.1 102 Processing\r\nX-Progress: 50\r\n\r\n" * 20 + last
    with RawServer(short_tmp / "t.sock", trickled(interims + OK)) as server:
        with Client(server.addr, timeout=10) as client:
            if not last:
                assert call_on(path, client) == {}
            else:
                with pytest.raises(PluginProtocolError) as info:
                    call_on(path, client)
                assert str(info.value) == (
                    f"X: invalid reply from plugin at {server.addr}:"
                    " malformed header line 'X-A : 1': whitespace before the colon"
                )
            assert client.call("X") == {}
        assert server.accepted == (2 if last else 1)


@pytest.mark.parametrize("path", PATHS)
def test_interim_replies_count_towards_the_head_cap(short_tmp: Path, path: str):
    """1xx replies without end are refused once they and the head pass 64 KiB together."""
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" * 3000  # 75 000 bytes, and no final reply
    assert rejected(short_tmp, raw, path) == (
        "the reply head and the interim 1xx replies before it are larger than 65536 bytes"
    )


def chunked(body: bytes) -> bytes:
    return head(b"Transfer-Encoding: chunked", body=body)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size", [b"0x2", b"+2", b"-2", b"1_0", b"", b"zz", b"2 2", b"1" * 17])
def test_bad_chunk_size_line_is_rejected(short_tmp: Path, path: str, size: bytes):
    """A chunk size that is not 1 to 16 hex digits is refused."""
    detail = rejected(short_tmp, chunked(size + b";a=b\r\n{}\r\n0\r\n\r\n"), path)
    assert detail == f"bad chunk size line {(size + b';a=b').decode()!r}"


@pytest.mark.parametrize("path", PATHS)
def test_overlong_chunk_size_line_is_rejected(short_tmp: Path, path: str):
    """A chunk size line over 4096 bytes is refused, whether or not its end has come."""
    detail = rejected(short_tmp, chunked(b"2;" + b"e" * 5000 + b"\r\n{}\r\n0\r\n\r\n"), path)
    assert detail == "chunk size line longer than 4096 bytes"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "body",
    [
        # many chunks, each with a 4000-byte extension
        b"".join(b"1;e=" + b"x" * 4000 + b"\r\n" + c + b"\r\n" for c in [b"{", b"}"] * 10)
        + b"0\r\n\r\n",
        # many trailer lines
        b"2\r\n{}\r\n0\r\n" + (b"X-T: " + b"t" * 4000 + b"\r\n") * 20 + b"\r\n",
        # one trailer line that never ends
        b"2\r\n{}\r\n0\r\nX-T: " + b"t" * 100_000,
    ],
    ids=["extensions", "trailers", "endless-trailer"],
)
def test_chunk_extensions_and_trailers_are_bounded(short_tmp: Path, path: str, body: bytes):
    """Chunk extensions and trailers together may not pass 64 KiB in one reply."""
    detail = rejected(short_tmp, chunked(body), path)
    assert detail == "chunk extensions and trailers are larger than 65536 bytes"


@pytest.mark.parametrize("path", PATHS)
def test_small_chunk_extensions_and_trailers_are_accepted(short_tmp: Path, path: str):
    """Extensions and trailers below the bound are skipped; the connection is kept."""
    body = b"1;a=b\r\n{\r\n1 ; c\r\n}\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"
    with serving(short_tmp, chunked(body), path) as (server, client):
        assert call_on(path, client) == {}
        assert client.call("X") == {}
        assert server.accepted == 1


@given(line=_LINE)
def test_chunk_size_line_is_accepted_only_as_hex_digits(line: bytes):
    """A chunk size line is read when it is 1 to 16 hex digits (and any extension), else refused."""
    digits = line.partition(b";")[0].strip(b" \t")
    valid = 0 < len(digits) <= 16 and all(c in b"0123456789abcdefABCDEF" for c in digits)
    decoder = _Chunked()
    if valid:
        decoder.feed(line + b"\r\n")
        assert not decoder.done
    else:
        with pytest.raises(_BadReply, match=r"^bad chunk size line "):
            decoder.feed(line + b"\r\n")


@pytest.mark.parametrize("path", PATHS)
def test_endless_reply_head_hits_the_size_cap(short_tmp: Path, path: str):
    """A reply head that never ends is refused once it passes 64 KiB."""
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 1000 + b"\r\n"
    raw = raw + raw[17:] * 100  # about 100 KiB, and the connection stays open
    detail = rejected(short_tmp, raw, path)
    assert detail == "the reply head is larger than 65536 bytes (no blank line ends it)"


def test_stream_body_cut_short(short_tmp: Path):
    """A body that ends before its Content-Length gives a PluginProtocolError saying so."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    with RawServer(short_tmp / "s.sock", lambda conn: reply(conn, cut)) as server:
        with Client(server.addr) as client:
            with pytest.raises(PluginProtocolError) as info:
                with client.stream("Logs") as body:
                    body.read()
    assert str(info.value) == (f"Logs: invalid reply from plugin at {server.addr}: reply truncated")
