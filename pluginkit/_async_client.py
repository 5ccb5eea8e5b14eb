"""The asyncio protocol client: :class:`AsyncClient`, the twin of :class:`~pluginkit.Client`.

Same constructor, calls, retry rule, timeouts, errors and error texts as the
sync client (both build on :mod:`pluginkit._calls` and the wire layer); the
I/O is asyncio's, on the running loop, without threads; each connection is a
:class:`pluginkit._async_conn.Connection`. Kept-alive connections are pooled per client
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

from ._async_conn import Connection, tcp_socket
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
_MISS: Final = object()  # "take the general path" (see AsyncClient._fast_call)
# Idle connections kept per client. More than the sync client's 16: one loop
# runs many calls at once, and closing what did not fit would make the next
# burst of calls connect again.
_MAX_IDLE: Final = 4 * MAX_IDLE


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
        self._idle: list[tuple[Connection, float]] = []
        self._closed = False
        _async_clients.add(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; later calls raise PluginConnectionError.

        May be called from any thread: connections of a loop running in
        another thread are closed by that loop.
        """
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
        if timeout is UNSET and retry_timeout is UNSET and self.timeout is None and self._idle:
            result = await self._fast_call(method, body)
            if result is not _MISS:
                return result
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
        conn: Connection,
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
        except BaseException:
            conn.close()  # cancelled, or failed: never pool a connection in an unknown state
            raise
        return await self._read(conn, data, method, deadline, timeout, stream)

    async def _read(
        self,
        conn: Connection,
        data: bytes,
        method: str,
        deadline: float | None,
        timeout: float | None,
        stream: bool,
    ) -> Any:
        """Read the reply that starts with ``data``; ``conn`` is pooled or closed."""
        try:
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

    async def _fast_call(self, method: str, body: bytes) -> Any:
        """Make the common call in few steps; ``_MISS`` when the general path must.

        Common: a pooled connection of this loop, no deadline, a small
        request. ``_MISS`` only when nothing was received (the general path
        then retries on a fresh connection, the stale-connection rule); a
        reply that has started is finished here. As the sync client's.
        """
        prefix = self._prefixes.get(method)
        if prefix is None or len(body) >= 16384:
            return _MISS
        try:
            conn, since = self._idle.pop()
        except IndexError:
            return _MISS
        if (
            conn.loop is not asyncio.get_running_loop()
            or time.monotonic() - since >= IDLE_TIMEOUT
            or not conn.quiet()
        ):
            conn.close()
            return _MISS
        try:
            conn.write(prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            data = await conn.recv(_FIRST_RECV, None)
        except OSError:
            data = b""
        except BaseException:
            conn.close()
            raise
        if not data:
            conn.close()
            return _MISS
        head, reply = await self._read(conn, data, method, None, None, False)
        if head.status != 200:
            raise call_error(method, head.status, reply)
        return self._decode(method, reply)

    async def _send(
        self,
        conn: Connection,
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
        self, conn: Connection, exc: Exception, method: str, timeout: float | None
    ) -> PluginError:
        conn.close()
        return self._reply_error(method, timeout, exc)

    def _checkout(self, method: str) -> Connection | None:
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

    def _checkin(self, conn: Connection) -> None:
        if self._closed or len(self._idle) >= _MAX_IDLE or not conn.quiet():
            conn.close()
            return
        self._idle.append((conn, time.monotonic()))

    def _drain(self) -> None:
        idle = self._idle
        while idle:
            conn, _ = idle.pop()
            conn.close()

    async def _dial_tcp(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        address = self._address
        sock = await tcp_socket(loop, address.host, address.port)
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
    ) -> Connection:
        if self._closed:
            raise self._closed_error(method)
        loop = asyncio.get_running_loop()
        address = self._address
        conn = Connection(loop)
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


class AsyncBodyReader:
    """The body of a streamed reply, read with ``await``; ``async for`` gives its lines."""

    def __init__(
        self,
        client: AsyncClient,
        conn: Connection,
        head: Head,
        pending: bytes,
        method: str,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._conn: Connection | None = conn
        self._method = method
        self._timeout = timeout  # this call's, not necessarily the client's
        self._decoder = StreamDecoder(head, pending)

    async def _fill(self, size: int) -> None:
        conn = self._conn
        if conn is None:
            raise ValueError("I/O operation on a closed stream")
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            self._decoder.feed(await conn.recv(self._decoder.want(size), deadline))
        except (OSError, BadReply) as exc:
            raise self._client._reply_error(self._method, self._timeout, exc) from None

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
