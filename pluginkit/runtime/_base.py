"""The runtime seam: what the Manager asks of whatever runs plugins.

A runtime receives a :class:`RuntimeSpec` (everything needed to run one
plugin, already resolved from its config and settings) and reports each exit
of a plugin through the callback given to :meth:`Runtime.start` /
:meth:`Runtime.restore`. It never decides whether a plugin is restarted: the
Manager does, because only it knows why a plugin stopped.

Two optional extensions, :class:`SupportsPrepare` and
:class:`SupportsCleanup`, are small protocols of their own: a runtime that
has the method is used through it (the Manager checks with ``isinstance``),
one that has not simply goes without.

The protocol is deliberately small and host-agnostic (ids, specs and
callbacks; no pids or container objects) so that runtimes that run plugins
elsewhere - in containers, or across a cluster - fit behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "ExitCallback",
    "PluginExit",
    "Runtime",
    "RuntimeDevice",
    "RuntimeMount",
    "RuntimeSpec",
    "SupportsCleanup",
    "SupportsPrepare",
]


@attrs.frozen
class RuntimeMount:
    """A mount for the plugin: ``source`` on the host at ``destination`` inside."""

    source: str
    destination: str
    type: str = "bind"
    options: tuple[str, ...] = ()


@attrs.frozen
class RuntimeDevice:
    """A host device node made available to the plugin at the same path."""

    path: str


@attrs.frozen
class RuntimeSpec:
    """Everything a runtime needs to run one plugin.

    ``socket_dir`` is the host directory where the plugin's socket (named
    ``socket``) must appear; inside a container it is mounted at
    ``/run/docker/plugins``. ``state_dir`` is a private, persistent directory
    the runtime may use for its own bookkeeping (pid files, image ids), kept
    until the plugin is removed.

    ``listen_fd``, when set, is a listening socket already bound at
    :attr:`socket_path` that the plugin must serve on instead of binding its
    own (systemd's ``LISTEN_FDS`` convention: descriptor 3 in the plugin,
    ``LISTEN_FDS=1``, ``LISTEN_PID``); the runtime leaves the socket path
    alone. The Manager sets it only for a runtime whose ``passes_listen_fd``
    attribute is true, and only for plugins that opt in.
    """

    id: str
    name: str
    rootfs: Path
    entrypoint: tuple[str, ...]
    socket_dir: Path
    socket: str
    state_dir: Path
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = "/"
    user: tuple[int, int] | None = None
    mounts: tuple[RuntimeMount, ...] = ()
    devices: tuple[RuntimeDevice, ...] = ()
    capabilities: tuple[str, ...] = ()
    allow_all_devices: bool = False
    network: str = ""
    ipc_host: bool = False
    pid_host: bool = False
    propagated_mount: str = ""
    propagated_mount_source: Path | None = None
    listen_fd: int | None = None

    @property
    def socket_path(self) -> Path:
        """The host path where the plugin's socket appears."""
        return self.socket_dir / self.socket


@attrs.frozen
class PluginExit:
    """A plugin stopped: which one, its exit status and what it said last.

    ``exit_code`` is ``None`` when the status is unknown (e.g. a re-attached
    process that is not our child); negative values are signal numbers, as
    in :mod:`subprocess`. ``stderr_tail`` holds the last lines of stderr.
    """

    id: str
    exit_code: int | None
    stderr_tail: str = ""


ExitCallback = Callable[[PluginExit], None]
"""Called by a runtime, from any thread, each time a plugin it runs exits."""


@runtime_checkable
class Runtime(Protocol):
    """What runs plugins for a :class:`~pluginkit.Manager`.

    Implementations must be thread-safe. ``on_exit`` is called exactly once
    per exit of a started or restored plugin, whatever the cause (crash,
    :meth:`stop`, external kill), from a thread of the runtime - never from
    inside a call to one of its methods - so a caller may hold its own locks
    across :meth:`stop` and the callback may call the runtime (e.g. start
    the plugin again). It may run before or after :meth:`stop` returns.
    After :meth:`close`, exits are no longer reported.
    """

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        """Start the plugin and return once it is launched (not necessarily listening).

        The Manager has created ``spec.socket_dir`` and removed any stale
        socket there. Raises :class:`~pluginkit.RuntimeStartError` when it
        cannot be started; a start that raises leaves nothing running and
        never calls ``on_exit``.
        """
        ...

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        """Stop the plugin: SIGTERM, then SIGKILL after ``grace`` seconds; wait for the exit.

        Returns once the plugin has exited; its ``on_exit`` call is not
        waited for (it may come just before or just after). Stopping a plugin
        that is not running is not an error.
        """
        ...

    def is_running(self, plugin_id: str) -> bool:
        """Tell whether the plugin is running."""
        ...

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        """Re-attach to a plugin that outlived a previous manager (live restore).

        Returns ``True`` when it is alive and now supervised again, ``False``
        when it is not running (stale leftovers are cleaned up). Must never
        signal a process it cannot prove is the plugin. The Manager calls it
        at start-up for every enabled plugin, live restore or not (without
        it, a ``True`` is followed by :meth:`stop`); an exception counts as
        ``False``.
        """
        ...

    def discard(self, plugin_id: str) -> None:
        """Forget everything kept for a plugin that is being removed (images, state)."""
        ...

    def close(self) -> None:
        """Stop supervising without stopping plugins (they keep running for live restore).

        :meth:`~pluginkit.Manager.shutdown` calls it once, after stopping
        the plugins it stops. The runtime need not be usable afterwards.
        """
        ...


@runtime_checkable
class SupportsPrepare(Protocol):
    """Optional: a runtime that can get a plugin ready to start ahead of its first enable.

    The Manager calls :meth:`prepare` after :meth:`~pluginkit.Manager.create`,
    :meth:`~pluginkit.Manager.install` and :meth:`~pluginkit.Manager.set`, so
    that an enable costs only the start itself (e.g. the image is imported
    and the container created beforehand). A failure is logged, not raised:
    the next :meth:`Runtime.start` does the same work and reports it.
    """

    def prepare(self, spec: RuntimeSpec) -> None:
        """Do the slow part of starting ``spec`` now, without starting it.

        Raises:
            RuntimeStartError: The plugin cannot be prepared (what a start
                would report too).
        """
        ...


@runtime_checkable
class SupportsCleanup(Protocol):
    """Optional: a runtime that keeps things per plugin outside the manager's root.

    The Manager calls :meth:`cleanup` once at start-up, after loading its
    state and before re-starting enabled plugins, with the ids of every
    plugin it has on disk, so that leftovers of plugins removed while the
    runtime could not be reached (an engine that was down, a manager killed
    mid-removal) do not pile up. A failure is logged, not raised.
    """

    def cleanup(self, keep_ids: Collection[str], *, root: Path | str) -> list[str]:
        """Remove what is kept for plugins of ``root`` whose ids are not in ``keep_ids``.

        Only leftovers of plugins belonging to the manager root ``root`` may
        be touched: other managers may share the same backend.

        Returns:
            The ids of the plugins whose leftovers were removed, sorted.
        """
        ...
