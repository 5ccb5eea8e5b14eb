"""localvolume: a volume plugin that keeps each volume in a local directory.

Volume ``NAME`` lives in ``<root>/NAME/_data`` (like Docker's own ``local``
driver); ``<root>/NAME/opts.json`` keeps the options it was created with.
Mounts are counted per caller id, and per id (Docker mounts a running
container's volumes again, under the same id, for ``docker cp``), so a volume
stays mounted until every Mount has had its Unmount, and a mounted volume
cannot be removed.

Run it with ``python3 -m pluginkit.examples.localvolume``: it serves at
``$PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET`` (what pluginkit's process
runtime sets), else at ``/run/docker/plugins/localvolume.sock`` where a Docker
engine finds it. The root is ``$LOCALVOLUME_ROOT``, else :func:`default_root`
(``/var/lib/pluginkit/localvolume`` for root, a per-user data directory for
anyone else).

:func:`plugin_dir` is a managed-plugin directory for it (Docker's
``config.json`` plus an empty ``rootfs/``), ready for
``pluginkit create localvolume <dir>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import platformdirs

from pluginkit import PluginError
from pluginkit._store import atomic_write
from pluginkit.sdk import volume

__all__ = ["DEFAULT_ROOT", "LocalVolumeDriver", "default_root", "plugin_dir"]

#: Where volumes live for root when ``LOCALVOLUME_ROOT`` is not set.
DEFAULT_ROOT = "/var/lib/pluginkit/localvolume"


def default_root() -> Path:
    """Return where volumes live when ``LOCALVOLUME_ROOT`` is not set.

    :data:`DEFAULT_ROOT` for root; for anyone else the user's data directory
    (e.g. ``~/.local/share/pluginkit/localvolume``), so the example works
    without privileges on the process runtime.
    """
    if os.geteuid() == 0:
        return Path(DEFAULT_ROOT)
    return platformdirs.user_data_path("pluginkit") / "localvolume"


# Docker's rule for volume names (daemon/volume/local: [a-zA-Z0-9][a-zA-Z0-9_.-]+).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def plugin_dir() -> Path:
    """Return the managed-plugin directory shipped with the package (config.json + rootfs/)."""
    return Path(__file__).resolve().parent / "plugin"


class LocalVolumeDriver(volume.VolumeDriver):
    """A :class:`~pluginkit.sdk.VolumeDriver` storing volumes under ``root``.

    Args:
        root: The directory holding the volumes (created when missing);
            default ``$LOCALVOLUME_ROOT``, else :func:`default_root`.
    """

    default_name: ClassVar[str | None] = "localvolume"

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get("LOCALVOLUME_ROOT") or default_root()
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        # volume name -> caller id -> how many Mounts that id has not unmounted yet
        self._mounts: dict[str, Counter[str]] = {}

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise PluginError(
                f'invalid volume name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
            )
        return self.root / name

    def _existing(self, name: str) -> Path:
        path = self._dir(name)
        if not (path / "_data").is_dir():
            raise PluginError(f"no such volume: {name}")
        return path

    def create(self, request: volume.CreateRequest) -> None:
        """Create ``<root>/NAME/_data``; creating an existing volume is not an error."""
        path = self._dir(request.name)
        with self._lock:
            (path / "_data").mkdir(parents=True, exist_ok=True)
            meta = path / "opts.json"
            if not meta.exists():
                created = datetime.now(timezone.utc).isoformat(timespec="seconds")
                record = {"Opts": request.options, "CreatedAt": created}
                atomic_write(meta, json.dumps(record).encode())

    def remove(self, request: volume.RemoveRequest) -> None:
        """Delete the volume and its data; refused while mounted."""
        with self._lock:
            path = self._existing(request.name)
            if self._mounts.get(request.name):
                raise PluginError(f"volume {request.name} is in use")
            shutil.rmtree(path)

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        """Count one more user of the volume and return its data directory."""
        with self._lock:
            path = self._existing(request.name)
            self._mounts.setdefault(request.name, Counter())[request.id] += 1
        return volume.MountResponse(mountpoint=str(path / "_data"))

    def unmount(self, request: volume.UnmountRequest) -> None:
        """Forget one user of the volume."""
        with self._lock:
            self._existing(request.name)
            users = self._mounts.get(request.name, Counter())
            users[request.id] -= 1
            if users[request.id] <= 0:
                del users[request.id]
            if not users:
                self._mounts.pop(request.name, None)

    def path(self, request: volume.PathRequest) -> volume.PathResponse:
        """Return the data directory (every volume is always reachable there)."""
        return volume.PathResponse(mountpoint=str(self._existing(request.name) / "_data"))

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        """Describe one volume."""
        return volume.GetResponse(volume=self._describe(request.name))

    def list(self) -> volume.ListResponse:
        """List every volume under the root."""
        volumes = []
        if self.root.is_dir():
            for name in sorted(p.name for p in self.root.iterdir()):
                # Skip what this driver cannot have made (a stray ".trash") and
                # volumes removed since iterdir(): one of them must not fail List.
                if _NAME.match(name):
                    with contextlib.suppress(PluginError):
                        volumes.append(self._describe(name))
        return volume.ListResponse(volumes=volumes)

    def _describe(self, name: str) -> volume.Volume:
        path = self._existing(name)
        created: str | None = None
        with contextlib.suppress(OSError, ValueError):
            created = json.loads((path / "opts.json").read_text()).get("CreatedAt")
        with self._lock:
            users = self._mounts[name].total() if name in self._mounts else 0
        return volume.Volume(
            name=name,
            mountpoint=str(path / "_data"),
            created_at=created,
            status={"Mounts": users},
        )
