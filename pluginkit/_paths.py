"""Default directories: where state, plugin sockets and the daemon's socket live.

Kept apart from the manager so that the command line can find a daemon's
socket without importing the manager (or anything heavy).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DAEMON_SOCKET", "default_root", "default_run_root", "default_daemon_socket"]

DAEMON_SOCKET = "pluginkit.sock"
"""The daemon's socket file name, in the run root."""


def default_root() -> Path:
    """Return ``/var/lib/pluginkit`` as root, else the platformdirs user data dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/pluginkit")
    import platformdirs

    return platformdirs.user_data_path("pluginkit")


def default_run_root() -> Path:
    """Return ``/run/pluginkit`` as root, else ``$XDG_RUNTIME_DIR/pluginkit`` or /tmp."""
    if os.geteuid() == 0:
        return Path("/run/pluginkit")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "pluginkit"
    return Path(f"/tmp/pluginkit-{os.getuid()}")


def default_daemon_socket(run_root: str | os.PathLike[str] | None = None) -> Path:
    """Return the daemon's default socket, ``<run_root>/pluginkit.sock``."""
    base = Path(run_root) if run_root is not None else default_run_root()
    return base.absolute() / DAEMON_SOCKET
