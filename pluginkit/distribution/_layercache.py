"""The compressed layer of a plugin's rootfs, kept after the first push or save.

Docker keeps a plugin's blobs from ``create`` on, so ``docker plugin push``
only uploads. pluginkit compresses the rootfs at the first ``push`` or
``save`` and keeps the result in the plugin's directory (``layer.tar.gz``,
described by ``layer.json``) together with a fingerprint of the rootfs
(every entry's path, type, mode, size, mtime and link target). Later pushes
and saves reuse it while the fingerprint matches, and compress again when
the rootfs changed. Both files are replaced atomically (written in the
root's ``tmp/``, renamed in), so a kill leaves the old pair, the new pair,
or a blob without a matching description - which is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .._store import atomic_write
from ._manifest import DOCKER_LAYER_GZIP, Descriptor
from ._push import write_layer

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = ["LAYER_BLOB", "LAYER_META", "plugin_layer", "rootfs_fingerprint"]

LAYER_BLOB = "layer.tar.gz"
LAYER_META = "layer.json"


def rootfs_fingerprint(rootfs: Path) -> str:
    """Hash what a layer is made of: every entry's path, type, mode, size, mtime, link."""
    digest = hashlib.sha256()
    top = os.fspath(rootfs)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.relpath(path, top)
            digest.update(
                f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return "sha256:" + digest.hexdigest()


def plugin_layer(manager: Manager, plugin_id: str, staging: Path) -> tuple[Descriptor, Path]:
    """Return the plugin's layer descriptor and blob path, compressing only when needed.

    ``staging`` is a staging directory of the manager's store, used for a
    fresh layer before it is moved into the plugin directory.
    """
    store = manager._store
    plugin_dir = store.plugin_dir(plugin_id)
    blob = plugin_dir / LAYER_BLOB
    fingerprint = rootfs_fingerprint(store.rootfs(plugin_id))
    try:
        with open(plugin_dir / LAYER_META, encoding="utf-8") as f:
            meta = json.load(f)
        if (
            isinstance(meta, dict)
            and meta.get("Fingerprint") == fingerprint
            and os.path.getsize(blob) == meta.get("Size")
        ):
            return Descriptor(DOCKER_LAYER_GZIP, str(meta["Digest"]), int(meta["Size"])), blob
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fresh = staging / LAYER_BLOB
    layer = write_layer(store.rootfs(plugin_id), fresh)
    try:
        os.replace(fresh, blob)
        record = {"Digest": layer.digest, "Size": layer.size, "Fingerprint": fingerprint}
        atomic_write(plugin_dir / LAYER_META, json.dumps(record).encode(), tmp_dir=store.tmp_dir)
    except OSError:
        # The plugin went away meanwhile (removed, upgraded): use the fresh blob once.
        return layer, fresh if fresh.exists() else blob
    return layer, blob
