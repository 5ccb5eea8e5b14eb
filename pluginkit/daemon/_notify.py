"""systemd's ``sd_notify``: tell the service manager the daemon is ready or stopping."""

from __future__ import annotations

import logging
import os
import socket

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["sd_notify"]

log = logging.getLogger("pluginkit.daemon")


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``$NOTIFY_SOCKET``; ``False`` when unset.

    A path starting with ``@`` is an abstract socket, as in libsystemd. A
    failure is logged, never raised: a daemon must not die because systemd is
    not listening.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify(%s) failed: %s", state, exc)
        return False
    return True
