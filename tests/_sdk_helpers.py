"""A tiny raw-socket HTTP/1.1 client for the SDK tests (no pluginkit code on the client side)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Reply:
    """One HTTP response as it came off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """A keep-alive HTTP/1.1 client on one socket: unix path or (host, port)."""

    def __init__(self, address: str | Path | tuple[str, int], timeout: float = 10.0) -> None:
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(address))
        self.buf = b""

    @classmethod
    def for_url(cls, url: str, timeout: float = 10.0) -> RawClient:
        if url.startswith("unix://"):
            return cls(url[len("unix://") :], timeout)
        host, _, port = url[len("tcp://") :].rpartition(":")
        return cls((host.strip("[]"), int(port)), timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request_bytes(self, method: str, body: bytes = b"", *, verb: str = "POST") -> bytes:
        return (
            f"{verb} /{method} HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
            f"Accept: application/vnd.docker.plugins.v1.2+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def call(self, method: str, args: Any = None, *, verb: str = "POST") -> Reply:
        body = b"" if args is None else json.dumps(args).encode()
        self.send(self.request_bytes(method, body, verb=verb))
        return self.read_reply(head_only=verb == "HEAD")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_reply(self, *, head_only: bool = False) -> Reply:
        status_line = self._line()
        status = int(status_line.split(b" ")[1])
        headers: dict[str, str] = {}
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100 or head_only:
            return Reply(status, headers, b"")
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    self._line()
                    break
                body += self._exact(size)
                self._exact(2)
            return Reply(status, headers, body)
        return Reply(status, headers, self._exact(int(headers.get("content-length", "0"))))

    def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF) with nothing left to read."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (fast at first, then backing off)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
