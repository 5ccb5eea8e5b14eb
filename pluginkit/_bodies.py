"""Bodies that do not fit the one-buffer path: files sent, and replies streamed.

:class:`FileBody` is a request body read from a binary file (``send_file``);
:class:`BodyReader` is a streamed reply's body, read straight from the
connection by the sync client (the async client's twin is in
:mod:`pluginkit._async_client`). Both frame and parse with the wire layer.
"""

from __future__ import annotations

import io
import os
import socket
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from ._pool import remaining
from ._wire._clientside import RECV, BadReply, Head, StreamDecoder

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["BodyReader", "FileBody", "read_up_to"]

_BLOCK = 1 << 20  # what one read of a file takes


class FileBody:
    """A request body read from a binary file object (``send_file``).

    ``length`` is known for regular files (sent with ``Content-Length``),
    else None (sent chunked); ``start`` is where a seekable file was, for a
    retry to go back to.
    """

    __slots__ = ("consumed", "file", "length", "start")

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.consumed = False
        self.length: int | None = None
        self.start: int | None = None
        try:
            self.start = file.tell() if file.seekable() else None
        except (OSError, ValueError):
            self.start = None
        try:
            info = os.fstat(file.fileno())
            if stat.S_ISREG(info.st_mode) and self.start is not None:
                self.length = max(info.st_size - self.start, 0)
        except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
            self.length = None

    def rewind(self) -> bool:
        """Go back to the start for a retry; False when that is impossible."""
        if not self.consumed:
            return True
        if self.start is None:
            return False
        self.file.seek(self.start)
        return True

    def blocks(self) -> Iterator[bytes]:
        """Yield the body as it goes on the wire (chunked when its length is unknown).

        Raises:
            BadReply: a file of known size got shorter while it was sent.
        """
        self.consumed = True
        read = self.file.read
        if self.length is not None:
            left = self.length
            while left > 0:
                block = read(min(left, _BLOCK))
                if not block:
                    raise BadReply("the file got shorter while it was being sent")
                yield block
                left -= len(block)
            return
        while True:
            block = read(_BLOCK)
            if not block:
                break
            yield b"%x\r\n%b\r\n" % (len(block), block)
        yield b"0\r\n\r\n"

    def send(self, sock: socket.socket, deadline: float | None) -> None:
        """Send the file on ``sock``, all of it by ``deadline``."""
        for data in self.blocks():
            if deadline is not None:  # each sendall would get the whole timeout
                sock.settimeout(remaining(deadline))
            sock.sendall(data)


class BodyReader(io.RawIOBase):
    """The body of a streamed reply, read straight from the connection."""

    def __init__(
        self,
        client: Client,
        sock: socket.socket,
        head: Head,
        pending: bytes,
        method: str,
        timeout: float | None,
    ) -> None:
        super().__init__()
        self._client = client
        self._sock: socket.socket | None = sock
        self._method = method
        self._timeout = timeout  # this call's, not necessarily the client's
        # Decodes the chunks that came with the head at once.
        self._decoder = StreamDecoder(head, pending)

    def readable(self) -> bool:
        """Return True: the body is read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; 0 at the end of the body."""
        view = memoryview(buffer).cast("B")
        decoder = self._decoder
        while not decoder.pending and not decoder.finished():
            self._fill(len(view))
        pending = decoder.pending
        n = min(len(view), len(pending))
        view[:n] = pending[:n]
        del pending[:n]
        return n

    def _fill(self, size: int) -> None:
        sock = self._sock
        if sock is None:
            raise ValueError("I/O operation on a closed stream")
        try:
            self._decoder.feed(sock.recv(self._decoder.want(size)))
        except (OSError, BadReply) as exc:
            raise self._client._reply_error(self._method, self._timeout, exc) from None

    def close(self) -> None:
        """Close the stream; a connection whose body was read to the end goes back to the pool."""
        sock, self._sock = self._sock, None
        if sock is not None:
            decoder = self._decoder
            if decoder.finished() and not decoder.pending and decoder.head.keep_alive:
                self._client._pool.checkin(sock)
            else:
                sock.close()
        super().close()


def read_up_to(reader: io.RawIOBase, limit: int) -> bytes:
    """Read ``reader`` to its end, or to ``limit`` bytes."""
    data = bytearray()
    while len(data) < limit:
        block = reader.read(min(RECV, limit - len(data)))
        if not block:
            break
        data += block
    return bytes(data)
