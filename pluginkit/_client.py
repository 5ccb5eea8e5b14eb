"""The protocol client: Docker's plugin HTTP+JSON calls, over unix or TCP (TLS).

A plugin call is ``POST /<Method>`` with a JSON body and a JSON reply. The
client speaks just enough HTTP/1.1 for that, directly over sockets: requests
are pre-built bytes sent with one ``sendall``, replies are parsed from one
``recv`` in the common case (status line, the three headers that matter,
``Content-Length`` or chunked bodies), and connections are kept alive and
reused. That keeps a call several times cheaper than a general HTTP library
(``http.client`` costs about twice Docker's Go client; this costs about half).

The bytes are the wire layer's (:mod:`pluginkit._wire`); this module adds the
blocking sockets. Its neighbours: :mod:`pluginkit._tls` (TLS settings),
:mod:`pluginkit._pool` (dialing and the pool), :mod:`pluginkit._bodies`
(files sent and replies streamed), :mod:`pluginkit._calls` (what the sync and
async clients share) and :mod:`pluginkit._multiplex` (many calls at once).

Retry rules follow Docker's ``pkg/plugins`` client where they are sound and
differ where they are not (see ``docs/client.md``):

* connection failures - the plugin cannot be reached, or the connection broke
  before any byte of the reply arrived - are retried with Docker's backoff
  (1 s, 2 s, 4 s ... while elapsed time plus the next delay stays below
  ``retry_timeout``; 0 disables);
* HTTP errors are never retried, and neither are timeouts: the plugin got the
  request and may have acted on it, and these calls are not idempotent.
"""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Final, TypeVar

from ._bodies import BodyReader, FileBody, read_up_to
from ._calls import DEFAULT_MAX_RESPONSE_SIZE, UNSET, ClientBase, Unset
from ._errors import PluginError
from ._multiplex import call_concurrently
from ._pool import IDLE_TIMEOUT, ConnectFailed, NothingReceived, Pool, connect, quiet, remaining
from ._tls import TLSConfig
from ._wire._address import parse_address
from ._wire._clientside import (
    MIMETYPE,
    PLAIN_HEAD_SIZE,
    PLAIN_HEADS_MAX,
    BadReply,
    BodyCollector,
    Head,
    HeadReader,
    TooLarge,
    call_error,
    parse_head,
    plain_heads,
)

# Names the client's tests and older code import from here.
from ._wire._clientside import BadReply as _BadReply  # noqa: F401
from ._wire._clientside import ChunkedDecoder as _Chunked  # noqa: F401
from ._wire._clientside import TooLarge as _TooLarge  # noqa: F401
from ._wire._clientside import complete_reply as _complete  # noqa: F401
from ._wire._clientside import parse_head as _parse_head  # noqa: F401
from ._wire._json import encode
from ._wire._retry import backoff as _backoff  # noqa: F401

__all__ = [
    "DEFAULT_MAX_RESPONSE_SIZE",
    "MIMETYPE",
    "Client",
    "TLSConfig",
    "call_concurrently",
    "parse_address",
]

_FIRST_RECV: Final = 16384  # most replies are small: do not allocate 64 KiB for each
_RECV: Final = 65536
_T = TypeVar("_T")
_MISS: Final = object()  # "take the general path" (see Client._fast_call)
_UNSET: Final = UNSET


class Client(ClientBase):
    """A connection to one plugin: ``POST /<Method>`` JSON calls, like Docker's.

    Args:
        addr: ``unix:///path.sock``, ``tcp://host:port``, ``http://host:port``
            or ``https://host:port``. The path part of a TCP URL is ignored,
            as Docker does.
        tls: TLS settings; used for ``https://`` addresses, and for ``tcp://``
            ones when given. ``https://`` without it verifies against the
            system's CAs.
        timeout: seconds each attempt of a call may take (connect, send and
            the whole reply); ``None`` waits forever, like Docker's client.
        retry_timeout: budget in seconds for retrying connection failures with
            Docker's backoff (1 s, 2 s, 4 s ... while elapsed time plus the
            next delay stays below it); 0 disables retries. HTTP errors and
            timeouts are never retried.
        max_response_size: largest reply body :meth:`call` and
            :meth:`send_file` accept, in bytes.
        backoff_unit: the first retry delay in seconds (Docker: 1); later
            delays double, up to 30 units. Tests shrink it.

    The constructor does not connect. The client is thread-safe: each call
    takes a kept-alive connection from a small pool (or opens one), and
    returns it when the reply has been read completely.
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
        self._pool = Pool()
        self._idle = self._pool.idle  # the same list: the fast path pops from it

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; later calls raise PluginConnectionError."""
        self._pool.close()

    # -- public calls --

    def call(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | Unset | None = _UNSET,
        retry_timeout: float | Unset = _UNSET,
    ) -> Any:
        """Call ``method`` with ``args`` as JSON; return the decoded JSON reply.

        Args:
            method: the plugin method, e.g. ``"VolumeDriver.Create"``.
            args: anything :func:`json.dumps` takes; ``None`` sends an empty body.
            timeout: this call's timeout instead of the client's.
            retry_timeout: this call's retry budget instead of the client's.

        Returns:
            The decoded JSON reply, or ``None`` when the body is empty.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
            PluginProtocolError: the reply is not HTTP or not JSON, or too large.
        """
        body = b"" if args is None else encode(args).encode()
        if timeout is _UNSET and retry_timeout is _UNSET and self.timeout is None and self._idle:
            result = self._fast_call(method, body)
            if result is not _MISS:
                return result
        head, data = self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise call_error(method, head.status, data)
        return self._decode(method, data)

    def _fast_call(self, method: str, body: bytes) -> Any:
        """Make the common call in few steps; return ``_MISS`` for the general path.

        Common: a pooled connection, no deadline, a small request, and a 200
        reply with a Content-Length that arrives in one recv. Plugin calls are
        latency-bound round trips, and every microsecond spent here also lets
        the plugin's threads go to sleep before the next request. Returns
        ``_MISS`` only when nothing was received (nothing to undo: the general
        path then retries on a fresh connection, the stale-connection rule);
        once a reply has started, it is finished here.
        """
        prefix = self._prefixes.get(method)
        if prefix is None or len(body) >= 16384:
            return _MISS
        try:
            sock, since, poller = self._idle.pop()
        except IndexError:
            return _MISS
        if time.monotonic() - since >= IDLE_TIMEOUT or not quiet(poller):
            sock.close()
            return _MISS
        try:
            if sock.gettimeout() is not None:
                sock.settimeout(None)
            sock.sendall(prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            data = sock.recv(_FIRST_RECV)
        except OSError:
            data = b""
        if not data:
            sock.close()
            return _MISS
        end = data.find(b"\r\n\r\n")
        if end > 0 and data.startswith(b"HTTP/1.1 200 "):
            head_bytes = data[:end]
            length = plain_heads.get(head_bytes)
            if length is None:
                # The general path's parser: one home for the rules on headers.
                try:
                    head: Head | None = parse_head(head_bytes)
                except BadReply:
                    # Malformed, or the head ended earlier, at a blank line
                    # with a bare LF: the general reader finds its real end
                    # (and says what is wrong, if anything).
                    head = None
                if (
                    head is not None
                    and head.length is not None
                    and head.keep_alive
                    and end <= PLAIN_HEAD_SIZE
                ):
                    length = head.length
                    if len(plain_heads) >= PLAIN_HEADS_MAX:
                        plain_heads.clear()
                    plain_heads[head_bytes] = length
            if (
                length is not None
                and len(data) - end - 4 == length
                and length <= self.max_response_size
            ):
                self._checkin(sock, poller)
                return self._decode(method, data[end + 4 :])
        # Anything less common (more to read, an error status...): the general reader.
        head_info, reply = self._finish_reply(sock, method, data, None, None)
        if head_info.status != 200:
            raise call_error(method, head_info.status, reply)
        return self._decode(method, reply)

    def send_file(
        self,
        method: str,
        data: bytes | bytearray | memoryview | BinaryIO,
        *,
        timeout: float | Unset | None = _UNSET,
        retry_timeout: float | Unset = _UNSET,
    ) -> Any:
        """Call ``method`` with ``data`` as the raw request body; return the JSON reply.

        A file object is streamed (with ``Content-Length`` when its size is
        known, chunked otherwise); after a connection failure it is rewound
        for the retry when it is seekable, else the call is not retried.

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
        head, reply = self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise call_error(method, head.status, reply)
        return self._decode(method, reply)

    @contextmanager
    def stream(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | Unset | None = _UNSET,
        retry_timeout: float | Unset = _UNSET,
    ) -> Iterator[io.BufferedReader[BodyReader]]:
        """Call ``method`` and yield the reply body as a readable binary stream.

        The timeout bounds getting the reply's headers and then each read.
        Leaving the block closes the stream; a connection whose body was read
        to the end goes back to the pool.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
        """
        body = b"" if args is None else encode(args).encode()
        status, reader = self._roundtrip_stream(method, body, timeout, retry_timeout)
        if status != 200:
            with reader:
                data = read_up_to(reader, self.max_response_size)
            raise call_error(method, status, data)
        buffered = io.BufferedReader(reader)
        try:
            yield buffered
        finally:
            buffered.close()

    # -- internals --

    def _roundtrip(
        self,
        method: str,
        body: bytes | FileBody,
        timeout: Any,
        retry_timeout: Any,
    ) -> tuple[Head, bytes]:
        """Send one request and read the whole reply, retrying connection failures."""
        if timeout is _UNSET and retry_timeout is _UNSET:
            timeout, retry_timeout = self.timeout, self.retry_timeout
        else:
            timeout, retry_timeout = self._options(timeout, retry_timeout)
        head_bytes = self._request_head(method, body)
        # One sendall for small requests; big bodies are not copied.
        request: bytes | tuple[bytes, bytes] = head_bytes
        if isinstance(body, bytes):
            request = head_bytes + body if len(body) < 16384 else (head_bytes, body)

        def exchange(sock: socket.socket, deadline: float | None) -> tuple[Head, bytes]:
            data, sent_whole = self._send(sock, method, request, body, deadline, timeout)
            return self._finish_reply(sock, method, data, deadline, timeout, reuse=sent_whole)

        return self._with_retries(exchange, method, body, timeout, retry_timeout)

    def _roundtrip_stream(
        self,
        method: str,
        body: bytes,
        timeout: float | Unset | None,
        retry_timeout: float | Unset,
    ) -> tuple[int, BodyReader]:
        """Send one request and read the reply's head; the body is left to read."""
        timeout, retry_timeout = self._options(timeout, retry_timeout)
        request = self._request_head(method, body) + body

        def exchange(sock: socket.socket, deadline: float | None) -> tuple[int, BodyReader]:
            data, sent_whole = self._send(sock, method, request, b"", deadline, timeout)
            try:
                head, rest = _read_head(sock, data, deadline)
                head.keep_alive = head.keep_alive and sent_whole
                # Reads of the body wait at most `timeout` each.
                sock.settimeout(timeout)
                # The reader decodes the chunks that came with the head at once.
                reader = BodyReader(self, sock, head, rest, method, timeout)
            except (BadReply, OSError) as exc:  # TimeoutError is an OSError
                raise self._reply_failed(sock, exc, method, timeout) from None
            return head.status, reader

        return self._with_retries(exchange, method, body, timeout, retry_timeout)

    def _with_retries(
        self,
        exchange: Callable[[socket.socket, float | None], _T],
        method: str,
        body: bytes | FileBody,
        timeout: float | None,
        retry_timeout: float,
    ) -> _T:
        """Run ``exchange`` on a connection, retrying connection failures (Docker's rule)."""
        start = time.monotonic()
        retries = 0
        while True:
            try:
                return self._attempt(exchange, method, body, timeout)
            except ConnectFailed as failed:
                time.sleep(self._retry_delay(failed, method, retries, start, retry_timeout, body))
                retries += 1

    def _attempt(
        self,
        exchange: Callable[[socket.socket, float | None], _T],
        method: str,
        body: bytes | FileBody,
        timeout: float | None,
    ) -> _T:
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._checkout(method)
        if sock is not None:
            try:
                return exchange(sock, deadline)
            except NothingReceived:
                # The pooled connection had gone stale (the plugin closed it or
                # restarted); nothing came back, so try once on a fresh one.
                if not (isinstance(body, bytes) or body.rewind()):
                    raise ConnectFailed(
                        ConnectionResetError("connection reset"), retry=False, sent=True
                    ) from None
        sock = self._connect(method, deadline, timeout)
        try:
            return exchange(sock, deadline)
        except NothingReceived as exc:
            raise ConnectFailed(exc.__cause__ or exc, sent=True) from None

    def _send(
        self,
        sock: socket.socket,
        method: str,
        request: bytes | tuple[bytes, bytes],
        body: bytes | FileBody,
        deadline: float | None,
        timeout: float | None,
    ) -> tuple[bytes, bool]:
        """Send ``request`` (and a file ``body``); return the reply's first bytes.

        Also returns whether the request went out whole: a plugin may answer
        (an error, typically) and close before reading all of it, and that
        connection must not be reused. Raises ``NothingReceived`` when the
        connection failed before any byte of a reply arrived.
        """
        sent_whole = True
        try:
            if deadline is None:
                if sock.gettimeout() is not None:
                    sock.settimeout(None)
            else:
                sock.settimeout(remaining(deadline))
            try:
                if isinstance(request, bytes):
                    sock.sendall(request)
                else:
                    sock.sendall(request[0])
                    sock.sendall(request[1])
                if not isinstance(body, bytes):
                    body.send(sock, deadline)
            except (BrokenPipeError, ConnectionResetError) as exc:
                sent_whole = False
                data = _early_reply(sock, exc)
            else:
                if deadline is not None:  # sending used part of the time
                    sock.settimeout(remaining(deadline))
                data = sock.recv(_FIRST_RECV)
        except (TimeoutError, BadReply) as exc:
            raise self._reply_failed(sock, exc, method, timeout) from None
        except OSError as exc:
            sock.close()
            raise NothingReceived() from exc
        if not data:
            sock.close()
            raise NothingReceived() from ConnectionResetError("connection closed by the plugin")
        return data, sent_whole

    def _finish_reply(
        self,
        sock: socket.socket,
        method: str,
        data: bytes,
        deadline: float | None,
        timeout: float | None,
        *,
        reuse: bool = True,
    ) -> tuple[Head, bytes]:
        """Read the rest of a reply that starts with ``data``; pool or close ``sock``.

        ``reuse=False``: close it in any case (the request was not sent whole).
        """
        try:
            head, reply = self._read_reply(sock, data, deadline)
        except (TimeoutError, BadReply) as exc:
            raise self._reply_failed(sock, exc, method, timeout) from None
        except TooLarge as exc:
            sock.close()
            raise self._too_large_error(method, exc.size) from None
        except OSError as exc:
            sock.close()
            raise self._protocol_error(method, f"connection broke mid-reply: {exc}") from None
        if head.keep_alive and reuse:
            self._checkin(sock)
        else:
            sock.close()
        return head, reply

    def _read_reply(
        self, sock: socket.socket, data: bytes, deadline: float | None
    ) -> tuple[Head, bytes]:
        """Read a whole reply whose first bytes are ``data``; linear in its size."""
        head, rest = _read_head(sock, data, deadline)
        collector = BodyCollector(head, rest, self.max_response_size)
        while not collector.done:
            if deadline is not None:
                sock.settimeout(remaining(deadline))
            collector.feed(sock.recv(collector.want()))
        return head, collector.body

    def _reply_failed(
        self, sock: socket.socket, exc: Exception, method: str, timeout: float | None
    ) -> PluginError:
        """Close ``sock`` after a failed exchange; the error to raise for ``exc``.

        A timeout is the call's deadline passing; anything else (a malformed
        reply, a broken connection) is a protocol error naming ``exc``.
        """
        sock.close()
        return self._reply_error(method, timeout, exc)

    def _checkout(self, method: str) -> socket.socket | None:
        sock = self._pool.checkout()
        if sock is None and self._pool.closed:
            raise self._closed_error(method)
        return sock

    def _checkin(self, sock: socket.socket, poller: select.poll | None = None) -> None:
        self._pool.checkin(sock, poller)

    def _connect(self, method: str, deadline: float | None, timeout: float | None) -> socket.socket:
        if self._pool.closed:
            raise self._closed_error(method)
        try:
            return connect(self._address, self.tls, self._use_tls, deadline)
        except TimeoutError:
            raise self._timeout_error(method, timeout) from None


def _read_head(sock: socket.socket, data: bytes, deadline: float | None) -> tuple[Head, bytes]:
    """Read a reply's head (after any interim 1xx replies) starting with ``data``.

    Returns the parsed head and the bytes after it.
    """
    reader = HeadReader(data)
    result = reader.result
    while result is None:
        if deadline is not None:
            sock.settimeout(remaining(deadline))
        result = reader.feed(sock.recv(_RECV))
    return result


def _early_reply(sock: socket.socket, exc: OSError) -> bytes:
    """Read the reply of a plugin that broke the connection we were sending on.

    A plugin may answer (an error, typically) and close without reading the
    whole request; its reply is still waiting in our receive buffer. Raises
    ``exc`` when nothing came.
    """
    try:
        data = sock.recv(_FIRST_RECV)
    except OSError:
        data = b""
    if not data:
        raise exc
    return data
