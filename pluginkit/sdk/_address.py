"""Preparing where a plugin server listens: the socket's directory, stale sockets, groups.

The I/O half of a listen address; parsing it is the wire layer's
(:mod:`pluginkit._wire._listen`).
"""

from __future__ import annotations

import errno
import grp
import socket
import stat
from pathlib import Path

from .._errors import PluginError

__all__ = ["prepare_unix_path", "resolve_gid"]


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
