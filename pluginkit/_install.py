"""Installing a plugin from a directory or a tar archive: reading, checking, copying.

The Manager's :meth:`~pluginkit.Manager.create`, :meth:`~pluginkit.Manager.install`
and :meth:`~pluginkit.Manager.privileges` are thin delegations to this module,
and a registry install shares it. Every install goes the same way:

1. :func:`open_source` gives a plugin directory for the source (a directory
   as is, an archive extracted into a staging directory under the root's
   ``tmp/`` by :func:`~pluginkit._install_archive.safe_extract`);
2. :func:`read_context` reads and validates its ``config.json`` and checks
   it has ``rootfs/``; :func:`check_grant` checks the privileges;
3. the manager's ``_add(name, config, reference=..., fill=...)`` reserves the
   name under the manager lock, stages the plugin in a fresh directory under
   ``tmp/`` (``fill(staging)`` writes ``staging/rootfs``; :func:`copy_rootfs`
   does it for a plugin directory), writes its record and renames it into
   ``plugins/<id>`` in one step (:meth:`Store.commit`), then publishes it
   under the manager lock. Nothing here takes the manager's locks.

A registry install does steps 2 and 3 with a config blob and a ``fill``
that unpacks the layers into ``staging/rootfs``.

Whatever the source, an install is bounded by :class:`InstallLimits`
(bytes, entries, directory depth, ``config.json`` size), and symlinks never
lead a copy outside the source: ``config.json`` and ``rootfs`` must resolve
inside the plugin directory, and links inside ``rootfs`` are copied as links.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ._config import PluginConfig, Privilege, load_config, privileges_equal
from ._errors import InvalidConfigError, InvalidReferenceError, PrivilegesNotGrantedError
from ._install_archive import find_context, safe_extract
from ._install_limits import Budget, InstallLimits, _short
from ._reference import normalize_name
from ._store import Store

__all__ = [
    "Filler",
    "Grant",
    "InstallLimits",
    "check_grant",
    "check_source",
    "copy_rootfs",
    "local_source",
    "name_from_source",
    "open_source",
    "read_context",
]

Grant = bool | Sequence[Privilege] | Callable[[list[Privilege]], bool] | None
"""What ``install(grant=...)`` accepts: ``True`` (all), the list, or a callable."""

Filler = Callable[[Path], None]
"""Writes ``<staging>/rootfs`` of a plugin being installed (called with the staging dir)."""


def local_source(path: Path) -> bool:
    """Tell whether ``path`` names something on disk (a name too long for a path does not)."""
    try:
        os.stat(path)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return False
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise InvalidConfigError(
            f"plugin source {path} cannot be used: {exc.strerror}", path=os.fspath(path)
        ) from None
    return True


def check_source(path: Path) -> None:
    """Raise :class:`InvalidConfigError` unless ``path`` names a file or directory."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidConfigError(
            f"plugin source {path} does not exist", path=os.fspath(path)
        ) from None
    except OSError as exc:
        raise InvalidConfigError(
            f"plugin source {path} cannot be used: {exc.strerror}", path=os.fspath(path)
        ) from None


@contextlib.contextmanager
def open_source(path: Path, store: Store, limits: InstallLimits) -> Iterator[Path]:
    """Yield a plugin directory for ``path`` (a directory, or an archive extracted).

    An archive is extracted into a staging directory of ``store`` within
    ``limits``, and deleted on exit whatever happens.
    """
    if path.is_dir():
        yield path
        return
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        # A FIFO would block the reader forever, a device never end.
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket or device"
        raise InvalidConfigError(
            f"plugin source {path} is neither a directory nor a regular file but {kind}",
            path=os.fspath(path),
        )
    staging = store.new_staging()
    try:
        safe_extract(path, staging, Budget(limits, f"archive {path}", os.fspath(path)))
        yield find_context(staging, path)
    finally:
        store.discard_staging(staging)


def _privilege_key(p: Privilege) -> tuple[str, tuple[str, ...]]:
    return p.name, tuple(sorted(p.value))


def _describe(privileges: Sequence[Privilege]) -> str:
    return ", ".join(f"{p.name} [{' '.join(p.value)}]" for p in privileges)


def check_grant(required: list[Privilege], grant: Grant) -> None:
    """Raise :class:`PrivilegesNotGrantedError` unless ``grant`` covers ``required`` exactly."""
    if grant is True:
        return
    if callable(grant):
        if grant(list(required)):
            return
        raise PrivilegesNotGrantedError(f"incorrect privileges: not granted: {_describe(required)}")
    given: object = grant  # what callers really pass, whatever the annotation says
    if given is None or given is False:
        granted: list[Privilege] = []
    elif isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise TypeError(f"grant must be True, a list of Privilege or a callable, not {given!r}")
    else:
        granted = list(given)
    for index, privilege in enumerate(granted):
        if not isinstance(privilege, Privilege):
            raise TypeError(f"grant[{index}] must be a Privilege, not {privilege!r}")
    if privileges_equal(required, granted):
        return
    have = [_privilege_key(g) for g in granted]
    want = [_privilege_key(p) for p in required]
    missing = [p for p in required if _privilege_key(p) not in have]
    extra = [g for g in granted if _privilege_key(g) not in want]
    details = []
    if missing:
        details.append(f"not granted: {_describe(missing)}")
    if extra:
        details.append(f"granted but not required: {_describe(extra)}")
    message = "incorrect privileges"
    if details:
        message += ": " + "; ".join(details)
    raise PrivilegesNotGrantedError(message)


def read_context(context: Path, limits: InstallLimits | None = None) -> PluginConfig:
    """Read the config of a plugin directory, then check it has ``rootfs/``.

    A missing ``config.json`` is reported by :func:`load_config`
    (``config not found: PATH``). ``config.json`` must be a regular file of
    at most ``limits.max_config_bytes``; it and ``rootfs`` must resolve
    inside ``context`` (a link to ``/etc`` is refused, not copied).
    """
    limits = limits if limits is not None else InstallLimits()
    real_top = os.path.realpath(context)
    for name in ("config.json", "rootfs"):
        path = os.path.join(context, name)
        if not os.path.islink(path):
            continue
        real = os.path.realpath(path)
        if real != real_top and not real.startswith(real_top + os.sep):
            raise InvalidConfigError(
                f"{name} in {context} resolves outside it (to {real})", path=path
            )
    config = load_config(context / "config.json", max_bytes=limits.max_config_bytes)
    if not (context / "rootfs").is_dir():
        raise InvalidConfigError(f"no rootfs found in {context}", path=os.fspath(context))
    return config


def name_from_source(path: Path) -> str:
    """Return the default name of a plugin installed from ``path``: its absolute base name.

    ``.``, ``./`` and ``..`` name the directory they stand for.
    """
    base = os.path.basename(os.path.abspath(path))
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    try:
        return normalize_name(base)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(
            f"cannot use {base!r} (from {path}) as a plugin name: {exc}; pass name= "
            "(--alias on the command line)"
        ) from None


def copy_rootfs(context: Path, dest: Path, limits: InstallLimits | None = None) -> None:
    """Copy ``context/rootfs`` to ``dest/rootfs``: links copied as links, special files refused.

    No link is ever followed below ``rootfs`` (a copy cannot leave the
    source), the walk needs no recursion however deep the tree, and the copy
    stays within ``limits`` (:class:`~pluginkit.InstallLimitError` otherwise).
    A file is copied up to the size it had when listed.
    """
    limits = limits if limits is not None else InstallLimits()
    budget = Budget(limits, f"plugin directory {context}", os.fspath(context))
    src_root = os.path.join(context, "rootfs")
    dst_root = os.path.join(dest, "rootfs")
    os.mkdir(dst_root, 0o755)
    # (source dir, target dir, path shown in errors, depth of its children)
    stack = [(src_root, dst_root, "rootfs", 2)]
    while stack:
        src_dir, dst_dir, shown, depth = stack.pop()
        try:
            with os.scandir(src_dir) as listing:
                entries = list(listing)
        except OSError as exc:
            raise _copy_error(context, src_dir, exc) from None
        for entry in entries:
            src = entry.path
            dst = os.path.join(dst_dir, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    budget.add()
                    os.symlink(os.readlink(src), dst)
                elif stat.S_ISDIR(st.st_mode):
                    budget.check_depth(depth, f"{shown}/{entry.name}")
                    budget.add()
                    os.mkdir(dst, stat.S_IMODE(st.st_mode) | 0o700)
                    stack.append((src, dst, f"{shown}/{entry.name}", depth + 1))
                elif stat.S_ISREG(st.st_mode):
                    budget.add(st.st_size)
                    _copy_file(src, dst, st.st_size)
                    os.chmod(dst, stat.S_IMODE(st.st_mode) & 0o777)
                else:
                    raise _special(context, src)
            except OSError as exc:
                raise _copy_error(context, src, exc) from None


def _special(context: Path, src: str) -> InvalidConfigError:
    return InvalidConfigError(
        f"rootfs of {context} holds {src}, which is not a file, directory or "
        "symlink (device files and fifos are not allowed)",
        path=src,
    )


def _copy_error(context: Path, src: str, exc: OSError) -> InvalidConfigError:
    return InvalidConfigError(
        f"cannot copy {_short(src)} from {context}: {exc.strerror or exc}", path=src
    )


def _copy_file(src: str, dst: str, size: int) -> None:
    """Copy ``size`` bytes of the regular file ``src`` (never through a link, never blocking)."""
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):  # swapped since it was listed
            raise OSError(errno.EINVAL, "it is not a regular file any more")
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            offset = 0
            while offset < size:
                sent = os.sendfile(fd_out, fd_in, offset, min(size - offset, 1 << 30))
                if sent == 0:
                    break  # it shrank meanwhile
                offset += sent
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
