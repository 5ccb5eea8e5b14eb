"""Where the daemon listens: ``-H`` addresses, the unix socket's mode and group, TLS."""

from __future__ import annotations

import grp
import os
import socket
import ssl
from pathlib import Path

import attrs

from .._errors import PluginError

__all__ = ["DaemonTLS", "Listener", "parse_host"]


@attrs.frozen
class DaemonTLS:
    """dockerd's ``--tlsverify --tlscacert --tlscert --tlskey``.

    A server certificate and the CA that client certificates must be signed
    by; a client without one is refused.
    """

    ca_file: str
    cert_file: str
    key_file: str

    def context(self) -> ssl.SSLContext:
        """Build the server-side TLS context (TLS 1.2+, client certificates required)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.load_verify_locations(self.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@attrs.frozen
class Listener:
    """One ``-H`` address: ``unix`` with a path, or ``tcp`` with host and port."""

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0


def parse_host(text: str) -> Listener:
    """Parse ``unix:///path``, ``/path``, ``tcp://host:port``, ``fd://`` is not supported.

    Raises:
        PluginError: naming the address when it cannot be used.
    """
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise PluginError(f"invalid daemon address {text!r}: the socket path must be absolute")
        return Listener("unix", path=path)
    if text.startswith("/"):
        return Listener("unix", path=text)
    if text.startswith("tcp://"):
        rest = text[len("tcp://") :].rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise PluginError(f"invalid daemon address {text!r}: expected tcp://HOST:PORT")
        return Listener("tcp", host=host.strip("[]") or "0.0.0.0", port=int(port))
    raise PluginError(f"invalid daemon address {text!r}: expected unix:///PATH or tcp://HOST:PORT")


def bind_unix(path: str, *, group: str | int | None = None, mode: int = 0o660) -> socket.socket:
    """Bind and listen on a unix socket, like docker.sock (0660, owned by ``group``).

    A stale socket file (nobody answering) is replaced; a live one is not.

    Raises:
        PluginError: the path is served by someone else, or the group is unknown.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            target.unlink()
        else:
            raise PluginError(f"{path} is in use by another daemon")
        finally:
            probe.close()
    gid = -1
    if group is not None:
        try:
            gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PluginError(f"group {group!r} not found") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The socket is created private, then opened up: no window where
        # anyone could connect before mode and group are right.
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp(listener: Listener) -> socket.socket:
    """Bind and listen on TCP (the caller wraps accepted connections in TLS)."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listener.host, listener.port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock
