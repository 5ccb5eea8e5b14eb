"""The HTTP a FakeRuntime's shared loop speaks: framing, keep-alive, bad requests."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit.runtime import RuntimeSpec
from pluginkit.testing import FakeCall, FakeRuntime


@pytest.fixture
def served(short_tmp: Path) -> Iterator[tuple[FakeRuntime, Path]]:
    spec = RuntimeSpec(
        id="b" * 64,
        name="acme/vol:latest",
        rootfs=short_tmp,
        entrypoint=("/plugin",),
        socket_dir=short_tmp / "s",
        socket="p.sock",
        state_dir=short_tmp,
    )
    with FakeRuntime() as fake:
        fake.set_handlers("acme/vol", {"VolumeDriver.Get": lambda request: {"Got": request}})
        fake.start(spec, lambda exit_: None)
        fake.wait_listening("acme/vol")
        yield fake, spec.socket_path


def _exchange(path: Path, data: bytes) -> bytes:
    """Send ``data``, then read until the fake closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: str, body: object, *, close: bool = False) -> bytes:
    payload = json.dumps(body).encode()
    connection = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/vnd.docker.plugins.v1.1+json\r\n"
        f"Content-Length: {len(payload)}\r\n{connection}\r\n"
    ).encode() + payload


def test_keep_alive_and_pipelining(served: tuple[FakeRuntime, Path]) -> None:
    """Two requests on one connection (the second pipelined) get two answers, in order."""
    fake, path = served
    one = b'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: 12\r\n\r\n{"Name": 1}\n'
    two = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    assert _exchange(path, one + two) == _answer("200 OK", {"Got": {"Name": 1}}) + _answer(
        "200 OK", {"Implements": ["VolumeDriver"]}
    )
    assert fake.calls("acme/vol") == [FakeCall("VolumeDriver.Get", {"Name": 1})]


def test_chunked_body_and_connection_close(served: tuple[FakeRuntime, Path]) -> None:
    """A chunked request body is read whole; Connection: close is honoured."""
    _, path = served
    request = (
        b"POST /VolumeDriver.Get HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\n[1, 2\r\n2\r\n ]\r\n0\r\n\r\n"
    )
    assert _exchange(path, request) == _answer("200 OK", {"Got": [1, 2]}, close=True)


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"NONSENSE\r\n\r\n", "400 Bad Request", "malformed request line"),
        (b"POST /X HTTP/1.1\r\nno colon\r\n\r\n", "400 Bad Request", "malformed header line"),
        (b"POST /X HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400 Bad Request", "bad Content-Length"),
        (
            b"POST /X HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
            "413 Payload Too Large",
            "request body too large",
        ),
        (
            b"POST /X HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
            "400 Bad Request",
            "request head too large",
        ),
    ],
)
def test_bad_requests_are_answered_and_closed(
    served: tuple[FakeRuntime, Path], request_bytes: bytes, status: str, message: str
) -> None:
    """A request that cannot be parsed gets an error answer, then the connection closes."""
    _, path = served
    assert _exchange(path, request_bytes) == _answer(status, {"Err": message}, close=True)


def test_unknown_method_and_bad_json(served: tuple[FakeRuntime, Path]) -> None:
    """An unknown method is 404, a body that is not JSON is 400, with the SDK's texts."""
    _, path = served
    unknown = b"POST /VolumeDriver.Nope HTTP/1.1\r\nConnection: close\r\n\r\n"
    assert _exchange(path, unknown) == _answer(
        "404 Not Found", {"Err": "plugin does not implement method 'VolumeDriver.Nope'"}, close=True
    )
    bad = b"POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}"
    reply = _exchange(path, bad)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b'"Err": "VolumeDriver.Get: request body is not valid JSON: ' in reply
