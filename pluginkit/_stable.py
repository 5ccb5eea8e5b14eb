"""Stable socket addresses: one path per plugin *name*, the same across re-creates and upgrades.

A managed plugin listens on ``<run_root>/<id>/<socket>``, and its id changes
whenever it is removed and created again. Programs configured once with a
socket path (Podman's ``[engine.volume_plugins]``, a systemd unit, another
host's config) need a path that does not change. While a plugin runs, the
manager keeps a symbolic link at ``<run_root>/by-name/<name>.sock`` pointing
at its real socket; ``connect(2)`` follows the link, so clients need nothing
special.

The file name is the plugin's full name (``name:tag``) with ``/`` written as
``+`` (a character Docker references never contain, so two names never share
a path). A name whose path would not fit in a unix socket address is hashed
instead: still derived from the name only, so still stable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets

from ._wire._address import unix_path_fits

__all__ = ["BY_NAME_DIR", "link_stable", "stable_socket_path", "unlink_stable"]

BY_NAME_DIR = "by-name"
"""The directory of ``run_root`` that holds the stable links (no plugin id looks like it)."""


def stable_socket_path(run_root: str | os.PathLike[str], name: str) -> str:
    """Return the stable socket path of the plugin called ``name`` (``name:tag``)."""
    directory = os.path.join(os.fspath(run_root), BY_NAME_DIR)
    path = os.path.join(directory, name.replace("/", "+") + ".sock")
    if unix_path_fits(path):
        return path
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return os.path.join(directory, f"{digest}.sock")


def link_stable(path: str, target: str) -> None:
    """Point the link ``path`` at ``target``, atomically (readers see the old or the new link).

    Raises:
        OSError: The link cannot be written (the caller logs it: a plugin
            runs without its stable address).
    """
    directory = os.path.dirname(path)
    # The common case - no link yet, the directory there - costs one call;
    # a start with thousands of plugins pays it per plugin.
    for attempt in (1, 2):
        try:
            os.symlink(target, path)
            return
        except FileExistsError:
            break
        except FileNotFoundError:
            # No directory yet, or unlink_stable of the last other link just
            # removed it: make it, and try once more.
            if attempt == 2:
                raise
            os.makedirs(directory, mode=0o755, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = os.path.join(directory, f".{secrets.token_hex(8)}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unlink_stable(path: str, target: str) -> None:
    """Remove the link ``path`` if it still points at ``target``, and its directory if empty.

    A link that points elsewhere (a newer plugin of the same name) is kept.
    """
    try:
        if os.readlink(path) != target:
            return
        os.unlink(path)
    except OSError:
        return
    # Left empty, the directory would outlive the plugins in run_root (often
    # a shared /run); link_stable makes it again.
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))
