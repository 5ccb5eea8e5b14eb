"""A listening socket handed over by whoever started the server (systemd's ``LISTEN_FDS``).

systemd's socket activation (``sd_listen_fds(3)``) and pluginkit's manager,
when it upgrades a running plugin, start the server with the listening socket
already open as file descriptor 3, ``LISTEN_FDS=1`` and ``LISTEN_PID`` set to
the server's process id. The server then serves on that socket instead of
binding one, and leaves its path alone when it stops (the socket is not its).
"""

from __future__ import annotations

import os
import socket

from .._errors import PluginError

__all__ = ["LISTEN_FDS_START", "take_inherited_listener"]

#: The first inherited descriptor (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


def take_inherited_listener() -> socket.socket | None:
    """Return the listening socket this process was given, or None.

    Reads ``LISTEN_FDS`` and ``LISTEN_PID`` and removes them (and
    ``LISTEN_FDNAMES``) from the environment, as ``sd_listen_fds(1)`` does,
    so that the socket is taken once and children do not see them. Variables
    meant for another process (``LISTEN_PID`` is not ours) are ignored.

    Raises:
        PluginError: The variables name something the server cannot serve
            on: not a number, more than one descriptor, or a descriptor that
            is not a listening stream socket.
    """
    count_text = os.environ.pop("LISTEN_FDS", None)
    pid_text = os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if count_text is None or pid_text != str(os.getpid()):
        return None
    try:
        count = int(count_text)
    except ValueError:
        raise PluginError(f"LISTEN_FDS={count_text!r} is not a number") from None
    if count == 0:
        return None
    if count != 1:
        raise PluginError(
            f"LISTEN_FDS={count}: the server serves on one inherited socket, not {count}"
        )
    fd = LISTEN_FDS_START
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise PluginError(f"LISTEN_FDS=1 but descriptor {fd} is not a socket: {exc}") from exc
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise PluginError(f"LISTEN_FDS=1 but descriptor {fd} is not a listening stream socket")
    sock.set_inheritable(False)
    return sock
