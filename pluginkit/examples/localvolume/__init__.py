"""localvolume: a volume plugin that keeps each volume in a local directory.

Volume ``NAME`` lives in ``<root>/NAME/_data`` (like Docker's own ``local``
driver); ``<root>/NAME/opts.json`` keeps the options it was created with.
Mounts are counted per caller id, so a volume used by two containers stays
mounted until both have left, and a mounted volume cannot be removed.

Run it with ``python3 -m pluginkit.examples.localvolume``: it serves at
``$PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET`` (what pluginkit's process
runtime sets), else at ``/run/docker/plugins/localvolume.sock`` where a Docker
engine finds it. The root is ``$LOCALVOLUME_ROOT`` (default
``/var/lib/pluginkit/localvolume``).

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
from datetime import datetime, timezone
from pathlib import Path

from pluginkit import PluginError
from pluginkit.sdk import PluginServer, volume

__all__ = ["DEFAULT_ROOT", "LocalVolumeDriver", "plugin_dir"]

#: Where volumes live when ``LOCALVOLUME_ROOT`` is not set.
DEFAULT_ROOT = "/var/lib/pluginkit/localvolume"

# Docker's rule for volume names (daemon/volume/local: [a-zA-Z0-9][a-zA-Z0-9_.-]+).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def plugin_dir() -> Path:
    """Return the managed-plugin directory shipped with the package (config.json + rootfs/)."""
    return Path(__file__).resolve().parent / "plugin"


class LocalVolumeDriver(volume.VolumeDriver):
    """A :class:`~pluginkit.sdk.VolumeDriver` storing volumes under ``root``.

    Args:
        root: The directory holding the volumes (created when missing);
            default ``$LOCALVOLUME_ROOT``, else ``/var/lib/pluginkit/localvolume``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get("LOCALVOLUME_ROOT") or DEFAULT_ROOT
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._mounts: dict[str, set[str]] = {}

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
                tmp = path / "opts.json.tmp"
                tmp.write_text(json.dumps({"Opts": request.options, "CreatedAt": created}))
                os.replace(tmp, meta)

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
            self._mounts.setdefault(request.name, set()).add(request.id)
        return volume.MountResponse(mountpoint=str(path / "_data"))

    def unmount(self, request: volume.UnmountRequest) -> None:
        """Forget one user of the volume."""
        with self._lock:
            self._existing(request.name)
            users = self._mounts.get(request.name, set())
            users.discard(request.id)
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
        if not self.root.is_dir():
            return volume.ListResponse()
        names = sorted(p.name for p in self.root.iterdir() if (p / "_data").is_dir())
        return volume.ListResponse(volumes=[self._describe(name) for name in names])

    def _describe(self, name: str) -> volume.Volume:
        path = self._existing(name)
        created: str | None = None
        with contextlib.suppress(OSError, ValueError):
            created = json.loads((path / "opts.json").read_text()).get("CreatedAt")
        with self._lock:
            users = len(self._mounts.get(name, ()))
        return volume.Volume(
            name=name,
            mountpoint=str(path / "_data"),
            created_at=created,
            status={"Mounts": users},
        )

    def server(
        self,
        *,
        name: str | None = "localvolume",
        threads: int = 0,
        max_body: int = 64 * 1024 * 1024,
        stop_timeout: float = 10.0,
    ) -> PluginServer:
        """Make the plugin server (named ``localvolume`` by default)."""
        return super().server(
            name=name, threads=threads, max_body=max_body, stop_timeout=stop_timeout
        )
