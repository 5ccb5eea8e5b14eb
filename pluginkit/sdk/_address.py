"""Where a plugin server listens: parsing listen addresses and preparing unix socket paths.

A listen address is not a dial address (:mod:`pluginkit._wire._address`):
``None`` means the socket the environment names, port 0 asks for a free
port, and there is no ``http``/``https`` scheme; what both share - the unix
socket path limit - comes from the wire layer.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat
from pathlib import Path

import attrs

from .._errors import PluginError
from .._wire._address import UNIX_PATH_MAX, unix_path_fits

__all__ = ["DEFAULT_SOCKET_DIR", "Address", "prepare_unix_path", "resolve_address"]

#: Docker's legacy plugin socket directory (go-plugins-helpers' ServeUnix default).
DEFAULT_SOCKET_DIR = Path("/run/docker/plugins")


@attrs.frozen
class Address:
    """A resolved listening address: a unix socket ``path`` or a TCP ``host``/``port``."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def is_unix(self) -> bool:
        """True for a unix socket address."""
        return self.path is not None


def resolve_address(address: str | os.PathLike[str] | None, name: str | None) -> Address:
    """Turn what the caller passed into an :class:`Address`.

    ``None`` means the socket named by ``$PLUGINKIT_SOCKET_DIR`` and
    ``$PLUGINKIT_SOCKET`` (what the process runtime sets), else
    ``/run/docker/plugins/<name>.sock`` when the server has a name.
    """
    if address is None:
        return Address(path=_default_socket(name))
    if isinstance(address, os.PathLike):
        return Address(path=_check_path(Path(os.fspath(address))))
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, a path or None, not {type(address).__name__}")
    if address.startswith("unix://"):
        rest = address[len("unix://") :]
        if not rest:
            raise ValueError(f"address {address!r} has no socket path")
        return Address(path=_check_path(Path(rest)))
    if address.startswith("tcp://"):
        return _tcp(address)
    if "://" in address:
        scheme = address.split("://", 1)[0]
        raise ValueError(
            f"address {address!r} has unsupported scheme {scheme!r} "
            "(use a socket path, unix:///path or tcp://host:port)"
        )
    if not address:
        raise ValueError("address is empty (use a socket path, unix:///path or tcp://host:port)")
    return Address(path=_check_path(Path(address)))


def _default_socket(name: str | None) -> Path:
    socket_dir = os.environ.get("PLUGINKIT_SOCKET_DIR")
    socket_name = os.environ.get("PLUGINKIT_SOCKET")
    if socket_dir:
        if not socket_name:
            if not name:
                raise ValueError(
                    "PLUGINKIT_SOCKET_DIR is set but PLUGINKIT_SOCKET is not, and the server "
                    "has no name to derive the socket name from"
                )
            socket_name = f"{name}.sock"
        if "/" in socket_name:
            raise ValueError(f"PLUGINKIT_SOCKET must be a file name, not {socket_name!r}")
        return _check_path(Path(socket_dir) / socket_name)
    if name:
        return _check_path(DEFAULT_SOCKET_DIR / f"{name}.sock")
    raise ValueError(
        "no address to serve on: pass one (a socket path, unix:///path or tcp://host:port), "
        "set PLUGINKIT_SOCKET_DIR and PLUGINKIT_SOCKET, or give the server a name "
        "(then it serves at /run/docker/plugins/<name>.sock)"
    )


def _check_path(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    if not unix_path_fits(path):
        raise ValueError(
            f"unix socket path {str(path)!r} is too long "
            f"({len(os.fsencode(path))} bytes, the limit is {UNIX_PATH_MAX})"
        )
    return path


def _tcp(address: str) -> Address:
    rest = address[len("tcp://") :].rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"address {address!r} needs a port: tcp://host:port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"address {address!r} has port {port} out of range 0-65535")
    host = host.strip("[]")
    return Address(host=host or "0.0.0.0", port=port)


def prepare_unix_path(path: Path) -> None:
    """Create the socket's directory and remove a stale socket file left at ``path``.

    A socket another process still serves on is not taken over; a path that
    is not a socket is never deleted.
    """
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise PluginError(f"cannot serve at {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise PluginError(f"cannot serve at {path}: {exc}") from exc
    else:
        raise PluginError(f"cannot serve at {path}: another server is listening there")
    finally:
        probe.close()
    path.unlink(missing_ok=True)


def resolve_gid(gid: int | str | None) -> int | None:
    """Return a group id from a number or a group name (None: leave the group alone)."""
    if gid is None or isinstance(gid, int):
        return gid
    try:
        return grp.getgrnam(gid).gr_gid
    except KeyError:
        raise ValueError(f"group {gid!r} does not exist") from None
