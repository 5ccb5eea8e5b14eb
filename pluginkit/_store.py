"""On-disk state of a :class:`~pluginkit.Manager`: layout, atomic writes, the root lock.

Layout under the root (directories 0700, files 0600)::

    <root>/lock                    exclusive flock + the holder's pid
    <root>/plugins/<id>/plugin.json    the persisted record of one plugin
    <root>/plugins/<id>/rootfs/        its root filesystem
    <root>/plugins/<id>/runtime/       private state of the runtime (pid files...)
    <root>/plugins/<id>-removing/      a plugin being deleted (finished at next start)
    <root>/tmp/                        installs being staged, records being written

Every change is made so that a kill at any instant leaves a loadable state:
``plugin.json`` is replaced atomically (temp file, fsync, rename, fsync dir);
a new plugin is staged under ``tmp/`` and renamed into ``plugins/`` in one
step; a removal first renames the directory to ``<id>-removing`` so that a
half-deleted plugin is never mistaken for an installed one (moby#33799).

This module knows paths and JSON documents only; what the documents mean is
the Manager's business. Plugin ids are checked against ``^[0-9a-f]{64}$``
before they are joined to any path, so nothing can escape the root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._errors import PluginError, RootInUseError
from ._files import read_small_file

__all__ = ["MAX_RECORD_BYTES", "PLUGIN_ID_RE", "RootLock", "Store", "atomic_write", "fsync_dir"]

log = logging.getLogger("pluginkit.manager")

PLUGIN_ID_RE = re.compile(r"\A[0-9a-f]{64}\Z")
"""A managed plugin's id: 64 lower-case hex digits (Docker's ``stringid``)."""

RECORD = "plugin.json"
MAX_RECORD_BYTES = 64 << 20
"""The largest plugin record read by default (a 1 MiB config re-indented, and settings, fit)."""
_REMOVING = "-removing"
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, creations) to disk."""
    _fsync(path, os.O_DIRECTORY)


def _fsync(path: str | Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = _FILE_MODE, tmp_dir: Path | None = None
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    The data goes to a temporary file (in ``tmp_dir``, which must be on the
    same filesystem, else next to ``path``), which is fsynced, renamed over
    ``path``, and then the directory is fsynced so the rename itself
    survives a crash.
    """
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=tmp_dir if tmp_dir is not None else path.parent
    )
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def ensure_private_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and parents) if needed and make sure it is 0700."""
    try:
        mode = os.stat(path).st_mode  # one stat when it is there (the common case)
    except FileNotFoundError:
        os.makedirs(path, mode=_DIR_MODE, exist_ok=True)
        mode = os.stat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a directory", os.fspath(path))
    if mode & 0o777 != _DIR_MODE:
        os.chmod(path, _DIR_MODE)


def make_private_dir(path: str) -> bool:
    """Like :func:`ensure_private_dir`, for a directory that is usually missing.

    Returns True when this call made the directory (so it is empty). The
    common case costs one ``mkdir``: a restore makes one per plugin, where
    the stat-first order of :func:`ensure_private_dir` would cost three calls.
    """
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        ensure_private_dir(path)
        return False
    except FileNotFoundError:
        ensure_private_dir(path)  # a parent is missing
        return True
    global _MKDIR_KEEPS_MODE
    if not _MKDIR_KEEPS_MODE:
        # The umask could strip owner bits: check (the first time, and every
        # time while it does), but not on every later mkdir of the process.
        if os.stat(path).st_mode & 0o777 == _DIR_MODE:
            _MKDIR_KEEPS_MODE = True
        else:
            os.chmod(path, _DIR_MODE)
    return True


_MKDIR_KEEPS_MODE = False
"""Set once a ``mkdir(path, 0o700)`` of this process made a 0700 directory."""


def check_plugin_id(plugin_id: str) -> str:
    """Return ``plugin_id`` when it is a well-formed id, else raise ``ValueError``.

    Called before any id is joined to a path.
    """
    if not isinstance(plugin_id, str) or not PLUGIN_ID_RE.match(plugin_id):
        raise ValueError(f"invalid plugin id {plugin_id!r}: must be 64 lower-case hex digits")
    return plugin_id


class RootLock:
    """An exclusive, inter-process lock on a root directory, recording the holder's pid.

    ``fcntl.flock`` on ``<root>/lock``: the kernel drops it when the holder
    dies, so a crashed manager never leaves a stale lock behind; the pid in
    the file is only there to tell users who holds it. The descriptor is
    close-on-exec, so plugin processes never inherit the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, root: Path) -> None:
        """Take the lock or raise :class:`~pluginkit.RootInUseError` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PluginError(f"cannot lock plugin root {root}: {exc}") from exc
            who = f"process {holder}" if holder else "another process"
            raise RootInUseError(f"plugin root {root} is in use by {who}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


class Store:
    """The directory tree of one manager root (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.root = root
        self.max_record_bytes = max_record_bytes
        self.plugins_dir = root / "plugins"
        self.plugins_str = os.fspath(self.plugins_dir)
        self.tmp_dir = root / "tmp"
        self._lock = RootLock(root / "lock")

    # -- lifecycle ----------------------------------------------------------

    def open(self) -> None:
        """Create the layout, take the root lock, and finish interrupted work.

        Interrupted removals (``<id>-removing``) are deleted and abandoned
        staging directories under ``tmp/`` are cleared.
        """
        ensure_private_dir(self.root)
        self._lock.acquire(self.root)
        try:
            ensure_private_dir(self.plugins_dir)
            ensure_private_dir(self.tmp_dir)
            self._finish_interrupted()
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Release the root lock."""
        self._lock.release()

    def _finish_interrupted(self) -> None:
        for entry in os.scandir(self.plugins_dir):
            if entry.name.endswith(_REMOVING):
                # Joined with the plugins dir: Docker retries this cleanup with
                # a bare relative name, which deletes nothing (or the wrong thing).
                _remove_tree(self.plugins_dir / entry.name)
        for entry in os.scandir(self.tmp_dir):
            _remove_tree(self.tmp_dir / entry.name)

    # -- paths --------------------------------------------------------------

    # joinpath makes one Path of all the parts, the cheapest way: a restore
    # asks for these once per plugin.

    def plugin_dir(self, plugin_id: str) -> Path:
        """Return the directory of one plugin (the id is validated first)."""
        return self.plugins_dir.joinpath(check_plugin_id(plugin_id))

    def rootfs(self, plugin_id: str) -> Path:
        """Return the plugin's root filesystem."""
        return self.plugins_dir.joinpath(check_plugin_id(plugin_id), "rootfs")

    def runtime_dir(self, plugin_id: str) -> Path:
        """Return the private directory a runtime may use for the plugin (created if needed)."""
        path = self.plugins_dir.joinpath(check_plugin_id(plugin_id), "runtime")
        ensure_private_dir(path)
        return path

    def exists(self, plugin_id: str) -> bool:
        """Tell whether a plugin directory with that id exists."""
        return self.plugin_dir(plugin_id).exists()

    # -- records ------------------------------------------------------------

    def new_staging(self) -> Path:
        """Create a fresh private directory under ``tmp/`` to assemble a new plugin in."""
        return Path(tempfile.mkdtemp(prefix="stage-", dir=self.tmp_dir))

    def discard_staging(self, staging: Path) -> None:
        """Delete a staging directory that will not be committed."""
        _remove_tree(staging)

    def commit(self, staging: Path, plugin_id: str, record: dict[str, Any]) -> None:
        """Turn a staging directory into an installed plugin, atomically.

        ``record`` is written as ``plugin.json`` inside the staging directory,
        everything is flushed, then the directory is renamed to
        ``plugins/<id>`` in one step: after a crash the plugin is either fully
        there or not at all.
        """
        target = self.plugin_dir(plugin_id)
        staging.chmod(_DIR_MODE)
        atomic_write(staging / RECORD, _encode(record))
        _fsync_tree(staging)
        os.rename(staging, target)
        fsync_dir(self.plugins_dir)
        fsync_dir(self.tmp_dir)

    def save(self, plugin_id: str, record: dict[str, Any]) -> None:
        """Atomically replace the record of an installed plugin."""
        # The temporary file lives in tmp/, which is cleared at every start,
        # so a kill between write and rename leaves nothing in the plugin dir.
        atomic_write(self.plugin_dir(plugin_id) / RECORD, _encode(record), tmp_dir=self.tmp_dir)

    def plugin_ids(self) -> list[str]:
        """Return the ids of every plugin directory, readable or not, sorted."""
        return sorted(e.name for e in os.scandir(self.plugins_dir) if PLUGIN_ID_RE.match(e.name))

    def load_all(self) -> list[tuple[str, dict[str, Any]]]:
        """Read every plugin record; unreadable ones are logged and skipped, never fatal."""
        records = []
        for plugin_id in self.plugin_ids():
            path = os.path.join(self.plugins_str, plugin_id, RECORD)
            try:
                # Not open(): a record replaced by a FIFO would block the
                # manager's start for ever, a link to /dev/zero never end.
                record = json.loads(read_small_file(path, self.max_record_bytes))
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except FileNotFoundError:
                log.warning("missing plugin record %s, skipping", path)
                continue
            except (OSError, ValueError) as exc:
                log.warning("error loading plugin record %s, skipping: %s", path, exc)
                continue
            except RecursionError:
                # json raises it for deeply nested input: a bad file, not a bug.
                log.warning(
                    "error loading plugin record %s, skipping: JSON nested too deeply", path
                )
                continue
            records.append((plugin_id, record))
        return records

    def remove(self, plugin_id: str) -> None:
        """Delete a plugin's directory: rename to ``<id>-removing``, then delete.

        A missing directory is not an error; a leftover ``-removing`` from an
        earlier attempt is deleted first.
        """
        path = self.plugin_dir(plugin_id)
        removing = path.with_name(path.name + _REMOVING)
        if removing.exists():
            _remove_tree(removing)
        try:
            os.rename(path, removing)
        except FileNotFoundError:
            return
        fsync_dir(self.plugins_dir)
        _remove_tree(removing)


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=False) + "\n").encode()


def _remove_tree(path: Path) -> None:
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def _fsync_tree(top: Path) -> None:
    """Flush every regular file and directory under ``top`` (no links followed)."""
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full) and os.path.isfile(full):
                _fsync(full, os.O_NOFOLLOW)
        fsync_dir(Path(dirpath))
