"""Upgrade an installed plugin in place: same id, settings carried over, config and rootfs swapped.

The new version is downloaded and unpacked beside the old one (in the
manager's staging area) while the old one keeps running. Then, for an
enabled plugin, the old one is stopped, the two plugin directories are
exchanged in one ``renameat2(RENAME_EXCHANGE)`` and the new one is started;
if it does not start, the directories are exchanged back and the old version
is started again, and the error says so. A kill at any instant leaves either
version complete (the other one, in ``tmp/``, is deleted at the next start).

Socket hand-over: when both versions opt in (their config.json sets the env
var ``PLUGINKIT_SOCKET_HANDOFF=1``, as ``pluginkit build`` writes for SDK
plugins), keep the same socket name, and the runtime can pass a listening
socket (``passes_listen_fd``: the process runtime), the manager binds a new
listening socket and renames it over the plugin's socket path *before* the
old version stops. Connections made from then on wait in that socket's
backlog while the old version finishes what it accepted and exits; the new
version is started with the socket (systemd's ``LISTEN_FDS``, which the SDK
accepts) and serves them. No call is refused. The upgrade succeeds once the
new version answers ``Plugin.Activate`` on it; a rollback hands the same
socket to the old version.

Settings: Docker keeps a plugin's settings across an upgrade, stale defaults
included. pluginkit carries over what the user set (a value different from
the old version's default) where the new config still lets users set it -
env vars, mount sources and device paths by name, the args - and takes the
new version's defaults for everything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .._config import PluginConfig, Settings, compute_privileges, initial_settings
from .._errors import InvalidReferenceError, PluginError, PluginTimeoutError, RuntimeStartError
from .._store import RECORD, _fsync_tree, atomic_write, fsync_dir
from ._blobs import Progress
from ._errors import RegistryError
from ._layercache import LAYER_BLOB, LAYER_META
from ._pull import Puller
from ._ref import parse_registry_reference

if TYPE_CHECKING:
    from .._install import Grant
    from .._manager import Manager, _Entry
    from .._plugin import Plugin

__all__ = ["HANDOFF_ENV", "merge_settings", "upgrade"]

#: The config.json env var (value ``1``) by which a plugin says that it serves
#: on a listening socket handed over with ``LISTEN_FDS`` (``pluginkit build``
#: sets it; the SDK accepts such sockets).
HANDOFF_ENV = "PLUGINKIT_SOCKET_HANDOFF"
# Connections queued while no version accepts (the kernel caps it at somaxconn).
_BACKLOG = 4096

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Files of a version: they stay with it (the layer cache is the old rootfs's).
_KEEP = ("rootfs", RECORD, "distribution.json", LAYER_BLOB, LAYER_META)


def merge_settings(old: Settings, old_config: PluginConfig, new: PluginConfig) -> Settings:
    """Carry the values the user set over to the new config (see the module docstring).

    A value is carried when the user changed it from the old default and the
    new config still lets users set it; everything else takes the new
    config's default.
    """
    fresh = initial_settings(new)
    before = initial_settings(old_config)
    old_env = dict(line.partition("=")[::2] for line in old.env)
    default_env = dict(line.partition("=")[::2] for line in before.env)
    changed = {k: v for k, v in old_env.items() if default_env.get(k) != v}
    settable = {e.name for e in new.env if "value" in e.settable}
    env = []
    seen = set()
    for line in fresh.env:
        key = line.partition("=")[0]
        seen.add(key)
        env.append(f"{key}={changed[key]}" if key in changed and key in settable else line)
    env.extend(f"{k}={v}" for k, v in changed.items() if k in settable and k not in seen)
    old_mounts = {m.name: m.source for m in old.mounts if m.name}
    default_mounts = {m.name: m.source for m in before.mounts if m.name}
    mounts = tuple(
        attrs.evolve(m, source=old_mounts[m.name])
        if "source" in m.settable
        and m.name in old_mounts
        and old_mounts[m.name] != default_mounts.get(m.name)
        else m
        for m in fresh.mounts
    )
    old_devices = {d.name: d.path for d in old.devices if d.name}
    default_devices = {d.name: d.path for d in before.devices if d.name}
    devices = tuple(
        attrs.evolve(d, path=old_devices[d.name])
        if "path" in d.settable
        and d.name in old_devices
        and old_devices[d.name] != default_devices.get(d.name)
        else d
        for d in fresh.devices
    )
    keep_args = "value" in new.args.settable and old.args != before.args
    return Settings(
        mounts=mounts, env=tuple(env), args=old.args if keep_args else fresh.args, devices=devices
    )


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories atomically (Linux ``renameat2``); a two-step rename elsewhere."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), os.fspath(a))
    parked = a.with_name(a.name + "-parked")
    os.rename(b, parked)
    os.rename(a, b)
    os.rename(parked, a)


def _swap(manager: Manager, staging: Path, plugin_id: str) -> None:
    target = manager._store.plugin_dir(plugin_id)
    for child in os.listdir(target):
        if child not in _KEEP and not os.path.lexists(staging / child):
            os.rename(target / child, staging / child)
    _exchange(staging, target)
    fsync_dir(manager._store.plugins_dir)
    fsync_dir(manager._store.tmp_dir)


def upgrade(
    manager: Manager,
    name: str,
    ref: str | None,
    *,
    grant: Grant,
    progress: Progress | None = None,
) -> Plugin:
    """Upgrade plugin ``name`` from ``ref`` (default: where it came from)."""
    from .._install import check_grant

    entry = manager._resolve(name)
    source = ref if ref is not None else entry.reference
    try:
        target = parse_registry_reference(source)
    except InvalidReferenceError:
        raise RegistryError(
            f"plugin {entry.name} was not installed from a registry ({source}): "
            "pass the reference to upgrade from"
        ) from None
    with Puller(target, progress, manager.install_limits) as puller:
        fetched = puller.fetch_config()
        check_grant(compute_privileges(fetched.config), grant)
        manager._check_socket_path(entry.id, fetched.config)
        manager._check_open()
        staging = manager._store.new_staging()
        try:
            puller.fetch_rootfs(fetched, staging / "rootfs")
            with open(staging / "distribution.json", "w", encoding="utf-8") as f:
                json.dump({"ManifestDigest": fetched.manifest_digest}, f)
            settings = merge_settings(entry.settings, entry.config, fetched.config)
            new = manager._new_entry(
                entry.id, entry.name, fetched.config, settings, str(target), entry.created
            )
            new.timeout = entry.timeout
            return _switch(manager, entry, new, staging)
        finally:
            manager._store.discard_staging(staging)


def _install_entry(manager: Manager, entry: _Entry) -> None:
    with manager._lock:
        manager._entries[entry.id] = entry
        manager._publish_locked()


def accepts_handoff(config: PluginConfig) -> bool:
    """Tell whether a plugin's config opts in to the socket hand-over (``HANDOFF_ENV=1``)."""
    return any(e.name == HANDOFF_ENV and e.value == "1" for e in config.env)


def _bind_handoff(manager: Manager, old: _Entry, new: _Entry) -> socket.socket | None:
    """Bind the listening socket the versions share, renamed over the socket path; or None."""
    if not (
        old.enabled
        and getattr(manager._runtime, "passes_listen_fd", False)
        and accepts_handoff(old.config)
        and accepts_handoff(new.config)
        and old.config.interface.socket == new.config.interface.socket
    ):
        return None
    path = manager._socket_dir(old.id) / old.config.interface.socket
    staged = path.with_name(f".{path.name}.handoff")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staged.unlink(missing_ok=True)
        sock.bind(os.fspath(staged))
        try:
            os.chmod(staged, 0o660)
            sock.listen(_BACKLOG)
            os.replace(staged, path)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
    except OSError as exc:
        sock.close()
        raise PluginError(f"cannot bind the socket of {old.name} at {path}: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    old.handoff = new.handoff = sock
    return sock


def _wait_answers(manager: Manager, entry: _Entry, timeout: float) -> None:
    """Wait until the version started on the handed-over socket answers a call.

    Its socket accepts connections from the start (they queue): only an
    answer tells that the new version runs.
    """
    path = manager._socket_dir(entry.id) / entry.config.interface.socket
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(
            b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(0.05)
        while True:
            run = entry.run
            if run is None or run.exited.is_set():
                raise RuntimeStartError(
                    f"plugin {entry.name} exited before it answered on its socket"
                )
            try:
                if sock.recv(1):
                    return
            except TimeoutError:
                pass
            if time.monotonic() >= deadline:
                raise PluginTimeoutError(
                    f"plugin {entry.name} did not answer on {path} within {timeout:g} s"
                )


def _switch(manager: Manager, old: _Entry, new: _Entry, staging: Path) -> Plugin:
    listener = _bind_handoff(manager, old, new)
    try:
        return _switch_versions(manager, old, new, staging, handoff=listener is not None)
    finally:
        if listener is not None:
            # The running version holds its own copy of the socket.
            old.handoff = new.handoff = None
            listener.close()


def _switch_versions(
    manager: Manager, old: _Entry, new: _Entry, staging: Path, *, handoff: bool
) -> Plugin:
    was_enabled = old.enabled
    if was_enabled:
        manager.disable(old.name, force=True)
    try:
        atomic_write(staging / RECORD, json.dumps(manager._record(new)).encode())
        _fsync_tree(staging)
        with old.op_lock:
            _swap(manager, staging, old.id)
            _install_entry(manager, new)
    except BaseException:
        if was_enabled:  # nothing was swapped: the old version runs again
            with contextlib.suppress(PluginError):
                manager.enable(old.name, timeout=old.timeout)
        raise
    _forget(manager, old.id)
    if not was_enabled:
        manager._prepare(new)
        return new.plugin
    try:
        manager.enable(new.name, timeout=new.timeout)
        if handoff:
            _wait_answers(manager, new, new.timeout)
    except PluginError as exc:
        # Back to the old version, and running again.
        if new.enabled:
            with contextlib.suppress(PluginError):
                manager.disable(new.name, force=True)
        with new.op_lock:
            _exchange(staging, manager._store.plugin_dir(old.id))
            _install_entry(manager, old)
        _forget(manager, old.id)
        manager.enable(old.name, timeout=old.timeout)
        raise RegistryError(
            f"upgrade of {old.name} failed, the old version runs again: {exc}"
        ) from exc
    return new.plugin


def _forget(manager: Manager, plugin_id: str) -> None:
    """Let the runtime drop what it kept of the old rootfs (an image, a prepared container)."""
    with contextlib.suppress(Exception):
        manager._runtime.discard(plugin_id)
