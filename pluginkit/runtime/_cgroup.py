"""Process containment for :class:`~pluginkit.runtime.ProcessRuntime`: a cgroup per plugin.

Where a cgroup v2 hierarchy is mounted and the manager may create cgroups
below its own (root, or a delegated subtree), each plugin runs in a cgroup of
its own: ``<manager's cgroup>/pluginkit-<id[:16]>-<hash of the state dir>``.
Every process the plugin starts stays in it whatever it does (``setsid``,
double forks), so killing the cgroup (``cgroup.kill``, or SIGKILL to each
process of ``cgroup.procs`` on kernels before 5.14) kills them all. Hybrid
hosts (cgroup v1 controllers plus a cgroup2 mount at
``/sys/fs/cgroup/unified``) work too: the cgroup2 mount is found in
``/proc/self/mountinfo``.

Elsewhere the runtime falls back to process groups (see ``process.py``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import select
import signal
import time
from pathlib import Path

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["CGroup", "cgroup_base", "plugin_cgroup_name"]

_log = logging.getLogger("pluginkit.runtime.process")


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                if sep and right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split(" ")[4].replace("\\040", " "))
    except OSError:
        pass
    return None


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                hierarchy, _, rest = line.rstrip("\n").partition(":")
                controllers, _, path = rest.partition(":")
                if hierarchy == "0" and controllers == "":
                    return path
    except OSError:
        pass
    return None


_base_cache: list[Path | None] = []


def cgroup_base() -> Path | None:
    """Return the cgroup v2 directory where plugin cgroups are made, or None if there is none.

    It is the manager's own cgroup, when it is writable and a child can be
    created there (checked once per process with a probe directory).
    """
    if _base_cache:
        return _base_cache[0]
    base: Path | None = None
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is not None and own is not None:
        candidate = mount / own.lstrip("/")
        probe = candidate / f"pluginkit-probe-{os.getpid()}"
        try:
            probe.mkdir()
            ok = (probe / "cgroup.procs").exists()
            probe.rmdir()
            if ok:
                base = candidate
        except OSError as exc:
            _log.debug("no cgroup for plugins under %s: %s", candidate, exc)
    _log.debug("plugin containment: %s", f"cgroup v2 under {base}" if base else "process groups")
    _base_cache.append(base)
    return base


def plugin_cgroup_name(plugin_id: str, state_dir: Path) -> str:
    """Return the name of a plugin's cgroup: stable for a plugin and its state dir."""
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:8]
    return f"pluginkit-{plugin_id[:16]}-{digest}"


class CGroup:
    """One plugin's cgroup (a directory of a cgroup v2 hierarchy)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<CGroup {self.path}>"

    def create(self) -> None:
        """Make the cgroup (an existing one is kept)."""
        with contextlib.suppress(FileExistsError):
            self.path.mkdir()

    def exists(self) -> bool:
        return (self.path / "cgroup.procs").exists()

    def open_procs(self) -> int:
        """Open ``cgroup.procs`` for writing: writing ``b"0"`` moves the writer in."""
        return os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def open_events(self) -> int | None:
        """Open ``cgroup.events`` for :meth:`populated` to re-read (None if it cannot be opened).

        A stop checks that the cgroup is empty right after the plugin's exit:
        one ``pread`` of an open file instead of an open, a read and a close.
        The caller closes the descriptor.
        """
        try:
            return os.open(os.path.join(self.path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def populated(self, events_fd: int | None = None) -> bool:
        """Tell whether a process is in the cgroup (or in one below it).

        ``events_fd`` is a descriptor from :meth:`open_events`, re-read from
        its start; without one (or if reading it fails) the file is opened.
        """
        if events_fd is not None:
            with contextlib.suppress(OSError):
                return b"populated 1" in os.pread(events_fd, 4096, 0)
        fd = self.open_events()
        if fd is None:
            return False
        try:
            return b"populated 1" in os.read(fd, 4096)
        finally:
            os.close(fd)

    def set_limit(self, name: str, value: str) -> bool:
        """Write a limit (``memory.max``, ``cpu.max``); False when the controller is not there."""
        path = self.path / name
        if not path.exists():  # creating it is refused (EACCES), so check first
            return False
        path.write_text(value)
        return True

    def kill(self, timeout: float = 5.0, *, events_fd: int | None = None) -> bool:
        """SIGKILL every process in the cgroup and wait until it is empty; True if it is.

        ``events_fd``: as for :meth:`populated`, for the first check.
        """
        if not self.populated(events_fd):
            return True
        killed = False
        try:
            (self.path / "cgroup.kill").write_text("1")
            killed = True
        except FileNotFoundError:
            if not self.path.exists():
                return True
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM, errno.EACCES):
                raise
        deadline = time.monotonic() + timeout
        while self.populated():
            if not killed:
                # Before Linux 5.14: kill what is there, again until none is left
                # (a process forking meanwhile shows up in the next read).
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _log.error("processes of %s survived SIGKILL: %s", self.path, self.pids())
                return False
            self._wait_event(min(remaining, 0.05))
        return True

    def _wait_event(self, timeout: float) -> None:
        fd = self.open_events()
        if fd is None:
            return
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI)
            os.read(fd, 4096)
            if self.populated(fd):
                poller.poll(timeout * 1000)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Kill what is left, then delete the cgroup (a missing one is fine)."""
        if not self.path.exists():
            return
        self.kill()
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning("cannot remove %s: %s", self.path, exc)
