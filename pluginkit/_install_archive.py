"""Unpacking a plugin tar archive safely: nothing lands outside, nothing unbounded.

:func:`safe_extract` refuses every member that could write outside the
staging directory, counts what it writes against an install's
:class:`~pluginkit.InstallLimits`, and turns every way an archive can be
broken (truncated, corrupt compression, names too long) into an
:class:`~pluginkit.InvalidArchiveError` naming the archive and the member.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from ._errors import InvalidArchiveError, InvalidConfigError
from ._install_limits import Budget, _short

__all__ = ["find_context", "safe_extract"]

# What a truncated or corrupt (possibly compressed) archive raises while it is read.
_BROKEN = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_CHUNK = 1 << 20


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


def safe_extract(archive: Path, dest: Path, budget: Budget) -> None:
    """Extract a plugin archive into ``dest`` without letting anything land outside it.

    Refused: absolute member names, ``..`` components, members written (or
    directories created) through a symlink, symlinks pointing outside the
    archive (absolute targets are allowed under ``rootfs/``, where they mean
    the plugin's own root), hard links to anything but an earlier regular
    member, device files and fifos. Modes keep the permission bits only (no
    setuid/setgid). Every member counts against ``budget`` before anything
    is written for it.

    Raises:
        InvalidConfigError: not a tar archive at all.
        InvalidArchiveError: truncated or corrupt, an unsafe member, or a
            member that cannot be written (a name too long...).
        InstallLimitError: the archive passes one of the budget's limits.
    """
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise InvalidConfigError(
            f"{archive} is neither a plugin directory nor a tar archive: {exc}",
            path=os.fspath(archive),
        ) from None
    with tar:
        _Extraction(tar, archive, dest, budget).run()


class _Extraction:
    """One run of :func:`safe_extract`."""

    def __init__(self, tar: tarfile.TarFile, archive: Path, dest: Path, budget: Budget) -> None:
        self.tar = tar
        self.archive = archive
        self.dest = dest
        self.budget = budget
        self.real_dest = os.path.realpath(dest)
        # Directories made or checked (real, not links) under dest, relative.
        self.dirs: set[tuple[str, ...]] = {()}

    def refuse(self, member: tarfile.TarInfo, why: str) -> InvalidArchiveError:
        return InvalidArchiveError(
            f"unsafe member {_short(member.name)} in {self.archive}: {why}",
            path=os.fspath(self.archive),
            member=member.name,
        )

    def broken(self, exc: BaseException) -> InvalidArchiveError:
        return InvalidArchiveError(
            f"cannot read archive {self.archive}: it is truncated or corrupt ({exc})",
            path=os.fspath(self.archive),
        )

    def run(self) -> None:
        members = iter(self.tar)
        while True:
            try:
                member = next(members)
            except StopIteration:
                return
            except _BROKEN as exc:
                raise self.broken(exc) from None
            try:
                self.extract(member)
            except _BROKEN as exc:
                raise self.broken(exc) from None
            except OSError as exc:
                raise InvalidArchiveError(
                    f"cannot extract member {_short(member.name)} of {self.archive}:"
                    f" {exc.strerror or exc}",
                    path=os.fspath(self.archive),
                    member=member.name,
                ) from None

    def inside(self, path: str) -> bool:
        return path == self.real_dest or path.startswith(self.real_dest + os.sep)

    def make_parents(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        """Create the parent directories of a member one by one, never through a link."""
        for end in range(1, len(parts)):
            prefix = parts[:end]
            if prefix in self.dirs:
                continue
            path = os.path.join(self.dest, *prefix)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if stat.S_ISLNK(mode):
                    raise self.refuse(member, "it would be written through a symlink")
                if not stat.S_ISDIR(mode):
                    raise self.refuse(member, f"{'/'.join(prefix)!r} is not a directory")
            self.dirs.add(prefix)

    def extract(self, member: tarfile.TarInfo) -> None:
        parts = _member_parts(member.name)
        if parts is None:
            raise self.refuse(member, "absolute path or '..' component")
        if not parts:
            return
        budget = self.budget
        budget.check_depth(len(parts) if member.isdir() else len(parts) - 1, member.name)
        budget.add(member.size if member.isreg() else 0)
        self.make_parents(member, parts)
        target = self.dest.joinpath(*parts)
        if not self.inside(os.path.realpath(target.parent)):
            raise self.refuse(member, "it would be written through a symlink")
        if os.path.lexists(target) and not (member.isdir() and parts in self.dirs):
            raise self.refuse(member, "duplicate member")
        mode = (member.mode & 0o777) if member.mode is not None else 0o644
        if member.isdir():
            if parts not in self.dirs:
                target.mkdir(mode=mode | 0o700)
                self.dirs.add(parts)
        elif member.isreg():
            self.write_file(member, target, mode)
        elif member.issym():
            link = member.linkname
            if link.startswith("/"):
                if parts[0] != "rootfs":
                    raise self.refuse(member, "absolute symlink outside rootfs/")
            elif not _link_stays_inside(parts, link):
                raise self.refuse(member, f"symlink to {link!r} points outside the archive")
            os.symlink(link, target)
        elif member.islnk():
            link_parts = _member_parts(member.linkname)
            if not link_parts:
                raise self.refuse(member, f"hard link to {member.linkname!r}")
            source_path = self.dest.joinpath(*link_parts)
            real_source = os.path.realpath(source_path)
            if (
                not self.inside(real_source)
                or os.path.islink(source_path)
                or not os.path.isfile(real_source)
            ):
                raise self.refuse(member, f"hard link to {member.linkname!r}")
            os.link(real_source, target)
        else:
            raise self.refuse(member, "device files, fifos and other special files are not allowed")

    def write_file(self, member: tarfile.TarInfo, target: Path, mode: int) -> None:
        source = self.tar.extractfile(member)
        if source is None:
            raise self.refuse(member, "unreadable")
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with os.fdopen(fd, "wb") as out, source:
            # At most member.size bytes (what the budget counted): tarfile
            # reads exactly that, and raises ReadError when the data ends early.
            while chunk := source.read(_CHUNK):
                out.write(chunk)
        os.chmod(target, mode)


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
