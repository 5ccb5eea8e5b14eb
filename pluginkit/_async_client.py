"""The asyncio protocol client: :class:`AsyncClient`, the twin of :class:`~pluginkit.Client`.

Same constructor, calls, retry rule, timeouts, errors and error texts as the
sync client (both build on :mod:`pluginkit._calls` and the wire layer); the
I/O is asyncio's, on the running loop, without threads. Each connection is a
small :class:`asyncio.Protocol` that buffers what arrives and wakes the one
coroutine waiting for it, with the call's deadline as a timer on the loop (no
task per call, no ``wait_for``). Kept-alive connections are pooled per client
and belong to the loop that opened them: a client used from another loop (a
second :func:`asyncio.run`) opens fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, Final

from ._bodies import FileBody
from ._calls import DEFAULT_MAX_RESPONSE_SIZE, UNSET, ClientBase, Unset
from ._errors import PluginError
from ._pool import (
    DIAL_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_IDLE,
    ConnectFailed,
    NothingReceived,
    is_tls_error,
    remaining,
)
from ._tls import TLSConfig, ssl_context
from ._wire._clientside import (
    PLAIN_OK,
    RECV,
    BadReply,
    BodyCollector,
    Head,
    HeadReader,
    StreamDecoder,
    TooLarge,
    call_error,
    plain_reply,
    remember_plain_head,
)
from ._wire._json import encode

__all__ = ["AsyncBodyReader", "AsyncClient"]

_FIRST_RECV: Final = 16384
_HIGH_WATER: Final = 1 << 20  # stop reading from the socket while this much waits unread
# Idle connections kept per client. More than the sync client's 16: one loop
# runs many calls at once, and closing what did not fit would make the next
# burst of calls connect again.
_MAX_IDLE: Final = 4 * MAX_IDLE


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
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
        if not self.loop.is_closed():
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


class AsyncClient(ClientBase):
    """A connection to one plugin for asyncio: ``await client.call(...)``.

    The same arguments, rules and errors as :class:`~pluginkit.Client`:

    Args:
        addr: ``unix:///path.sock``, ``tcp://host:port``, ``http://host:port``
            or ``https://host:port``.
        tls: TLS settings; used for ``https://`` addresses, and for ``tcp://``
            ones when given.
        timeout: seconds each attempt of a call may take (connect, send and
            the whole reply); ``None`` waits forever, like Docker's client.
        retry_timeout: budget in seconds for retrying connection failures with
            Docker's backoff; 0 disables retries. HTTP errors and timeouts are
            never retried.
        max_response_size: largest reply body :meth:`call` and
            :meth:`send_file` accept, in bytes.
        backoff_unit: the first retry delay in seconds (Docker: 1).

    The constructor does not connect (nor needs a running loop). Calls run on
    the running loop and never block it, except for reading the file given
    to :meth:`send_file`. Many calls may run at once: each takes a
    kept-alive connection from the client's pool or opens one.
    """

    def __init__(
        self,
        addr: str,
        *,
        tls: TLSConfig | None = None,
        timeout: float | None = None,
        retry_timeout: float = 30.0,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        backoff_unit: float = 1.0,
    ) -> None:
        super().__init__(
            addr,
            tls=tls,
            timeout=timeout,
            retry_timeout=retry_timeout,
            max_response_size=max_response_size,
            backoff_unit=backoff_unit,
        )
        self._idle: list[tuple[_Connection, float]] = []
        self._closed = False
        _async_clients.add(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; later calls raise PluginConnectionError."""
        self._closed = True
        self._drain()

    async def aclose(self) -> None:
        """Close the pooled connections (awaitable form of :meth:`close`)."""
        self.close()

    # -- public calls --

    async def call(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | Unset | None = UNSET,
        retry_timeout: float | Unset = UNSET,
    ) -> Any:
        """Call ``method`` with ``args`` as JSON; return the decoded JSON reply.

        As :meth:`pluginkit.Client.call`.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
            PluginProtocolError: the reply is not HTTP or not JSON, or too large.
        """
        body = b"" if args is None else encode(args).encode()
        head, data = await self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise call_error(method, head.status, data)
        return self._decode(method, data)

    async def send_file(
        self,
        method: str,
        data: bytes | bytearray | memoryview | BinaryIO,
        *,
        timeout: float | Unset | None = UNSET,
        retry_timeout: float | Unset = UNSET,
    ) -> Any:
        """Call ``method`` with ``data`` as the raw request body; return the JSON reply.

        As :meth:`pluginkit.Client.send_file`. A file is read on the loop's
        thread, a megabyte at a time: give a pipe or a slow file a thread of
        its own, or read it into bytes first.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
            PluginProtocolError: the reply is not HTTP or not JSON, or too large.
        """
        body: bytes | FileBody
        if isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif hasattr(data, "read"):
            body = FileBody(data)
        else:
            raise TypeError(f"send_file needs bytes or a binary file, not {type(data).__name__}")
        head, reply = await self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise call_error(method, head.status, reply)
        return self._decode(method, reply)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | Unset | None = UNSET,
        retry_timeout: float | Unset = UNSET,
    ) -> AsyncIterator[AsyncBodyReader]:
        """Call ``method`` and yield the reply body as an :class:`AsyncBodyReader`.

        ``async with client.stream(...) as body:``. The timeout bounds getting
        the reply's headers and then each read. Leaving the block closes the
        stream; a connection whose body was read to the end goes back to the pool.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
        """
        body = b"" if args is None else encode(args).encode()
        status, reader = await self._roundtrip(method, body, timeout, retry_timeout, stream=True)
        if status != 200:
            try:
                data = await reader.read_up_to(self.max_response_size)
            finally:
                reader.close()
            raise call_error(method, status, data)
        try:
            yield reader
        finally:
            reader.close()

    # -- internals --

    async def _roundtrip(
        self,
        method: str,
        body: bytes | FileBody,
        timeout: float | Unset | None,
        retry_timeout: float | Unset,
        *,
        stream: bool = False,
    ) -> Any:
        """Send one request and read the reply (or its head), retrying connection failures."""
        call_timeout, budget = self._options(timeout, retry_timeout)
        head = self._request_head(method, body)
        request = head + body if isinstance(body, bytes) else head
        start = time.monotonic()
        retries = 0
        while True:
            try:
                return await self._attempt(method, request, body, call_timeout, stream)
            except ConnectFailed as failed:
                delay = self._retry_delay(failed, method, retries, start, budget, body)
                await asyncio.sleep(delay)
                retries += 1

    async def _attempt(
        self,
        method: str,
        request: bytes,
        body: bytes | FileBody,
        timeout: float | None,
        stream: bool,
    ) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        conn = self._checkout(method)
        if conn is not None:
            try:
                return await self._exchange(conn, method, request, body, deadline, timeout, stream)
            except NothingReceived:
                # The pooled connection had gone stale (the plugin closed it or
                # restarted); nothing came back, so try once on a fresh one.
                if not (isinstance(body, bytes) or body.rewind()):
                    raise ConnectFailed(
                        ConnectionResetError("connection reset"), retry=False, sent=True
                    ) from None
        conn = await self._connect(method, deadline, timeout)
        try:
            return await self._exchange(conn, method, request, body, deadline, timeout, stream)
        except NothingReceived as exc:
            raise ConnectFailed(exc.__cause__ or exc, sent=True) from None

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        request: bytes,
        body: bytes | FileBody,
        deadline: float | None,
        timeout: float | None,
        stream: bool,
    ) -> Any:
        """Send the request on ``conn`` and read the reply; ``conn`` is pooled or closed."""
        try:
            data = await self._send(conn, method, request, body, deadline, timeout)
            if not stream:
                # The common reply, whole in the first read, with a head seen before.
                reply = plain_reply(data, self.max_response_size)
                if reply is not None:
                    self._checkin(conn)
                    return PLAIN_OK, reply
            try:
                reader = HeadReader(data)
                result = reader.result
                first = result is not None  # the head came whole in the first read
                while result is None:
                    result = reader.feed(await conn.recv(RECV, deadline))
                head, rest = result
                if stream:
                    return head.status, AsyncBodyReader(self, conn, head, rest, method, timeout)
                collector = BodyCollector(head, rest, self.max_response_size)
                while not collector.done:
                    collector.feed(await conn.recv(collector.want(), deadline))
                if first:
                    remember_plain_head(data, len(data) - len(rest), head)
            except (TimeoutError, BadReply) as exc:
                raise self._reply_failed(conn, exc, method, timeout) from None
            except TooLarge as exc:
                conn.close()
                raise self._too_large_error(method, exc.size) from None
            except OSError as exc:
                conn.close()
                if stream:
                    raise self._protocol_error(method, str(exc)) from None
                raise self._protocol_error(method, f"connection broke mid-reply: {exc}") from None
        except BaseException:
            conn.close()  # cancelled, or failed: never pool a connection in an unknown state
            raise
        if head.keep_alive:
            self._checkin(conn)
        else:
            conn.close()
        return head, collector.body

    async def _send(
        self,
        conn: _Connection,
        method: str,
        request: bytes,
        body: bytes | FileBody,
        deadline: float | None,
        timeout: float | None,
    ) -> bytes:
        """Send ``request`` (and a file ``body``); return the reply's first bytes."""
        try:
            try:
                conn.write(request)
                if not isinstance(body, bytes):
                    for block in body.blocks():
                        conn.write(block)
                        await conn.drain(deadline)
            except OSError:
                # A plugin may answer (an error, typically) and close without
                # reading the whole request: its answer is the reply.
                data = conn.take_buffered()
                if not data:
                    raise
            else:
                data = await conn.recv(_FIRST_RECV, deadline)
        except (TimeoutError, BadReply) as exc:
            raise self._reply_failed(conn, exc, method, timeout) from None
        except OSError as exc:
            conn.close()
            raise NothingReceived() from exc
        if not data:
            conn.close()
            raise NothingReceived() from ConnectionResetError("connection closed by the plugin")
        return data

    def _reply_failed(
        self, conn: _Connection, exc: Exception, method: str, timeout: float | None
    ) -> PluginError:
        conn.close()
        if isinstance(exc, TimeoutError):
            return self._timeout_error(method, timeout)
        return self._protocol_error(method, str(exc))

    def _checkout(self, method: str) -> _Connection | None:
        idle = self._idle
        if idle:
            loop = asyncio.get_running_loop()
            now = time.monotonic()
            while idle:
                conn, since = idle.pop()
                if conn.loop is loop and now - since < IDLE_TIMEOUT and conn.quiet():
                    return conn
                conn.close()  # idle too long, closed by the plugin, stray bytes, other loop
        if self._closed:
            raise self._closed_error(method)
        return None

    def _checkin(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= _MAX_IDLE or not conn.quiet():
            conn.close()
            return
        self._idle.append((conn, time.monotonic()))

    def _drain(self) -> None:
        idle = self._idle
        while idle:
            conn, _ = idle.pop()
            conn.close()

    async def _dial_tcp(self, loop: asyncio.AbstractEventLoop, conn: _Connection) -> None:
        address = self._address
        sock = await _tcp_socket(loop, address.host, address.port)
        try:
            ssl = ssl_context(self.tls) if self._use_tls else None
            conn.raw = sock
            if ssl is None:
                conn.sock = sock
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=ssl,
                server_hostname=address.host if ssl is not None else None,
            )
        except BaseException:
            sock.close()
            raise

    async def _connect(
        self, method: str, deadline: float | None, timeout: float | None
    ) -> _Connection:
        if self._closed:
            raise self._closed_error(method)
        loop = asyncio.get_running_loop()
        address = self._address
        conn = _Connection(loop)
        try:
            dial = DIAL_TIMEOUT if deadline is None else min(DIAL_TIMEOUT, remaining(deadline))
            if address.unix_path is not None:
                # Connected here, without waiting: a full listen backlog
                # fails at once (EAGAIN) and is retried, as the sync client
                # and Go do (asyncio would wait for room that never comes).
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    sock.connect(address.unix_path)
                    conn.sock = conn.raw = sock
                    await loop.create_unix_connection(lambda: conn, sock=sock)
                except BaseException:
                    sock.close()
                    raise
            else:
                await asyncio.wait_for(self._dial_tcp(loop, conn), dial)
        except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct before Python 3.11
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout_error(method, timeout) from None
            raise ConnectFailed(exc) from None
        except OSError as exc:
            raise ConnectFailed(exc, retry=not is_tls_error(exc)) from None
        return conn


async def _tcp_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
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


class AsyncBodyReader:
    """The body of a streamed reply, read with ``await``; ``async for`` gives its lines."""

    def __init__(
        self,
        client: AsyncClient,
        conn: _Connection,
        head: Head,
        pending: bytes,
        method: str,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._method = method
        self._timeout = timeout  # this call's, not necessarily the client's
        self._decoder = StreamDecoder(head, pending)

    async def _fill(self, size: int) -> None:
        conn = self._conn
        if conn is None:
            raise ValueError("I/O operation on a closed stream")
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            data = await conn.recv(self._decoder.want(size), deadline)
        except TimeoutError:
            raise self._client._timeout_error(self._method, self._timeout) from None
        except OSError as exc:
            raise self._client._protocol_error(
                self._method, f"connection broke mid-reply: {exc}"
            ) from None
        try:
            self._decoder.feed(data)
        except BadReply as exc:
            raise self._client._protocol_error(self._method, str(exc)) from None

    async def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all the rest when negative); ``b""`` at the end."""
        decoder = self._decoder
        if size < 0:
            out = bytearray()
            while not decoder.finished():
                out += decoder.pending
                decoder.pending.clear()
                await self._fill(RECV)
            out += decoder.pending
            decoder.pending.clear()
            return bytes(out)
        while not decoder.pending and not decoder.finished() and size:
            await self._fill(size)
        pending = decoder.pending
        data = bytes(pending[:size])
        del pending[:size]
        return data

    async def readline(self) -> bytes:
        """Read one line, with its newline (the last one may lack it); ``b""`` at the end."""
        decoder = self._decoder
        while True:
            end = decoder.pending.find(b"\n")
            if end >= 0 or decoder.finished():
                take = end + 1 if end >= 0 else len(decoder.pending)
                line = bytes(decoder.pending[:take])
                del decoder.pending[:take]
                return line
            await self._fill(RECV)

    def __aiter__(self) -> AsyncBodyReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def read_up_to(self, limit: int) -> bytes:
        """Read to the end of the body, or to ``limit`` bytes."""
        data = bytearray()
        while len(data) < limit:
            block = await self.read(min(RECV, limit - len(data)))
            if not block:
                break
            data += block
        return bytes(data)

    def close(self) -> None:
        """Close the stream; a connection whose body was read to the end goes back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            decoder = self._decoder
            if decoder.finished() and not decoder.pending and decoder.head.keep_alive:
                self._client._checkin(conn)
            else:
                conn.close()


# A forked child must not use its parent's pooled connections (see _pool).
_async_clients: weakref.WeakSet[AsyncClient] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    for client in list(_async_clients):
        client._idle.clear()  # the parent's loop is not the child's: just forget them


os.register_at_fork(after_in_child=_forget_pools_after_fork)
