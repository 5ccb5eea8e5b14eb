"""Plugin addresses: the URLs a host dials, and the unix socket path limit.

``unix://``, ``tcp://``, ``http://`` and ``https://`` URLs, as Docker's spec
files and ``Plugin.Addr`` carry them. The limit of a unix socket path is
written here once: ``sockaddr_un.sun_path`` is 108 bytes with its NUL.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import urlsplit

import attrs

from .._errors import InvalidConfigError

__all__ = ["UNIX_HOST", "UNIX_PATH_MAX", "PluginAddress", "parse_address", "unix_path_fits"]

#: The longest unix socket path, in bytes (``sun_path`` is 108 with its NUL).
UNIX_PATH_MAX: Final = 107

#: The Host header for unix sockets: Docker's dummy host (a socket path is not
#: a valid host name, and Go >= 1.20.6 rejects it).
UNIX_HOST: Final = "plugin.moby.localhost"


def unix_path_fits(path: str | bytes | os.PathLike[str]) -> bool:
    """Tell whether ``path`` fits in a unix socket address (:data:`UNIX_PATH_MAX`)."""
    return len(os.fsencode(path)) <= UNIX_PATH_MAX


@attrs.frozen
class PluginAddress:
    """Where a plugin listens, resolved from its address URL.

    ``unix_path`` is set for ``unix://`` addresses, ``host`` and ``port`` for
    the others; ``tls`` says the scheme is ``https``; ``host_header`` is the
    Host header to send.
    """

    unix_path: str | None
    host: str
    port: int
    tls: bool
    host_header: str


def parse_address(addr: str) -> PluginAddress:
    """Parse a plugin address (``unix://``, ``tcp://``, ``http://``, ``https://``).

    Raises:
        InvalidConfigError: the address has no or an unknown scheme, no host or
            port, or a unix socket path that is too long.
    """
    if not isinstance(addr, str):
        raise TypeError(f"plugin address must be a str, not {type(addr).__name__}")
    scheme, sep, rest = addr.partition("://")
    if not sep:
        raise InvalidConfigError(
            f"invalid plugin address {addr!r}: no scheme"
            " (expected unix://, tcp://, http:// or https://)"
        )
    scheme = scheme.lower()
    if scheme == "unix":
        # Everything after "unix://" is the path ("unix:///run/x.sock"); Go
        # would read "unix://var/x.sock" as host "var", we read it as the
        # relative path the writer meant.
        if not rest:
            raise InvalidConfigError(f"invalid plugin address {addr!r}: empty socket path")
        if not unix_path_fits(rest):
            raise InvalidConfigError(f"unix socket path {rest!r} is too long")
        return PluginAddress(rest, "", 0, tls=False, host_header=UNIX_HOST)
    if scheme not in ("tcp", "http", "https"):
        raise InvalidConfigError(
            f"invalid plugin address {addr!r}: unknown scheme {scheme!r}"
            " (expected unix, tcp, http or https)"
        )
    try:
        parts = urlsplit(addr)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidConfigError(f"invalid plugin address {addr!r}: {exc}") from exc
    if not host:
        raise InvalidConfigError(f"invalid plugin address {addr!r}: no host")
    if port is None:
        if scheme == "tcp":
            raise InvalidConfigError(f"invalid plugin address {addr!r}: no port")
        port = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return PluginAddress(None, host, port, tls=scheme == "https", host_header=f"{shown}:{port}")
