"""One asyncio connection to a plugin, for :class:`~pluginkit.AsyncClient`.

:class:`Connection` is a small :class:`asyncio.Protocol` that buffers what
arrives and wakes the one coroutine waiting for it, with the call's deadline
as a timer on the loop (no task per call, no ``wait_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Final

from ._wire._clientside import RECV

__all__ = ["Connection", "running_loop", "tcp_socket"]

_HIGH_WATER: Final = 1 << 20  # stop reading from the socket while this much waits unread


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running event loop, or None outside of one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Connection(asyncio.Protocol):
    """One connection: received bytes are buffered until a coroutine asks for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The plain socket under the transport (None with TLS): see connection_lost.
        self.sock: socket.socket | None = None
        #: The socket that was connected (also with TLS): see close.
        self.raw: socket.socket | None = None
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- protocol callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._paused_reading = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._exc = exc
            sock = self.sock
            if sock is not None:
                # Sending failed (the plugin closed without reading the whole
                # request), and asyncio stopped reading: the plugin's answer
                # may still wait in the socket, which closes after this.
                with contextlib.suppress(OSError):
                    while data := sock.recv(RECV):
                        self._buf += data
        self._wake()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or ConnectionResetError("connection closed by the plugin"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- what the client uses --

    def quiet(self) -> bool:
        """Tell whether the idle connection is open and received nothing."""
        transport = self.transport
        return (
            not self._buf and not self._eof and transport is not None and not transport.is_closing()
        )

    def take_buffered(self) -> bytes:
        """Return (and forget) all received bytes not read yet."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending."""
        if self._exc is not None:
            raise self._exc
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self, deadline: float | None) -> None:
        """Wait until the queued bytes are mostly sent (by ``deadline``)."""
        if not self._write_paused:
            if self._exc is not None:
                raise self._exc
            return
        waiter = self.loop.create_future()
        self._drain_waiter = waiter
        await self._wait_for(waiter, deadline)

    async def recv(self, size: int, deadline: float | None) -> bytes:
        """Return up to ``size`` received bytes; ``b""`` at end of file."""
        buf = self._buf
        if not buf and not self._eof:
            waiter = self.loop.create_future()
            self._waiter = waiter
            try:
                await self._wait_for(waiter, deadline)
            finally:
                self._waiter = None
        if buf:
            if len(buf) <= size:
                data = bytes(buf)
                buf.clear()
            else:
                data = bytes(buf[:size])
                del buf[:size]
            if self._paused_reading and len(buf) <= _HIGH_WATER // 4:
                self._paused_reading = False
                if self.transport is not None:
                    self.transport.resume_reading()
            return data
        if self._exc is not None:
            raise self._exc
        return b""

    async def _wait_for(self, waiter: asyncio.Future[None], deadline: float | None) -> None:
        if deadline is None:
            await waiter
            return
        loop = self.loop
        timer = loop.call_at(loop.time() + (deadline - time.monotonic()), _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    def close(self) -> None:
        """Close the connection (also when its loop has ended)."""
        transport = self.transport
        if transport is None:
            return
        loop = self.loop
        if not loop.is_closed():
            if loop.is_running() and running_loop() is not loop:
                # Another thread's loop (a manager closing a plugin's clients):
                # transports are closed by their own loop.
                with contextlib.suppress(RuntimeError):  # it closed meanwhile
                    loop.call_soon_threadsafe(transport.close)
                    return
            transport.close()
            return
        # Its loop has ended (a later asyncio.run took the client): nothing
        # will run the transport's callbacks, so finish it here. A plain
        # socket transport does that in _call_connection_lost (asyncio's own
        # last step); other transports get their socket closed under them.
        finish = getattr(transport, "_call_connection_lost", None)
        if finish is not None and self.sock is not None:
            with contextlib.suppress(Exception):
                finish(None)
                return
        if self.raw is not None:
            self.raw.close()


async def tcp_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """Connect a non-blocking TCP socket to ``host``, trying its addresses in turn.

    Errors read as the sync client's (:func:`socket.create_connection`): the
    last address's, worded by the OS (asyncio words its own).
    """
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = OSError(exc.errno, os.strerror(exc.errno)) if exc.errno else exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError("getaddrinfo returns an empty list")
