"""Make Podman find pluginkit's volume plugins: a ``containers.conf`` drop-in.

Podman speaks Docker's volume-plugin protocol but has no plugin manager: it
finds a volume plugin only through an ``[engine.volume_plugins]`` entry in
``containers.conf`` that maps the driver name to a socket path.
:func:`register` writes that entry for every enabled managed volume plugin,
pointing at the plugin's stable address (:attr:`pluginkit.Plugin.stable_address`,
derived from its name, so the entry stays right after a re-create or an
upgrade), and drops the entries of plugins that are gone or disabled.

Podman reads drop-ins from ``/etc/containers/containers.conf.d/`` (and
``/usr/share/containers/containers.conf.d/``) unless ``CONTAINERS_CONF``
names a single file; it reads its configuration when a command starts, so a
running ``podman system service`` sees new entries after a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._reference import parse_reference

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["DEFAULT_DIR", "DROP_IN_NAME", "podman_name", "register", "render"]

DEFAULT_DIR = Path("/etc/containers/containers.conf.d")
"""Where Podman looks for ``containers.conf`` drop-ins (as root)."""
DROP_IN_NAME = "50-pluginkit.conf"
"""The file :func:`register` writes in the drop-in directory."""

_HEADER = (
    "# Written by pluginkit (pluginkit podman-register): Podman's names for the\n"
    "# managed volume plugins that are enabled, and their stable sockets.\n"
    "# Rewritten on every registration: do not edit.\n"
)


def register(manager: Manager, dir: str | os.PathLike[str] | None = None) -> Path:
    """Write (or refresh) ``DIR/50-pluginkit.conf`` for the manager's enabled volume plugins.

    Each enabled managed plugin with the ``volumedriver`` capability gets an
    entry ``"NAME" = "SOCKET"``: NAME is how ``podman volume create --driver``
    names it (the plugin name, without the tag when the tag is ``latest``, as
    ``docker volume create -d`` does), SOCKET its stable socket path. The file
    is replaced atomically. When no plugin qualifies, the file is removed, so
    that nothing of pluginkit is left in Podman's configuration.

    Args:
        manager: The manager whose plugins are registered.
        dir: The drop-in directory (default ``/etc/containers/containers.conf.d``),
            created if missing.

    Returns:
        The path of the drop-in file (absent when no plugin qualified).
    """
    directory = Path(dir) if dir is not None else DEFAULT_DIR
    target = directory / DROP_IN_NAME
    entries: dict[str, str] = {}
    for plugin in manager.list(capability="volumedriver", enabled=True):
        address = plugin.stable_address
        if address is None:
            continue
        entries[podman_name(plugin.name)] = address.removeprefix("unix://")
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return target
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    from ._store import atomic_write

    atomic_write(target, render(entries).encode(), mode=0o644)
    return target


def render(entries: dict[str, str]) -> str:
    """Return the drop-in's text for ``{driver name: socket path}`` (sorted by name).

    Keys and values are TOML basic strings; JSON's escapes are valid there.
    """
    lines = [_HEADER, "[engine.volume_plugins]\n"]
    for name in sorted(entries):
        lines.append(f"{json.dumps(name)} = {json.dumps(entries[name])}\n")
    return "".join(lines)


def podman_name(name: str) -> str:
    """Return the driver name Podman is given for the plugin ``name`` (``name:tag``)."""
    reference = parse_reference(name)
    return reference.name if reference.tag == "latest" else f"{reference.name}:{reference.tag}"
