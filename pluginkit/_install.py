"""Installing a plugin from a directory or a tar archive: reading, checking, copying.

The Manager's :meth:`~pluginkit.Manager.create`, :meth:`~pluginkit.Manager.install`
and :meth:`~pluginkit.Manager.privileges` are thin delegations to this module,
and a registry install shares it. Every install goes the same way:

1. :func:`open_source` gives a plugin directory for the source (a directory
   as is, an archive extracted into a staging directory under the root's
   ``tmp/``, by :func:`safe_extract`);
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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from ._config import PluginConfig, Privilege, load_config, privileges_equal
from ._errors import InvalidConfigError, InvalidReferenceError, PrivilegesNotGrantedError
from ._reference import normalize_name
from ._store import Store

__all__ = [
    "Filler",
    "Grant",
    "check_grant",
    "copy_rootfs",
    "find_context",
    "name_from_source",
    "open_source",
    "read_context",
    "safe_extract",
]

Grant = bool | Sequence[Privilege] | Callable[[list[Privilege]], bool] | None
"""What ``install(grant=...)`` accepts: ``True`` (all), the list, or a callable."""

Filler = Callable[[Path], None]
"""Writes ``<staging>/rootfs`` of a plugin being installed (called with the staging dir)."""


@contextlib.contextmanager
def open_source(path: Path, store: Store) -> Iterator[Path]:
    """Yield a plugin directory for ``path`` (a directory, or an archive extracted).

    An archive is extracted into a staging directory of ``store``, deleted
    on exit whatever happens.
    """
    if path.is_dir():
        yield path
        return
    staging = store.new_staging()
    try:
        safe_extract(path, staging)
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


def read_context(context: Path) -> PluginConfig:
    """Read the config of a plugin directory, then check it has ``rootfs/``.

    A missing ``config.json`` is reported by :func:`load_config`
    (``config not found: PATH``).
    """
    config = load_config(context / "config.json")
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


def find_context(extracted: Path, archive: Path) -> Path:
    """Find the plugin directory in an extracted archive: its top or its only sub-directory.

    Its ``config.json`` and ``rootfs`` must resolve inside the extraction:
    links checked one by one can still combine into a way out (a relative
    link through an absolute one under ``rootfs/``).
    """
    context = extracted
    if not (extracted / "config.json").exists():
        children = [c for c in extracted.iterdir() if c.is_dir() and not c.is_symlink()]
        if len(children) != 1 or not (children[0] / "config.json").exists():
            raise InvalidConfigError(
                f"config not found in archive {archive}", path=os.fspath(archive)
            )
        context = children[0]
    real_top = os.path.realpath(extracted)
    for name in ("config.json", "rootfs"):
        real = os.path.realpath(context / name)
        if real != real_top and not real.startswith(real_top + os.sep):
            raise InvalidConfigError(
                f"{name} in archive {archive} resolves outside it", path=os.fspath(archive)
            )
    return context


def copy_rootfs(context: Path, dest: Path) -> None:
    """Copy ``context/rootfs`` to ``dest/rootfs``: links copied as links, special files refused."""
    src_root = context / "rootfs"
    dst_root = dest / "rootfs"
    dst_root.mkdir(mode=0o755)
    for dirpath, dirnames, filenames in os.walk(src_root):
        rel = os.path.relpath(dirpath, src_root)
        target_dir = dst_root if rel == "." else dst_root / rel
        for name in [*dirnames, *filenames]:
            src = os.path.join(dirpath, name)
            dst = target_dir / name
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISDIR(st.st_mode):
                dst.mkdir(mode=stat.S_IMODE(st.st_mode) | 0o700)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(src, dst, follow_symlinks=False)
                os.chmod(dst, stat.S_IMODE(st.st_mode) & 0o777)
            else:
                raise InvalidConfigError(
                    f"rootfs of {context} holds {src}, which is not a file, directory or "
                    "symlink (device files and fifos are not allowed)",
                    path=src,
                )
        # symlinked directories are copied as links above; do not descend into them
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a plugin archive into ``dest`` without letting anything land outside it.

    Refused: absolute member names, ``..`` components, members written through
    a symlink, symlinks pointing outside the archive (absolute targets are
    allowed under ``rootfs/``, where they mean the plugin's own root),
    hard links to anything but an earlier regular member, device files and
    fifos. Modes keep the permission bits only (no setuid/setgid).
    """
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise InvalidConfigError(
            f"{archive} is neither a plugin directory nor a tar archive: {exc}",
            path=os.fspath(archive),
        ) from None
    real_dest = os.path.realpath(dest)

    def refuse(member: tarfile.TarInfo, why: str) -> InvalidConfigError:
        return InvalidConfigError(
            f"unsafe member {member.name!r} in {archive}: {why}", path=os.fspath(archive)
        )

    def inside(path: str) -> bool:
        return path == real_dest or path.startswith(real_dest + os.sep)

    with tar:
        for member in tar:
            parts = _member_parts(member.name)
            if parts is None:
                raise refuse(member, "absolute path or '..' component")
            if not parts:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if not inside(os.path.realpath(target.parent)):
                raise refuse(member, "it would be written through a symlink")
            if os.path.lexists(target) and not (member.isdir() and target.is_dir()):
                raise refuse(member, "duplicate member")
            mode = (member.mode & 0o777) if member.mode is not None else 0o644
            if member.isdir():
                target.mkdir(mode=mode | 0o700, exist_ok=True)
            elif member.isreg():
                source = tar.extractfile(member)
                if source is None:
                    raise refuse(member, "unreadable")
                fd = os.open(
                    target,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out)
                os.chmod(target, mode)
            elif member.issym():
                link = member.linkname
                if link.startswith("/"):
                    if parts[0] != "rootfs":
                        raise refuse(member, "absolute symlink outside rootfs/")
                elif not _link_stays_inside(parts, link):
                    raise refuse(member, f"symlink to {link!r} points outside the archive")
                os.symlink(link, target)
            elif member.islnk():
                link_parts = _member_parts(member.linkname)
                if not link_parts:
                    raise refuse(member, f"hard link to {member.linkname!r}")
                source_path = dest.joinpath(*link_parts)
                real_source = os.path.realpath(source_path)
                if (
                    not inside(real_source)
                    or os.path.islink(source_path)
                    or not os.path.isfile(real_source)
                ):
                    raise refuse(member, f"hard link to {member.linkname!r}")
                os.link(real_source, target)
            else:
                raise refuse(member, "device files, fifos and other special files are not allowed")


def _link_stays_inside(parts: tuple[str, ...], link: str) -> bool:
    """Tell whether a relative symlink at member ``parts`` resolves inside its floor.

    The floor is ``rootfs/`` for links under it, else the archive's top. The
    components are walked one by one: ``normpath`` would clamp ``/..`` to
    ``/`` and let ``../../../etc/passwd`` at the top look inside.
    """
    floor = 1 if parts[0] == "rootfs" else 0
    depth = list(parts[:-1])
    for component in link.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if len(depth) <= floor:
                return False
            depth.pop()
        else:
            depth.append(component)
    return True


def _member_parts(name: str) -> tuple[str, ...] | None:
    """Split a member name into safe components; ``None`` when absolute or using ``..``."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        return None
    return parts
