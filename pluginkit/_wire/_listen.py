"""Where a plugin server listens: listen addresses, as the SDK server takes them.

A listen address is not a dial address (:mod:`._address`): ``None`` means the
socket the environment names (``$PLUGINKIT_SOCKET_DIR``/``$PLUGINKIT_SOCKET``,
what pluginkit's process runtime sets) or Docker's default socket of the
plugin's name, port 0 asks for a free port, and there is no ``http`` or
``https`` scheme. Pure: nothing is bound or created here (the server does
that); the unix socket path limit is :mod:`._address`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ._address import UNIX_PATH_MAX, unix_path_fits

__all__ = ["DEFAULT_SOCKET_DIR", "ListenAddress", "resolve_address"]

#: Docker's legacy plugin socket directory (go-plugins-helpers' ServeUnix default).
DEFAULT_SOCKET_DIR = Path("/run/docker/plugins")


@attrs.frozen
class ListenAddress:
    """A resolved listening address: a unix socket ``path`` or a TCP ``host``/``port``."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def is_unix(self) -> bool:
        """True for a unix socket address."""
        return self.path is not None


def resolve_address(address: str | os.PathLike[str] | None, name: str | None) -> ListenAddress:
    """Turn what the caller passed into an :class:`ListenAddress`.

    ``None`` means the socket named by ``$PLUGINKIT_SOCKET_DIR`` and
    ``$PLUGINKIT_SOCKET`` (what the process runtime sets), else
    ``/run/docker/plugins/<name>.sock`` when the server has a name.
    """
    if address is None:
        return ListenAddress(path=_default_socket(name))
    if isinstance(address, os.PathLike):
        return ListenAddress(path=_check_path(Path(os.fspath(address))))
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, a path or None, not {type(address).__name__}")
    if address.startswith("unix://"):
        rest = address[len("unix://") :]
        if not rest:
            raise ValueError(f"address {address!r} has no socket path")
        return ListenAddress(path=_check_path(Path(rest)))
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
    return ListenAddress(path=_check_path(Path(address)))


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


def _tcp(address: str) -> ListenAddress:
    rest = address[len("tcp://") :].rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"address {address!r} needs a port: tcp://host:port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"address {address!r} has port {port} out of range 0-65535")
    host = host.strip("[]")
    return ListenAddress(host=host or "0.0.0.0", port=port)
