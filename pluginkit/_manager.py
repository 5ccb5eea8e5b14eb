"""The Manager: install, enable, supervise, persist and look up managed plugins.

This is Docker's plugin manager (``daemon/pkg/plugin``) in Python, minus its
known bugs (see ``docs/coming-from-docker.md``):

- readiness is a fast-polled socket dial with a deadline, not 0.5 s + 4x3 s
  of sleeps, and a plugin that dies while starting fails ``enable`` at once
  with its exit status and last stderr lines;
- every privilege is checked (Docker skipped the first sorted one);
- a crashed plugin is restarted with exponential backoff, and an exit caused
  by ``disable``/``remove``/``shutdown`` is never mistaken for a crash: the
  reason is recorded *before* the plugin is stopped;
- a refcount is only taken when a lookup succeeds (moby#32609);
- an unreadable plugin on disk is skipped, never fatal (moby#33799).

Concurrency: ``_lock`` guards the tables and every entry's state and is
never held while calling the runtime, a plugin, a handler or ``on_event``.
Each entry also has an ``op_lock`` that serialises the slow operations
(start, stop, save) on that one plugin; it is always taken before ``_lock``.
Lookups read an immutable snapshot that is swapped whenever a state
changes, so they take no lock at all.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._config import (
    PluginConfig,
    Privilege,
    Settings,
    apply_set,
    capabilities,
    compute_privileges,
    dump_config,
    dump_settings,
    initial_settings,
    parse_config,
    parse_settings,
)
from ._errors import (
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    InvalidReferenceError,
    PluginDisabledError,
    PluginEnabledError,
    PluginError,
    PluginExistsError,
    PluginInUseError,
    PluginTimeoutError,
    RuntimeStartError,
)
from ._events import PluginEvent
from ._fanout import run_each
from ._health import STARTING, UNHEALTHY, HealthCheck, HealthMonitor
from ._index import DISABLED as _DISABLED
from ._index import DOWN as _DOWN
from ._index import RUNNING as _RUNNING
from ._index import LookupIndex
from ._install import (
    Filler,
    Grant,
    InstallLimits,
    check_grant,
    check_source,
    copy_rootfs,
    local_source,
    name_from_source,
    open_source,
    read_context,
)
from ._nogc import gc_paused
from ._paths import default_root, default_run_root
from ._plugin import Plugin
from ._reference import is_plugin_id, normalize_name
from ._restart import RestartPolicy
from ._stable import link_stable, stable_socket_path, unlink_stable
from ._store import (
    MAX_RECORD_BYTES,
    Store,
    check_plugin_id,
    ensure_private_dir,
    make_private_dir,
)
from ._wire._address import UNIX_PATH_MAX
from .runtime._base import (
    PluginExit,
    Runtime,
    RuntimeDevice,
    RuntimeMount,
    RuntimeSpec,
    SupportsCleanup,
    SupportsPrepare,
)

if TYPE_CHECKING:
    from ._client import Client
    from ._legacy import LegacyRegistry

__all__ = ["Grant", "Manager"]

log = logging.getLogger("pluginkit.manager")

SOCKET_PATH_MAX = UNIX_PATH_MAX  # the one limit, in the wire layer
"""Longest unix socket path Linux accepts (``sun_path`` is 108 bytes with the NUL)."""

_RECORD_VERSION = 1
_T = TypeVar("_T")
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


class _DefaultLegacy:
    """Marker for ``legacy=`` left at its default (a ``LegacyRegistry()`` built on first use)."""

    def __repr__(self) -> str:
        return "<default LegacyRegistry>"


_DEFAULT_LEGACY: Any = _DefaultLegacy()


@attrs.define(eq=False)
class _Run:
    """One start of a plugin on the runtime (a process or a container)."""

    exited: threading.Event = attrs.field(factory=threading.Event)
    exit: PluginExit | None = None
    ready: bool = False
    ready_at: float = 0.0


@attrs.define(eq=False)
class _Entry:
    """The manager's mutable state for one installed plugin (guarded by ``Manager._lock``)."""

    id: str
    name: str
    config: PluginConfig
    settings: Settings
    reference: str
    created: str
    plugin: Plugin
    # The flag being recorded; plugin.enabled follows it once the record is
    # saved, and only then do lookups see the change.
    enabled: bool = False
    timeout: float = 30.0
    # Why-it-stops flag: False means any exit from now on is intended (disable,
    # remove, shutdown, a failed start) and must not be treated as a crash.
    want_running: bool = False
    run: _Run | None = None
    running: bool = False
    refcount: int = 0
    restarts: int = 0
    restart_timer: threading.Timer | None = None
    restart_token: int = 0
    removed: bool = False
    # The config whose socket path was last found to fit (checked once per config).
    checked_config: PluginConfig | None = None
    op_lock: threading.Lock = attrs.field(factory=threading.Lock)
    # During an upgrade that hands the socket over: the manager's listening
    # socket, passed to starts and kept at the socket path by stops.
    handoff: socket.socket | None = None


_Hit = tuple[frozenset[str], int, "_Entry"]
"""What the lookup index holds per key: capabilities, state, entry."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_default_root = default_root
_default_run_root = default_run_root


class Manager:
    """Installs, enables, supervises and persists managed plugins; looks plugins up.

    Args:
        root: directory holding the state (default: ``/var/lib/pluginkit`` as
            root, else the platformdirs user data dir). One live manager per
            root: a second one raises :class:`~pluginkit.RootInUseError`.
        runtime: what runs the plugins (default:
            :class:`~pluginkit.runtime.DockerRuntime`).
        run_root: directory for the plugins' sockets, ``<run_root>/<id>/<socket>``
            (default: ``/run/pluginkit`` as root, else
            ``$XDG_RUNTIME_DIR/pluginkit`` or ``/tmp/pluginkit-<uid>``). Must be
            short: socket paths are limited to 107 bytes.
        live_restore: keep plugins running across manager restarts: shutdown
            leaves them running and the next manager re-attaches to them.
        legacy: the :class:`~pluginkit.LegacyRegistry` lookups fall back to
            (default: one with Docker's directories); ``None`` disables the
            fallback.
        on_event: called with a :class:`~pluginkit.PluginEvent` for every
            change (from the thread that made it; exceptions are logged).
        restart_policy: backoff for restarting crashed plugins (default:
            :class:`~pluginkit.RestartPolicy()`).
        install_limits: bounds on what one install may write (default:
            :class:`~pluginkit.InstallLimits()`).
        health_check: probe running plugins and restart those that stop
            answering (see :class:`~pluginkit.HealthCheck`); ``None`` (the
            default): no probes, ``Plugin.health`` stays ``None``.

    Raises:
        RootInUseError: another live manager holds ``root``.
    """

    stop_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when a plugin is stopped."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        runtime: Runtime | None = None,
        run_root: str | os.PathLike[str] | None = None,
        live_restore: bool = False,
        legacy: LegacyRegistry | None = _DEFAULT_LEGACY,
        on_event: Callable[[PluginEvent], None] | None = None,
        restart_policy: RestartPolicy | None = None,
        health_check: HealthCheck | None = None,
        install_limits: InstallLimits | None = None,
    ) -> None:
        self._root = Path(root if root is not None else _default_root()).absolute()
        self._run_root = Path(run_root if run_root is not None else _default_run_root()).absolute()
        # The shortest possible socket path: "<run_root>/<64-hex id>/x".
        shortest = len(os.fsencode(self._run_root)) + 1 + 64 + 2
        if shortest > SOCKET_PATH_MAX:
            raise ValueError(
                f"run_root {self._run_root} is too long: plugin sockets at "
                f"<run_root>/<64-hex id>/<socket> must fit in {SOCKET_PATH_MAX} bytes"
            )
        self._run_root_str = os.fspath(self._run_root)
        self.live_restore = live_restore
        self._legacy_arg = legacy
        self._legacy: LegacyRegistry | None = None
        self._legacy_lock = threading.Lock()
        self._on_event = on_event
        self.restart_policy = restart_policy if restart_policy is not None else RestartPolicy()
        self.health_check = health_check
        self._health = HealthMonitor(health_check, self._on_health) if health_check else None
        self._health_events: ThreadPoolExecutor | None = None
        self.install_limits = install_limits if install_limits is not None else InstallLimits()

        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._names: dict[str, str] = {}
        self._reserved: set[str] = set()
        self._handlers: dict[str, list[Callable[[str, Client], None]]] = {}
        self._index: LookupIndex[_Entry] = LookupIndex()
        self._snap: Mapping[str, _Hit] = self._index.hits  # read without the lock
        self._closing = False
        # Set once the first shutdown() has fully finished (root released).
        self._shut_down = threading.Event()
        self._shutdown_thread: int | None = None
        # How deeply the current thread is inside a call out of the manager
        # (runtime exit callback, on_event, handle callbacks): see shutdown().
        self._calling = threading.local()

        # A record holds its config re-indented with every field written out
        # (up to 9 times the config.json's size, measured) and the settings:
        # leave room for the largest config the install limits admit, so that
        # no record this manager saved is refused by the next.
        self._store = Store(
            self._root,
            max_record_bytes=max(MAX_RECORD_BYTES, 16 * self.install_limits.max_config_bytes),
        )
        self._store.open()
        try:
            ensure_private_dir(self._run_root)
            if runtime is None:
                from .runtime import DockerRuntime

                runtime = DockerRuntime()
            self._runtime: Runtime = runtime
            # The optional extensions of the runtime seam, checked once.
            self._preparer = runtime if isinstance(runtime, SupportsPrepare) else None
            with gc_paused():
                self._load()
            if isinstance(runtime, SupportsCleanup):
                self._cleanup_runtime(runtime)
        except BaseException:
            self._store.close()
            raise
        with gc_paused():
            self._restore_all()
            self._stop_leftovers()

    # -- properties ---------------------------------------------------------

    @property
    def root(self) -> Path:
        """The state directory, resolved."""
        return self._root

    @property
    def run_root(self) -> Path:
        """The socket directory, resolved."""
        return self._run_root

    @property
    def runtime(self) -> Runtime:
        """The runtime that runs the plugins."""
        return self._runtime

    @property
    def legacy(self) -> LegacyRegistry | None:
        """The legacy registry lookups fall back to, or ``None``."""
        if self._legacy_arg is None:
            return None
        if self._legacy is None:
            with self._legacy_lock:
                if self._legacy is None:
                    if isinstance(self._legacy_arg, _DefaultLegacy):
                        from ._legacy import LegacyRegistry

                        self._legacy = LegacyRegistry()
                    else:
                        self._legacy = self._legacy_arg
        return self._legacy

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Manager root={str(self._root)!r} plugins={len(self._entries)}>"

    # -- install ------------------------------------------------------------

    def create(self, name: str, context_dir: str | os.PathLike[str]) -> Plugin:
        """Create a plugin from a directory holding ``config.json`` and ``rootfs/``.

        Like ``docker plugin create``: no privileges are asked, the plugin is
        installed disabled, and its reference is its name.

        Args:
            name: ``name[:tag]`` in Docker's grammar (``:latest`` is added).
            context_dir: the plugin directory.

        Raises:
            InvalidReferenceError: ``name`` does not parse.
            InvalidConfigError: no ``config.json`` or ``rootfs/``, or a bad config.
            PluginExistsError: ``plugin NAME already exists``.
        """
        full = normalize_name(name)
        self._check_name_free(full)
        context = Path(context_dir)
        limits = self.install_limits
        config = read_context(context, limits)
        entry = self._add(
            full, config, reference=full, fill=lambda dst: copy_rootfs(context, dst, limits)
        )
        self._prepare(entry)
        self._emit(entry, "create")
        return entry.plugin

    def privileges(self, source: str | os.PathLike[str]) -> list[Privilege]:
        """Return the privileges a plugin needs, in Docker's order.

        Args:
            source: a plugin directory, a tar archive of one, the name or id
                of an installed plugin, or a registry reference (its manifest
                and config are read; no layer is downloaded). A path that
                exists wins, then an installed plugin, then the registry.
        """
        path = Path(source)
        if local_source(path):
            with self._unpacked(path) as context:
                return compute_privileges(read_context(context, self.install_limits))
        text = os.fspath(source)
        with self._lock:
            installed = self._find_locked(text)
        if installed is None:
            from .distribution import _ops  # imported on first use: it brings requests

            if _ops.is_reference(text):
                return _ops.privileges(text)
        entry = self._resolve(text)
        return compute_privileges(entry.config)

    def install(
        self,
        source: str | os.PathLike[str],
        *,
        name: str | None = None,
        grant: Grant = None,
        disabled: bool = True,
    ) -> Plugin:
        """Install a plugin from a directory, a tar archive of one, or a registry.

        A path that exists wins over a reference of the same spelling.

        Args:
            source: a directory with ``config.json`` and ``rootfs/``, a tar
                archive of one (possibly compressed; extracted safely: no
                absolute paths, no ``..``, no links out, no device files), or
                a registry reference (``vieux/sshfs``, ``host:5000/p:1``,
                ``host/p@sha256:…``; see :mod:`pluginkit.distribution`).
            name: the name to install under (default: the source's base name,
                or the reference's familiar name and tag).
            grant: ``True`` grants every privilege; a list must equal the
                required privileges (order-insensitive, every entry checked); a
                callable receives the required list and returns whether it
                accepts. ``None`` accepts only a plugin that needs none.
            disabled: leave the plugin disabled (the default); ``False``
                enables it once installed.

        Raises:
            PrivilegesNotGrantedError: ``incorrect privileges``, naming the
                missing ones.
            PluginExistsError: the name is taken.
            InvalidConfigError: the source does not exist, or holds a bad
                ``config.json`` or no ``rootfs/``, or links out of itself.
            InvalidArchiveError: the archive is truncated, corrupt or unsafe.
            InstallLimitError: it passes :attr:`install_limits`.
            RegistryError: (:mod:`pluginkit.distribution`) the registry
                could not provide a valid plugin.
            TypeError: ``grant`` is not one of the above, or a list entry is
                not a :class:`~pluginkit.Privilege`.
        """
        path = Path(source)
        if not local_source(path):
            from .distribution import _ops  # imported on first use: it brings requests

            if _ops.is_reference(os.fspath(source)):
                return _ops.install(
                    self, os.fspath(source), name=name, grant=grant, disabled=disabled
                )
        check_source(path)
        full = normalize_name(name) if name is not None else name_from_source(path)
        self._check_name_free(full)
        with self._unpacked(path) as context:
            limits = self.install_limits
            config = read_context(context, limits)
            check_grant(compute_privileges(config), grant)
            entry = self._add(
                full,
                config,
                reference=os.fspath(source),
                fill=lambda dst: copy_rootfs(context, dst, limits),
            )
        self._prepare(entry)
        self._emit(entry, "install")
        if not disabled:
            self.enable(entry.name)
        return entry.plugin

    def push(self, name: str, ref: str | None = None) -> str:
        """Push an installed plugin to a registry, as ``docker plugin push`` does.

        Args:
            name: the plugin's name or id.
            ref: where to push (default: the plugin's name, e.g.
                ``localhost:5000/team/p:1``).

        Returns:
            The digest of the pushed manifest.
        """
        from .distribution import _ops

        return _ops.push(self, name, ref)

    def upgrade(self, name: str, ref: str | None = None, *, grant: Grant = None) -> Plugin:
        """Upgrade a plugin from a registry in place: same id, settings carried over.

        Unlike Docker, an enabled plugin is upgraded too: the new version is
        fetched while the old one runs, then the old one is stopped, the
        versions swapped and the new one started; if it fails to start the
        old version is put back and started again (the error says so).

        Args:
            name: the plugin's name or id.
            ref: where to upgrade from (default: its ``PluginReference``).
            grant: as for :meth:`install`, checked against the new version.
        """
        from .distribution import _ops, _upgrade

        return _upgrade.upgrade(self, name, ref, grant=grant, progress=_ops._progress(None))

    def save(self, name: str, file: str | os.PathLike[str]) -> str:
        """Write a plugin to ``file`` as an OCI image layout tar (an offline bundle).

        The archive holds what :meth:`push` would upload, in Docker's plugin
        media types; ``skopeo copy oci-archive:FILE docker://…`` reads it.
        The file appears complete or not at all.

        Returns:
            The digest of the bundle's manifest.
        """
        from .distribution import _oci

        return _oci.save(self, name, file)

    def load(
        self, file: str | os.PathLike[str], *, name: str | None = None, grant: Grant = None
    ) -> Plugin:
        """Install the plugin an OCI layout tar (from :meth:`save`) holds; it starts disabled.

        Every blob is checked against its digest; privileges are asked as by
        :meth:`install`. ``name`` defaults to the name recorded in the bundle.
        """
        from .distribution import _oci, _ops

        return _oci.load(self, file, name=name, grant=grant, progress=_ops._progress(None))

    @contextlib.contextmanager
    def _unpacked(self, path: Path) -> Iterator[Path]:
        """Yield a plugin directory for ``path`` (a directory, or an archive extracted)."""
        if not path.is_dir():
            self._check_open()  # extracting writes under the root
        with open_source(path, self._store, self.install_limits) as context:
            yield context

    def _add(self, name: str, config: PluginConfig, *, reference: str, fill: Filler) -> _Entry:
        """Stage, commit and publish a new plugin: the one way a plugin gets installed.

        ``name`` is reserved under the lock (:class:`PluginExistsError` if
        taken), ``fill(staging)`` writes ``staging/rootfs`` in a fresh directory
        under the root's ``tmp/``, the record is written and the directory
        renamed into ``plugins/<id>`` in one step, then the entry is published
        under the lock. On any failure nothing is left behind. No lock is
        held while ``fill`` runs. Callers validate ``config`` and the grant
        first (see :mod:`pluginkit._install`).
        """
        with self._lock:
            self._check_name_free_locked(name)
            self._reserved.add(name)
        try:
            plugin_id = self._new_id()
            self._check_socket_path(plugin_id, config)
            settings = initial_settings(config)
            staging = self._store.new_staging()
            try:
                fill(staging)
                entry = self._new_entry(plugin_id, name, config, settings, reference, _now_iso())
                self._store.commit(staging, plugin_id, self._record(entry))
            except BaseException:
                self._store.discard_staging(staging)
                raise
            with self._lock:
                self._entries[plugin_id] = entry
                self._names[name] = plugin_id
                self._publish_locked(entry)
            return entry
        finally:
            with self._lock:
                self._reserved.discard(name)

    def _check_name_free(self, name: str) -> None:
        """Refuse a taken name early, as Docker does before reading anything."""
        with self._lock:
            self._check_name_free_locked(name)

    def _check_name_free_locked(self, name: str) -> None:
        self._check_open_locked()
        if name in self._names or name in self._reserved:
            raise PluginExistsError(name)

    def _new_id(self) -> str:
        while True:
            plugin_id = secrets.token_hex(32)
            if plugin_id not in self._entries and not self._store.exists(plugin_id):
                return plugin_id

    def _new_entry(
        self,
        plugin_id: str,
        name: str,
        config: PluginConfig,
        settings: Settings,
        reference: str,
        created: str,
    ) -> _Entry:
        # Strings, not Paths: this runs once per plugin at start-up.
        socket_path = f"{self._run_root_str}/{plugin_id}/{config.interface.socket}"
        plugin = Plugin(
            name=name,
            addr=f"unix://{socket_path}",
            capabilities=capabilities(config),
            id=plugin_id,
            is_legacy=False,
            enabled=False,
            config=config,
            settings=settings,
            plugin_reference=reference,
        )
        plugin._stable_path = stable_socket_path(self._run_root_str, name)
        entry = _Entry(
            id=plugin_id,
            name=name,
            config=config,
            settings=settings,
            reference=reference,
            created=created,
            plugin=plugin,
        )
        plugin._client_factory = lambda: self._make_client(entry)
        return entry

    def _make_client(self, entry: _Entry) -> Client:
        from ._client import Client

        return Client(entry.plugin.addr, timeout=entry.timeout)

    # -- enable / disable ---------------------------------------------------

    def enable(self, name: str, *, timeout: float = 30.0) -> None:
        """Start a plugin and wait until its socket accepts connections.

        The socket is polled (from 1 ms, backing off to 50 ms); there is no
        fixed sleep. A managed plugin need not answer ``Plugin.Activate``.
        Handlers registered with :meth:`handle` run afterwards.

        Args:
            name: name, ``name:tag``, id or unique id prefix.
            timeout: seconds to wait for the socket; also the timeout of the
                plugin's client.

        Raises:
            PluginEnabledError: ``plugin already enabled: plugin NAME is enabled``.
            RuntimeStartError: the plugin exited before it was ready (with its
                exit code and last stderr lines) or could not be started.
            PluginTimeoutError: the socket did not accept connections in time.
            TypeError, ValueError: ``timeout`` is not a number > 0.

        On failure the plugin stays installed and disabled, settings intact.
        """
        given: object = timeout  # what callers really pass, whatever the annotation says
        if isinstance(given, bool) or not isinstance(given, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {given!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        entry = self._resolve(name)
        with entry.op_lock:
            with self._lock:
                self._check_live_locked(entry, name)
                if entry.enabled:
                    raise PluginEnabledError(
                        entry.name, f"plugin already enabled: plugin {entry.name} is enabled"
                    )
                entry.timeout = timeout
                entry.want_running = True
                entry.restarts = 0
            try:
                self._start(entry, timeout)
                entry.enabled = True
                try:
                    self._save(entry)
                except BaseException:
                    entry.enabled = False
                    raise
            except BaseException:
                with self._lock:
                    # Also cancels a restart that a crash after the plugin was
                    # ready may have scheduled meanwhile.
                    self._stand_down_locked(entry)
                try:
                    self._stop(entry)
                except Exception:
                    log.exception("cannot stop plugin %s after a failed enable", entry.name)
                raise
            with self._lock:
                entry.plugin.enabled = True
                self._publish_locked(entry)
        self._emit(entry, "enable")
        self._start_probing(entry)
        self._run_handlers(entry)

    def disable(self, name: str, *, force: bool = False) -> None:
        """Stop a plugin and mark it disabled.

        Args:
            name: name, ``name:tag``, id or unique id prefix.
            force: disable even when the plugin is in use (the refcount is kept).

        Raises:
            PluginDisabledError: ``plugin is already disabled: plugin NAME found but
                disabled``.
            PluginInUseError: ``plugin NAME is in use`` (without ``force``).
        """
        entry = self._resolve(name)
        with self._lock:
            self._check_disable_locked(entry, name, force)
            # Say why it stops before anything else, so that a pending restart
            # or a start in progress gives up at once (crash loops included).
            self._stand_down_locked(entry)
        with entry.op_lock:
            with self._lock:
                self._check_disable_locked(entry, name, force)
                self._stand_down_locked(entry)
            self._stop(entry)
            entry.enabled = False
            try:
                self._save(entry)
            finally:
                with self._lock:
                    entry.plugin.enabled = False
                    self._publish_locked(entry)
        self._emit(entry, "disable")

    def _check_disable_locked(self, entry: _Entry, name: str, force: bool) -> None:
        self._check_live_locked(entry, name)
        if not entry.enabled:
            raise PluginDisabledError(entry.name)
        if entry.refcount > 0 and not force:
            raise PluginInUseError(entry.name)

    def _stand_down_locked(self, entry: _Entry) -> None:
        entry.want_running = False
        entry.restart_token += 1
        if entry.restart_timer is not None:
            entry.restart_timer.cancel()
            entry.restart_timer = None
        if entry.running:
            self._publish_locked(entry)  # a plugin about to stop is not looked up any more

    # -- remove / set -------------------------------------------------------

    def remove(self, name: str, *, force: bool = False) -> None:
        """Delete a plugin and its files.

        Args:
            name: name, ``name:tag``, id or unique id prefix.
            force: remove even when enabled (it is stopped) or in use.

        Raises:
            PluginInUseError: ``plugin NAME is in use`` (without ``force``).
            PluginEnabledError: ``plugin NAME is enabled`` (without ``force``).
        """
        entry = self._resolve(name)
        with self._lock:
            self._check_remove_locked(entry, name, force)
            if force:
                # Interrupt a start in progress or a crash loop at once.
                self._stand_down_locked(entry)
        with entry.op_lock:
            with self._lock:
                self._check_remove_locked(entry, name, force)
                self._stand_down_locked(entry)
            try:
                self._stop(entry)
            except PluginError:
                if not force:
                    raise
                log.exception("cannot stop plugin %s while force-removing it", entry.name)
            try:
                self._runtime.discard(entry.id)
            except Exception:
                log.exception("runtime could not discard plugin %s", entry.name)
            self._store.remove(entry.id)
            with self._lock:
                entry.removed = True
                entry.enabled = False
                entry.plugin.enabled = False
                self._entries.pop(entry.id, None)
                if self._names.get(entry.name) == entry.id:
                    del self._names[entry.name]
                self._publish_locked(entry)
            shutil.rmtree(self._socket_dir(entry.id), ignore_errors=True)
            entry.plugin._drop_client()
        self._emit(entry, "remove")

    def _check_remove_locked(self, entry: _Entry, name: str, force: bool) -> None:
        self._check_live_locked(entry, name)
        if force:
            return
        if entry.refcount > 0:
            raise PluginInUseError(entry.name)
        if entry.enabled:
            raise PluginEnabledError(entry.name)

    def set(self, name: str, args: Sequence[str]) -> None:
        """Change settings, with ``docker plugin set``'s grammar, rules and messages.

        Each argument is ``<name>[.<field>][=<value>]``: an env var
        (``DEBUG=1``), a mount source (``data.source=/x``), a device path
        (``dev.path=/dev/y``) or the args (``args=a b``). All or nothing: a bad
        argument leaves every setting unchanged.

        Raises:
            PluginEnabledError: ``cannot set on an active plugin, disable plugin
                before setting``.
            InvalidConfigError: a bad argument (Docker's texts).
        """
        if isinstance(args, (str, bytes)):
            raise TypeError(f"args must be a list of strings such as ['KEY=VALUE'], not {args!r}")
        arguments = list(args)
        entry = self._resolve(name)
        with entry.op_lock:
            with self._lock:
                self._check_live_locked(entry, name)
                if entry.enabled:
                    raise PluginEnabledError(
                        entry.name,
                        "cannot set on an active plugin, disable plugin before setting",
                    )
                old = entry.config, entry.settings
            config, settings = apply_set(old[0], old[1], arguments)
            entry.config, entry.settings = config, settings
            try:
                self._save(entry)
            except BaseException:
                entry.config, entry.settings = old
                raise
            with self._lock:
                entry.plugin.config = config
                entry.plugin.settings = settings
                self._publish_locked(entry)
            self._prepare_op_locked(entry)
        self._emit(entry, "set")

    # -- queries ------------------------------------------------------------

    def get(self, name: str) -> Plugin:
        """Return the plugin named ``name``: name, ``name:tag``, full id or unique id prefix.

        Raises:
            ErrNotFound: ``plugin "NAME" not found``.
            InvalidReferenceError: ``multiple plugins found for "PREFIX"``.
        """
        return self._resolve(name).plugin

    def list(self, *, capability: str | None = None, enabled: bool | None = None) -> list[Plugin]:
        """Installed plugins, sorted by name.

        Args:
            capability: keep plugins that have it (any of their types; Docker
                wrongly required all of them to match).
            enabled: keep only enabled (``True``) or disabled (``False``) ones.
        """
        with self._lock:
            self._check_open_locked()
            entries = list(self._entries.values())
        cap = capability.lower() if capability is not None else None
        found = [
            e.plugin
            for e in entries
            if (enabled is None or e.enabled == enabled)
            and (cap is None or cap in e.plugin.capabilities)
        ]
        return sorted(found, key=lambda p: p.name)

    def inspect(self, name: str) -> dict[str, Any]:
        """Docker's ``docker plugin inspect`` JSON for a plugin.

        A plugin installed from a registry also shows ``ManifestDigest``.
        """
        plugin = self.get(name)
        result = plugin.to_dict()
        if plugin.id is not None:
            from .distribution import _ops

            result.update(_ops.distribution_info(self, plugin.id))
        return result

    # -- lookups ------------------------------------------------------------

    def lookup_with_capability(self, name: str, capability: str) -> Plugin:
        """Find a running plugin by name that has ``capability``; Docker's rules.

        A managed plugin wins; one that is disabled raises :class:`ErrDisabled`
        with no legacy fallback; only when no managed plugin has that name is
        the legacy registry asked (when there is one).

        Raises:
            ErrNotFound: no plugin of that name.
            ErrDisabled: the managed plugin is disabled (or not running right now).
            ErrInadequateCapability: the plugin lacks ``capability``.
        """
        hit = self._snap.get(name)
        if hit is None:
            with self._lock:
                hit = self._slow_hit_locked(name)
            if hit is None:
                return self._legacy_get(name, capability)
        return _usable(hit, name, capability).plugin

    def find_with_capability(self, capability: str) -> builtins.list[Plugin]:
        """Every running managed plugin with ``capability``, then the legacy ones."""
        self._check_open_locked()  # reading one flag needs no lock
        found = list(self._index.running(capability.lower()))
        legacy = self.legacy
        if legacy is not None:
            found.extend(legacy.get_all(capability))
        return found

    @contextlib.contextmanager
    def use(self, name: str, capability: str) -> Iterator[Plugin]:
        """Look a plugin up and hold a reference on it for the ``with`` block.

        A plugin in use refuses ``disable()``/``remove()`` without ``force``.
        A failed lookup takes no reference (Docker leaked one, moby#32609).
        Legacy plugins are not counted.
        """
        with self._lock:
            hit = self._snap.get(name) or self._slow_hit_locked(name)
            entry = None if hit is None else _usable(hit, name, capability)
            if entry is not None:
                entry.refcount += 1
                entry.plugin.refcount = entry.refcount
        if entry is None:
            yield self._legacy_get(name, capability)
            return
        try:
            yield entry.plugin
        finally:
            with self._lock:
                entry.refcount -= 1
                entry.plugin.refcount = entry.refcount

    def handle(self, capability: str, callback: Callable[[str, Client], None]) -> None:
        """Call ``callback(name, client)`` for every plugin with ``capability``.

        It runs after each enable (and restart) of a managed plugin that has
        it, right away for those already running, and is passed on to the
        legacy registry. It never runs under the manager's lock.
        """
        cap = capability.lower()
        with self._lock:
            self._check_open_locked()
            self._handlers.setdefault(cap, []).append(callback)
            running = list(self._index.running(cap))
        legacy = self.legacy
        if legacy is not None:
            legacy.handle(capability, callback)
        for plugin in running:
            self._call_handler(callback, plugin)

    def _slow_hit_locked(self, name: str) -> _Hit | None:
        """Resolve what the snapshot has no key for: other spellings, id prefixes.

        A shut-down manager's snapshot is empty, so every lookup ends up here
        and is refused instead of falling back to the legacy registry.
        """
        entry = self._find_locked(name)
        return None if entry is None else self._snap[entry.id]

    def _legacy_get(self, name: str, capability: str) -> Plugin:
        legacy = self.legacy
        if legacy is None:
            raise ErrNotFound(name)
        return legacy.get(name, capability)

    def _resolve(self, ref: str) -> _Entry:
        """Return the entry ``ref`` names, else raise :class:`ErrNotFound`."""
        with self._lock:
            entry = self._find_locked(ref)
        if entry is None:
            raise ErrNotFound(ref)
        return entry

    def _find_locked(self, ref: str) -> _Entry | None:
        """Docker's ``resolvePluginID``: exact id, name (``:latest`` added), unique id prefix.

        Returns ``None`` when nothing matches. A 64-hex string is only ever an
        id, and a prefix only ever matches ids.

        Raises:
            InvalidReferenceError: ``multiple plugins found for "PREFIX"``.
        """
        self._check_open_locked()
        # A name as stored, its short form or an id: the lookup index has it
        # (kept in step with _entries under this lock). Only other spellings
        # are parsed: the parser's cache holds 4,096 names, and a sweep over
        # more would parse each one every time, 4 to 5 times the cost.
        hit = self._snap.get(ref)
        if hit is not None:
            return hit[2]
        if is_plugin_id(ref):
            return self._entries.get(ref)
        try:
            full = normalize_name(ref)
        except InvalidReferenceError:
            return None
        if full in self._names:
            return self._entries[self._names[full]]
        if ref and all(c in "0123456789abcdef" for c in ref):
            matches = [e for i, e in self._entries.items() if i.startswith(ref)]
            if len(matches) > 1:
                raise InvalidReferenceError(f'multiple plugins found for "{ref}"')
            if matches:
                return matches[0]
        return None

    # -- starting and stopping ---------------------------------------------

    def _spec(self, entry: _Entry) -> RuntimeSpec:
        config, settings = entry.config, entry.settings
        mounts = []
        for mount in config.mounts:
            if mount.source is None:
                raise InvalidConfigError(
                    f"mount source is not specified (plugin {entry.name}, mount {mount.name!r})"
                )
            mounts.append(
                RuntimeMount(
                    source=mount.source,
                    destination=mount.destination,
                    type=mount.type or "bind",
                    options=tuple(mount.options),
                )
            )
        devices = tuple(RuntimeDevice(path=d.path) for d in settings.devices if d.path)
        propagated = config.propagated_mount
        user = (config.user.uid, config.user.gid) if config.user is not None else None
        return RuntimeSpec(
            id=entry.id,
            name=entry.name,
            rootfs=self._store.rootfs(entry.id),
            entrypoint=tuple(config.entrypoint),
            socket_dir=self._socket_dir(entry.id),
            socket=config.interface.socket,
            state_dir=self._store.runtime_dir(entry.id),
            args=tuple(settings.args),
            env=tuple(settings.env),
            workdir=config.workdir or "/",
            user=user,
            mounts=tuple(mounts),
            devices=devices,
            capabilities=tuple(config.linux.capabilities),
            allow_all_devices=config.linux.allow_all_devices,
            network=config.network.type,
            ipc_host=config.ipc_host,
            pid_host=config.pid_host,
            propagated_mount=propagated,
            propagated_mount_source=(
                self._store.plugin_dir(entry.id) / "propagated-mount" if propagated else None
            ),
            listen_fd=entry.handoff.fileno() if entry.handoff is not None else None,
        )

    def _start(
        self,
        entry: _Entry,
        timeout: float,
        spec: RuntimeSpec | None = None,
        run: _Run | None = None,
    ) -> None:
        """Start the plugin and wait until it is ready; on failure nothing is left running.

        ``run``: a fresh run to use (one the runtime has never seen).
        """
        spec = spec if spec is not None else self._spec(entry)
        if entry.checked_config is not entry.config:
            self._check_socket_path(entry.id, entry.config)
            entry.checked_config = entry.config
        socket_path = f"{spec.socket_dir}/{spec.socket}"
        fresh = make_private_dir(os.fspath(spec.socket_dir))
        if spec.listen_fd is None and not fresh:  # else the manager's own, or nothing there
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)  # a stale socket must not look ready
        if spec.propagated_mount_source is not None:
            ensure_private_dir(spec.propagated_mount_source)
        run = run if run is not None else _Run()
        with self._lock:
            if not entry.want_running or self._closing:
                raise PluginError(f"plugin {entry.name} was stopped while it was starting")
            entry.run = run
        try:
            self._runtime.start(spec, lambda info: self._on_exit(entry, run, info))
        except BaseException as exc:
            with self._lock:
                if entry.run is run:
                    entry.run = None
            if isinstance(exc, PluginError):
                raise
            if isinstance(exc, Exception):
                raise RuntimeStartError(f"cannot start plugin {entry.name}: {exc}") from exc
            raise
        self._wait_ready(entry, run, socket_path, timeout)

    def _wait_ready(self, entry: _Entry, run: _Run, path: str, timeout: float) -> None:
        """Poll the socket until it accepts a connection; fail fast when the plugin dies."""
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            if run.exited.is_set():
                self._abandon(entry, run)
                raise _early_exit(entry.name, run.exit)
            if not entry.want_running or self._closing:
                self._abandon(entry, run)
                raise PluginError(f"plugin {entry.name} was stopped while it was starting")
            if _accepts(path):
                with self._lock:
                    ready = entry.run is run and not run.exited.is_set()
                    if ready:
                        run.ready = True
                        run.ready_at = time.monotonic()
                        entry.running = True
                        self._publish_locked(entry)
                        if self._health is not None:
                            entry.plugin.health = STARTING
                if ready:
                    self._link_stable(entry, path)
                    return
                continue  # it died right after listening: report that
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abandon(entry, run)
                raise PluginTimeoutError(
                    f"plugin {entry.name} did not listen on {path} within {timeout:g} s"
                )
            run.exited.wait(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    def _link_stable(self, entry: _Entry, socket_path: str) -> None:
        """Point the plugin's stable (name-derived) socket path at its real socket."""
        stable = entry.plugin._stable_path
        if stable is None:
            return
        try:
            link_stable(stable, socket_path)
        except OSError as exc:
            # The plugin works without it; only its stable address does not.
            log.warning(
                "cannot link the stable address %s of plugin %s: %s", stable, entry.name, exc
            )

    def _abandon(self, entry: _Entry, run: _Run) -> None:
        """Stop a run that never became ready (its exit is not a crash: ``ready`` is False)."""
        try:
            self._runtime.stop(entry.id, grace=self.stop_grace)
        except Exception:
            log.exception("cannot stop plugin %s", entry.name)
        with self._lock:
            if entry.run is run:
                entry.run = None

    def _stop(self, entry: _Entry) -> None:
        """Stop the plugin if it runs; ``want_running`` must already be False."""
        with self._lock:
            run = entry.run
        if run is not None or self._runtime.is_running(entry.id):
            try:
                self._runtime.stop(entry.id, grace=self.stop_grace)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"cannot stop plugin {entry.name}: {exc}") from exc
        with self._lock:
            if entry.run is run:
                entry.run = None
            self._unwatch_health_locked(entry, run)
            if entry.running:
                entry.running = False
                self._publish_locked(entry)
        if entry.handoff is not None:
            # The socket (and the stable link to it) stays for the next version
            # to serve on, and the client too: callers holding it see no failure.
            return
        socket_dir = self._socket_dir(entry.id)
        socket_path = socket_dir / entry.config.interface.socket
        if entry.plugin._stable_path is not None:
            unlink_stable(entry.plugin._stable_path, str(socket_path))
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        # Left empty it would outlive the plugin in run_root (often a shared
        # /run); _start makes it again. Not empty (the plugin put more there):
        # keep it.
        with contextlib.suppress(OSError):
            socket_dir.rmdir()
        entry.plugin._drop_client()

    def _on_exit(self, entry: _Entry, run: _Run, info: PluginExit) -> None:
        """Runtime callback, on the runtime's exit thread (which its ``close()`` may join)."""
        with self._calling_out():
            self._handle_exit(entry, run, info)

    def _handle_exit(self, entry: _Entry, run: _Run, info: PluginExit) -> None:
        """Decide, by the why-it-stops flag, whether this exit was a crash."""
        run.exit = info
        run.exited.set()
        with self._lock:
            if entry.run is not run:
                return  # an old run, already dealt with
            entry.run = None
            self._unwatch_health_locked(entry, run)
            if entry.running:
                entry.running = False
                self._publish_locked(entry)
            if not run.ready:
                return  # the starter is waiting on run.exited and reports it
            if not entry.want_running or self._closing:
                return  # stopped on purpose: no restart, no error
            if time.monotonic() - run.ready_at >= self.restart_policy.reset_after:
                entry.restarts = 0
            delay = self._schedule_restart_locked(entry, start=False)
            timer = entry.restart_timer
        tail = f"; stderr: {info.stderr_tail.strip()}" if info.stderr_tail.strip() else ""
        if delay is None:
            log.error(
                "plugin %s exited with code %s%s; not restarting it after %d restarts",
                entry.name,
                info.exit_code,
                tail,
                entry.restarts,
            )
        else:
            log.warning(
                "plugin %s exited with code %s%s; restarting it in %.3g s",
                entry.name,
                info.exit_code,
                tail,
                delay,
            )
        self._emit(entry, "exit")
        if timer is not None:
            # Started only now so that "exit" is always reported before
            # "restart"; a cancel() in between makes the timer do nothing.
            timer.start()

    def _schedule_restart_locked(self, entry: _Entry, *, start: bool = True) -> float | None:
        """Arm the restart timer of a crashed plugin; ``None`` when the policy gives up."""
        policy = self.restart_policy
        if policy.gives_up(entry.restarts):
            return None
        delay = policy.delay(entry.restarts)
        entry.restarts += 1
        entry.restart_token += 1
        timer = threading.Timer(delay, self._restart, (entry, entry.restart_token))
        timer.daemon = True
        timer.name = f"pluginkit-restart-{entry.id[:12]}"
        entry.restart_timer = timer
        if start:
            timer.start()
        return delay

    def _restart(self, entry: _Entry, token: int) -> None:
        """Timer thread: start a crashed plugin again (unless stood down meanwhile)."""
        with entry.op_lock:
            with self._lock:
                if entry.restart_token != token or not entry.want_running or self._closing:
                    return
                entry.restart_timer = None
            try:
                self._start(entry, entry.timeout)
            except Exception as exc:  # host errors too: this timer thread must not die
                with self._lock:
                    if entry.restart_token != token or not entry.want_running or self._closing:
                        return
                    delay = self._schedule_restart_locked(entry)
                if delay is None:
                    log.error("plugin %s could not be restarted, giving up: %s", entry.name, exc)
                else:
                    log.warning(
                        "plugin %s could not be restarted (%s); next try in %.3g s",
                        entry.name,
                        exc,
                        delay,
                    )
                return
        self._emit(entry, "restart")
        self._start_probing(entry)
        self._run_handlers(entry)

    def _prepare(self, entry: _Entry) -> None:
        """Let a runtime that can (:class:`SupportsPrepare`) get a new plugin ready to start."""
        if self._preparer is None:
            return
        with entry.op_lock:
            self._prepare_op_locked(entry)

    def _prepare_op_locked(self, entry: _Entry) -> None:
        """Prepare a disabled plugin; the caller holds ``entry.op_lock``.

        Only a disabled plugin is prepared (an enable takes ``op_lock`` too,
        so it cannot start meanwhile): preparing may replace a stopped
        container, never a running one. Failures are logged: the enable
        does the same work and reports them.
        """
        if self._preparer is None:
            return
        with self._lock:
            if entry.removed or entry.enabled or self._closing:
                return
        try:
            self._preparer.prepare(self._spec(entry))
        except Exception as exc:
            log.warning(
                "cannot prepare plugin %s yet (enabling it will retry): %s", entry.name, exc
            )

    # -- load and restore ---------------------------------------------------

    def _cleanup_runtime(self, runtime: SupportsCleanup) -> None:
        """Let the runtime drop leftovers of plugins this root no longer has.

        Every plugin directory counts, readable or not: a plugin skipped for
        a bad record is not a removed plugin.
        """
        try:
            runtime.cleanup(set(self._store.plugin_ids()), root=self._root)
        except Exception as exc:
            log.warning("runtime clean-up of removed plugins failed: %s", exc)

    def _load(self) -> None:
        for plugin_id, record in self._store.load_all():
            try:
                entry = self._entry_from_record(plugin_id, record)
            except (
                InvalidConfigError,
                InvalidReferenceError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                log.warning("error loading plugin %s, skipping: %s", plugin_id, exc)
                continue
            if entry.name in self._names:
                log.warning(
                    "plugin %s has the same name %s as plugin %s, skipping",
                    plugin_id,
                    entry.name,
                    self._names[entry.name],
                )
                continue
            self._entries[plugin_id] = entry
            self._names[entry.name] = plugin_id
        with self._lock:
            self._publish_locked()

    def _entry_from_record(self, plugin_id: str, record: dict[str, Any]) -> _Entry:
        source = os.path.join(self._store.plugins_str, plugin_id, "plugin.json")
        if record.get("Id") != plugin_id:
            raise ValueError(f"{source}: Id {record.get('Id')!r} does not match the directory")
        name = normalize_name(_record_field(record, "Name", str, None, "a string", source))
        config = parse_config(record["Config"], source=source)
        settings = parse_settings(record["Settings"], source=source)
        entry = self._new_entry(
            plugin_id,
            name,
            config,
            settings,
            _record_field(record, "PluginReference", str, name, "a string", source),
            _record_field(record, "Created", str, "", "a string", source),
        )
        entry.enabled = _record_field(record, "Enabled", bool, False, "true or false", source)
        entry.plugin.enabled = entry.enabled
        timeout = _record_field(record, "EnableTimeout", float, 30.0, "a number > 0", source)
        if not timeout > 0:
            raise ValueError(
                f"{source}: EnableTimeout must be a number > 0, got {record['EnableTimeout']!r}"
            )
        entry.timeout = timeout
        return entry

    def _restore_all(self) -> None:
        enabled = [e for e in self._entries.values() if e.enabled]
        run_each(self._restore, enabled, name="pluginkit-restore")

    def _restore(self, entry: _Entry) -> None:
        """Bring an enabled plugin back after a manager restart (Docker's ``reload``)."""
        with entry.op_lock:
            with self._lock:
                entry.want_running = True
            try:
                spec = self._spec(entry)
                run = _Run()
                with self._lock:
                    entry.run = run
                try:
                    alive = self._runtime.restore(spec, lambda i: self._on_exit(entry, run, i))
                except Exception:
                    log.exception("cannot restore plugin %s", entry.name)
                    alive = False
                if alive and self.live_restore:
                    self._wait_ready(entry, run, os.fspath(spec.socket_path), entry.timeout)
                    self._start_probing(entry)
                    return
                if alive:
                    # Without live restore a survivor of an unclean stop is
                    # stopped and started fresh (moby PR #37234).
                    log.info("stopping plugin %s left running by a previous manager", entry.name)
                    self._abandon(entry, run)
                with self._lock:
                    if entry.run is run:
                        entry.run = None
                # Nothing restored, the run is unused: the start takes it.
                self._start(entry, entry.timeout, spec, None if alive else run)
                self._start_probing(entry)
            except InvalidConfigError as exc:
                # A config problem does not go away by retrying.
                log.error("cannot start plugin %s: %s", entry.name, exc)
            except Exception as exc:
                with self._lock:
                    if not entry.want_running or self._closing:
                        return
                    delay = self._schedule_restart_locked(entry)
                if delay is None:
                    log.error("cannot start plugin %s: %s", entry.name, exc)
                else:
                    log.error(
                        "cannot start plugin %s: %s; retrying in %.3g s", entry.name, exc, delay
                    )

    def _stop_leftovers(self) -> None:
        """Stop what a killed manager left running of plugins recorded as disabled.

        A manager killed inside :meth:`enable` (plugin started, record still
        disabled) or :meth:`disable` leaves a plugin running that the record
        does not own. The runtime's ``restore`` proves the identity (as for
        live restore); whatever it re-attaches to is stopped at once.
        """
        disabled = [e for e in self._entries.values() if not e.enabled]
        run_each(self._stop_leftover, disabled, name="pluginkit-leftovers")

    def _stop_leftover(self, entry: _Entry) -> None:
        with entry.op_lock:
            try:
                if not self._runtime.restore(self._spec(entry), lambda info: None):
                    return
                log.warning(
                    "stopping disabled plugin %s left running by a killed manager", entry.name
                )
                self._runtime.stop(entry.id, grace=self.stop_grace)
            except Exception as exc:
                log.warning("cannot stop what is left of disabled plugin %s: %s", entry.name, exc)

    # -- health checks ------------------------------------------------------

    def _start_probing(self, entry: _Entry) -> None:
        """Probe the plugin's current run, once its enable/restart has been reported."""
        if self._health is None:
            return
        with self._lock:
            run = entry.run
            if run is None or not run.ready or run.exited.is_set() or self._closing:
                return
            path = self._socket_dir(entry.id) / entry.config.interface.socket
            self._health.watch((entry, run), os.fspath(path))

    def _unwatch_health_locked(self, entry: _Entry, run: _Run | None) -> None:
        """Stop probing a run that stops or exited; a plugin not running has no health."""
        if self._health is None:
            return
        if run is not None:
            self._health.unwatch((entry, run))
        entry.plugin.health = None

    def _on_health(self, key: Hashable, status: str, failing: int) -> None:
        """Health monitor thread: a probed run changed status (must return at once)."""
        entry, run = cast("tuple[_Entry, _Run]", key)
        with self._lock:
            if entry.run is not run or not entry.want_running or self._closing:
                return
            entry.plugin.health = status
            if self._health_events is None:
                self._health_events = ThreadPoolExecutor(1, "pluginkit-health-events")
            events = self._health_events
        with contextlib.suppress(RuntimeError):  # shut down meanwhile
            events.submit(self._health_changed, entry, run, status, failing)

    def _health_changed(self, entry: _Entry, run: _Run, status: str, failing: int) -> None:
        """Report a health change in order; restart an unhealthy plugin (in a thread of its own)."""
        self._emit(entry, f"health_status: {status}")
        if status == UNHEALTHY:
            log.warning(
                "plugin %s is unhealthy (%d probes in a row failed): restarting it",
                entry.name,
                failing,
            )
            threading.Thread(
                target=self._stop_unhealthy,
                args=(entry, run),
                name=f"pluginkit-unhealthy-{entry.id[:12]}",
                daemon=True,
            ).start()

    def _stop_unhealthy(self, entry: _Entry, run: _Run) -> None:
        """Stop an unhealthy run: its exit is a crash, so the restart policy restarts it."""
        with entry.op_lock:
            with self._lock:
                if entry.run is not run or run.exited.is_set() or not entry.want_running:
                    return
                if self._closing:
                    return
            try:
                self._runtime.stop(entry.id, grace=self.stop_grace)
            except Exception:
                log.exception("cannot stop unhealthy plugin %s", entry.name)

    # -- shutdown -----------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every plugin (or leave them running with ``live_restore``) and release the root.

        Plugins stopped here keep their enabled flag and are started again by
        the next manager on this root. Idempotent. From the moment it starts,
        every other method (lookups included, legacy fallback too) raises
        :class:`~pluginkit.PluginError` ``the plugin manager is shut down``.

        A call made while another thread's shutdown is in progress waits for
        it to finish, so that when it returns the plugins are stopped and the
        root is released - except when made from inside a callback of this
        manager (``on_event``, a :meth:`handle` callback, or the runtime's
        exit callback) or from the shutdown itself: the first shutdown may be
        waiting for that very thread (a runtime's ``close()`` joins its exit
        thread), so such a call returns at once and the shutdown completes
        after the callback returns.
        """
        with self._lock:
            if self._closing:
                first = False
            else:
                first = True
                self._closing = True
                self._shutdown_thread = threading.get_ident()
        if not first:
            calling_out = getattr(self._calling, "depth", 0) > 0
            if not calling_out and self._shutdown_thread != threading.get_ident():
                self._shut_down.wait()
            return
        try:
            self._shut_down_now()
        finally:
            self._shut_down.set()

    def _shut_down_now(self) -> None:
        """Do the work of the first :meth:`shutdown`; ``_closing`` is already set."""
        if self._health is not None:
            self._health.close()
        with self._lock:
            entries = list(self._entries.values())
            to_stop = []
            self._publish_locked()
            for entry in entries:
                self._stand_down_locked(entry)
                if self.live_restore and entry.enabled:
                    continue  # left running for the next manager
                if entry.run is not None or entry.running:
                    to_stop.append(entry)

        def stop(entry: _Entry) -> None:
            with entry.op_lock:
                try:
                    self._stop(entry)
                except Exception:
                    log.exception("cannot stop plugin %s", entry.name)

        run_each(stop, to_stop, name="pluginkit-shutdown")
        try:
            self._runtime.close()
        except Exception:
            log.exception("runtime close failed")
        for entry in entries:
            entry.plugin._drop_client()
        if self._health_events is not None:
            self._health_events.shutdown(wait=False)
        self._store.close()

    # -- helpers ------------------------------------------------------------

    def _socket_dir(self, plugin_id: str) -> Path:
        return self._run_root.joinpath(check_plugin_id(plugin_id))

    def _check_socket_path(self, plugin_id: str, config: PluginConfig) -> None:
        sock = config.interface.socket
        if not sock or "/" in sock or sock in (".", ".."):
            raise InvalidConfigError(
                f"interface.socket must be a plain file name, got {sock!r}",
                field="interface.socket",
            )
        path = f"{self._run_root_str}/{check_plugin_id(plugin_id)}/{sock}"
        size = len(os.fsencode(path))
        if size > SOCKET_PATH_MAX:
            raise InvalidConfigError(
                f"socket path {path} is {size} bytes, longer than the {SOCKET_PATH_MAX} "
                "bytes unix sockets allow: use a shorter run_root or socket name",
                field="interface.socket",
            )

    def _record(self, entry: _Entry) -> dict[str, Any]:
        return {
            "Version": _RECORD_VERSION,
            "Id": entry.id,
            "Name": entry.name,
            "Enabled": entry.enabled,
            "PluginReference": entry.reference,
            "Created": entry.created,
            "EnableTimeout": entry.timeout,
            "Config": dump_config(entry.config),
            "Settings": dump_settings(entry.settings),
        }

    def _save(self, entry: _Entry) -> None:
        self._store.save(entry.id, self._record(entry))

    def _publish_locked(self, entry: _Entry | None = None) -> None:
        """Update the lookup index after a change to ``entry`` (every entry when ``None``).

        Called with ``_lock`` held. One entry costs the same however many
        are installed; the full rebuild is for start-up.
        """
        index = self._index
        if self._closing:
            index.clear()  # shutting down: nothing is looked up
            return
        if entry is None:
            index.clear()
            for each in self._entries.values():
                self._index_locked(each)
        elif entry.removed or self._entries.get(entry.id) is not entry:
            index.drop(entry.id, entry)
        else:
            self._index_locked(entry)

    def _index_locked(self, entry: _Entry) -> None:
        plugin = entry.plugin
        # Only a plugin that runs, is meant to, and whose enable is recorded
        # (plugin.enabled is set once enable() has saved it): lookups never
        # hand out a plugin that an enable failing late, a disable, a remove
        # or a shutdown is about to stop.
        if entry.running and entry.want_running and plugin.enabled:
            state = _RUNNING
        elif plugin.enabled:
            state = _DOWN
        else:
            state = _DISABLED
        name = entry.name
        short = name[: -len(":latest")]
        if name.endswith(":latest") and not is_plugin_id(short):
            keys: tuple[str, ...] = (name, short, entry.id)  # a 64-hex string is only an id
        else:
            keys = (name, entry.id)
        self._index.set(entry.id, keys, (frozenset(plugin.capabilities), state, entry), plugin)

    def _check_open(self) -> None:
        with self._lock:
            self._check_open_locked()

    def _check_open_locked(self) -> None:
        if self._closing:
            raise PluginError("the plugin manager is shut down")

    def _check_live_locked(self, entry: _Entry, name: str) -> None:
        self._check_open_locked()
        if entry.removed:
            raise ErrNotFound(name)

    def _emit(self, entry: _Entry, action: str) -> None:
        if self._on_event is None:
            return
        try:
            with self._calling_out():
                self._on_event(PluginEvent(entry.id, entry.name, action, time.time()))
        except Exception:
            log.exception("on_event callback failed for %s %s", action, entry.name)

    def _run_handlers(self, entry: _Entry) -> None:
        with self._lock:
            callbacks = [
                cb for cap in entry.plugin.capabilities for cb in self._handlers.get(cap, ())
            ]
        for callback in callbacks:
            self._call_handler(callback, entry.plugin)

    def _call_handler(self, callback: Callable[[str, Client], None], plugin: Plugin) -> None:
        try:
            with self._calling_out():
                callback(plugin.name, plugin.client)
        except Exception:
            log.exception("handler %r failed for plugin %s", callback, plugin.name)

    @contextlib.contextmanager
    def _calling_out(self) -> Iterator[None]:
        """Mark the current thread as inside a callback of the manager (see :meth:`shutdown`)."""
        depth: int = getattr(self._calling, "depth", 0)
        self._calling.depth = depth + 1
        try:
            yield
        finally:
            self._calling.depth = depth


# -- module helpers -----------------------------------------------------------


def _usable(hit: _Hit, name: str, capability: str) -> _Entry:
    """Return the entry of a lookup hit if it runs and has ``capability``, else raise."""
    caps, state, entry = hit
    if state == _DOWN:
        raise ErrDisabled(name, f'plugin "{name}" found but not running')
    if state != _RUNNING:
        raise ErrDisabled(name)
    if capability.lower() not in caps:
        raise ErrInadequateCapability(name, capability)
    return entry


def _early_exit(name: str, info: PluginExit | None) -> RuntimeStartError:
    code = info.exit_code if info is not None else None
    tail = info.stderr_tail.strip() if info is not None else ""
    message = f"plugin {name} exited with code {code} before it was ready"
    if tail:
        message += f"; last stderr lines:\n{tail}"
    return RuntimeStartError(message, exit_code=code, stderr_tail=tail)


def _accepts(path: str) -> bool:
    """Tell whether a unix socket at ``path`` is listening (accepts connections).

    The connect never waits: it succeeds, or fails with ``EAGAIN`` when the
    listener's backlog is full (listening all the same), or with an error
    that means nothing listens there (yet).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        return sock.connect_ex(path) in _LISTENING
    finally:
        sock.close()


_LISTENING = frozenset({0, errno.EAGAIN, errno.EINPROGRESS})


def _record_field(
    record: Mapping[str, Any], key: str, kind: type[_T], default: _T | None, what: str, source: str
) -> _T:
    """Return ``record[key]`` if it is a ``kind`` (``default`` when absent), else raise.

    JSON booleans are not numbers here, and integers are floats.
    """
    if key not in record and default is not None:
        return default
    value = record.get(key)
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise ValueError(f"{source}: {key} must be {what}, got {value!r}")
    return value
