"""Unpack image layers into a plugin's rootfs: safely, with whiteouts, within a size bound.

Refused, naming the layer and the member: absolute names and ``..``
components, members written through a symlink, relative symlinks that climb
out of the rootfs (absolute ones mean the plugin's own root and are kept),
hard links to anything but an earlier regular file, device files and fifos,
and a rootfs past the manager's :class:`~pluginkit.InstallLimits` (the same
bounds as an archive install; :class:`~pluginkit.InstallLimitError`).
Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) remove what earlier layers put there,
as Docker's ``ApplyLayer`` does.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .._install_archive import _link_stays_inside, _member_parts
from .._install_limits import Budget
from ._errors import LayerError

__all__ = ["Budget", "apply_layer"]

_BUFSIZE = 1 << 20  # large reads: each one goes through urllib3 and a hash
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _make_parents(
    rootfs: Path, parts: tuple[str, ...], refuse: Callable[[str], LayerError]
) -> None:
    """Create the parents of a member one by one, never through a symlink."""
    path = os.fspath(rootfs)
    for component in parts[:-1]:
        path = os.path.join(path, component)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(mode):
            raise refuse("it would be written through a symlink")
        if not stat.S_ISDIR(mode):
            raise refuse(f"{component!r} is not a directory")


def apply_layer(
    stream: BinaryIO, compressed: bool, rootfs: Path, what: str, budget: Budget
) -> None:
    """Unpack one layer (a tar, gzip-compressed when ``compressed``) into ``rootfs``.

    Raises:
        LayerError: an unsafe member, or the rootfs grew past the budget.
        tarfile.TarError, EOFError, OSError (zlib): the stream is not a valid
            (compressed) tar; the caller reports that after checking the digest.
    """
    real_root = os.path.realpath(rootfs)
    budget.source = what

    def refuse(member: tarfile.TarInfo, why: str) -> LayerError:
        return LayerError(f"unsafe member {member.name!r} in {what}: {why}")

    def inside(path: str) -> bool:
        return path == real_root or path.startswith(real_root + os.sep)

    with tarfile.open(fileobj=stream, mode="r|gz" if compressed else "r|", bufsize=_BUFSIZE) as tar:
        for member in tar:
            parts = _member_parts(member.name)
            if parts is None:
                raise refuse(member, "absolute path or '..' component")
            if not parts:
                continue
            budget.check_depth(len(parts) if member.isdir() else len(parts) - 1, member.name)
            budget.add(member.size if member.isreg() else 0)
            target = rootfs.joinpath(*parts)
            _make_parents(rootfs, parts, functools.partial(refuse, member))
            if not inside(os.path.realpath(target.parent)):
                raise refuse(member, "it would be written through a symlink")
            base = parts[-1]
            if base == _OPAQUE:
                for child in list(target.parent.iterdir()):
                    _remove(child)
                continue
            if base.startswith(_WHITEOUT):
                _remove(target.parent / base[len(_WHITEOUT) :])
                continue
            if os.path.lexists(target) and not (member.isdir() and target.is_dir()):
                _remove(target)
            mode = (member.mode & 0o777) if member.mode is not None else 0o644
            if member.isdir():
                target.mkdir(mode=mode | 0o700, exist_ok=True)
                os.chmod(target, mode | 0o700)
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
                    shutil.copyfileobj(source, out, 1 << 20)
                os.chmod(target, mode)
                if member.mtime:
                    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
            elif member.issym():
                link = member.linkname
                if not link.startswith("/") and not _link_stays_inside(("rootfs", *parts), link):
                    raise refuse(member, f"symlink to {link!r} points outside the rootfs")
                os.symlink(link, target)
            elif member.islnk():
                link_parts = _member_parts(member.linkname)
                if not link_parts:
                    raise refuse(member, f"hard link to {member.linkname!r}")
                source_path = rootfs.joinpath(*link_parts)
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
