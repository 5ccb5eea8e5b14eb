"""Unpack image layers into a plugin's rootfs: safely, with whiteouts, within a size bound.

Refused, naming the layer and the member: absolute names and ``..``
components, members written through a symlink, relative symlinks that climb
out of the rootfs (absolute ones mean the plugin's own root and are kept),
hard links to anything but an earlier regular file, device files and fifos,
and a rootfs that grows past :func:`~pluginkit.distribution._blobs.max_rootfs_size`.
Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) remove what earlier layers put there,
as Docker's ``ApplyLayer`` does.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO

from ._errors import LayerError

__all__ = ["apply_layer"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


class Budget:
    """Bytes a rootfs may still take."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def apply_layer(
    stream: BinaryIO, compressed: bool, rootfs: Path, what: str, budget: Budget
) -> None:
    """Unpack one layer (a tar, gzip-compressed when ``compressed``) into ``rootfs``.

    Raises:
        LayerError: an unsafe member, or the rootfs grew past the budget.
        tarfile.TarError, EOFError, OSError (zlib): the stream is not a valid
            (compressed) tar; the caller reports that after checking the digest.
    """
    from .._manager import _link_stays_inside, _member_parts

    real_root = os.path.realpath(rootfs)

    def refuse(member: tarfile.TarInfo, why: str) -> LayerError:
        return LayerError(f"unsafe member {member.name!r} in {what}: {why}")

    def inside(path: str) -> bool:
        return path == real_root or path.startswith(real_root + os.sep)

    with tarfile.open(fileobj=stream, mode="r|gz" if compressed else "r|") as tar:
        for member in tar:
            parts = _member_parts(member.name)
            if parts is None:
                raise refuse(member, "absolute path or '..' component")
            if not parts:
                continue
            target = rootfs.joinpath(*parts)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
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
                budget.used += member.size
                if budget.used > budget.limit:
                    raise LayerError(
                        f"{what} unpacks past the size limit of {budget.limit} bytes "
                        "(PLUGINKIT_MAX_ROOTFS_SIZE)"
                    )
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
