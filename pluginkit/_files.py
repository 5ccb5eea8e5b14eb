"""Reading small files that someone else wrote, without hanging or reading forever.

A ``config.json`` may be a FIFO (``open`` would block until a writer comes),
a link to ``/dev/zero`` (``read`` never ends) or simply huge. :func:`read_small_file`
opens without blocking, refuses anything but a regular file and reads at most
``limit`` bytes.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["FileKindError", "FileTooLargeError", "read_small_file"]

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class FileKindError(OSError):
    """The path is not a regular file; ``kind`` says what it is ("a FIFO", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"not a regular file but {kind}")


class FileTooLargeError(OSError):
    """The file holds more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"larger than the limit of {limit} bytes")


def read_small_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """Return the bytes of the regular file at ``path`` (links followed), at most ``limit``.

    Raises:
        FileNotFoundError: there is no such file.
        IsADirectoryError: it is a directory.
        FileKindError: it is a FIFO, socket or device.
        FileTooLargeError: it holds more than ``limit`` bytes (also when it
            grows while being read).
        OSError: it cannot be opened or read.
    """
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of
    # waiting; it is refused right after by its type.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            raise FileKindError(_KINDS.get(stat.S_IFMT(mode), "not a file"))
        chunks = []
        size = 0
        if 0 < info.st_size <= limit:
            # One read does for the usual file: asked for a byte more than its
            # size, a read returning exactly its size has reached the end (one
            # that grew meanwhile returns more). A size that says nothing
            # (procfs files show 0) leaves it to the loop, which reads until
            # a read returns nothing.
            chunk = os.read(fd, info.st_size + 1)
            if len(chunk) == info.st_size:
                return chunk
            chunks.append(chunk)
            size = len(chunk)
            if size > limit:
                raise FileTooLargeError(limit)
        while True:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileTooLargeError(limit)
        return b"".join(chunks)
    finally:
        os.close(fd)
