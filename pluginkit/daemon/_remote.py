"""A tiny HTTP/1.1 client for the daemon's API: what the ``pluginkit`` command talks through.

Kept to the standard library's cheapest modules (``_socket`` - the C module,
without ``socket.py``'s own imports - and ``json``; ``socket`` and ``ssl``
only for TCP) so that a command answered by the daemon starts fast.
"""

from __future__ import annotations

import _socket
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Remote", "RemoteError"]


class RemoteError(Exception):
    """The daemon answered an error (``status``, dockerd's ``message``) or cannot be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Remote:
    """One keep-alive connection to a daemon at ``unix:///PATH`` or ``tcp://HOST:PORT``.

    TCP needs ``tls=(ca_file, cert_file, key_file)``: the daemon requires a
    client certificate.
    """

    def __init__(
        self,
        address: str,
        *,
        tls: tuple[str, str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.address = address
        self._tls = tls
        self._timeout = timeout
        self._sock: Any = None  # a _socket.socket, or an ssl.SSLSocket for TCP
        self._buf = b""

    # -- connection -----------------------------------------------------------

    def connect(self) -> None:
        """Open the connection.

        Raises:
            RemoteError: nobody answers at the address.
        """
        if self._sock is not None:
            return
        try:
            if self.address.startswith("unix://") or self.address.startswith("/"):
                path = self.address[len("unix://") :] if "://" in self.address else self.address
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    sock.settimeout(self._timeout)
                    sock.connect(path)
                except BaseException:
                    sock.close()
                    raise
            elif self.address.startswith("tcp://"):
                sock = self._connect_tcp(self.address[len("tcp://") :].rstrip("/"))
            else:
                raise RemoteError(
                    f"invalid daemon address {self.address!r}: "
                    "expected unix:///PATH or tcp://HOST:PORT"
                )
        except OSError as exc:
            raise RemoteError(
                f"cannot connect to the pluginkit daemon at {self.address}: {exc.strerror or exc}"
            ) from None
        self._sock = sock

    def _connect_tcp(self, hostport: str) -> Any:
        import socket

        host, _, port = hostport.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=self._timeout)
        if self._tls is None:
            sock.close()
            raise RemoteError(
                f"{self.address}: the daemon requires TLS; pass --tlsverify "
                "--tlscacert CA --tlscert CERT --tlskey KEY"
            )
        import ssl

        ca, cert, key = self._tls
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        return ctx.wrap_socket(sock, server_hostname=host.strip("[]"))

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return (status, headers, body). Errors are not raised."""
        status, headers, chunks = self._send(method, path, query, body, content_type)
        return status, headers, b"".join(chunks)

    def json(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send a request with a JSON body (or none); return the decoded reply.

        Raises:
            RemoteError: with the daemon's ``message`` for an error status.
        """
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.request(method, path, query, data)
        if status >= 400:
            raise RemoteError(_message(raw), status)
        return json.loads(raw) if raw.strip() else None

    def stream(
        self, method: str, path: str, query: Mapping[str, Any] | None = None
    ) -> Iterator[bytes]:
        """Send a request and yield the reply's body as it arrives.

        Raises:
            RemoteError: with the daemon's ``message`` for an error status.
        """
        status, _, chunks = self._send(method, path, query, None, "application/json")
        if status >= 400:
            raise RemoteError(_message(b"".join(chunks)), status)
        yield from chunks

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: bytes | None,
        content_type: str,
    ) -> tuple[int, dict[str, str], Iterator[bytes]]:
        self.connect()
        assert self._sock is not None
        target = urllib.parse.quote(path, safe="/:@")
        if query:
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        head = [f"{method} {target} HTTP/1.1", "Host: pluginkit", "User-Agent: pluginkit-cli"]
        if body is not None:
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        elif method in ("POST", "PUT"):
            head.append("Content-Length: 0")
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        try:
            self._sock.sendall(request)
            status, headers = self._read_head()
        except OSError as exc:
            self.close()
            raise RemoteError(
                f"lost the connection to the daemon at {self.address}: {exc}"
            ) from None
        return status, headers, self._body(headers, method)

    # -- response parsing -----------------------------------------------------------

    def _fill(self) -> bool:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            return False
        self._buf += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise ConnectionError("the daemon closed the connection")
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill():
                raise ConnectionError("the daemon closed the connection")
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _read_head(self) -> tuple[int, dict[str, str]]:
        status_line = self._line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            line = self._line()
            if not line:
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def _body(self, headers: Mapping[str, str], method: str) -> Iterator[bytes]:
        if method == "HEAD":
            return iter(())
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunks()
        length = int(headers.get("content-length", "0") or 0)
        return iter((self._exact(length),))

    def _chunks(self) -> Iterator[bytes]:
        try:
            while True:
                size = int(self._line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return
                data = self._exact(size)
                self._exact(2)
                yield data
        except (OSError, ValueError) as exc:
            self.close()
            raise RemoteError(
                f"lost the connection to the daemon at {self.address}: {exc}"
            ) from None


def _message(raw: bytes) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return raw.decode(errors="replace").strip()
