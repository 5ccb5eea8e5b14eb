"""The protocol client: Docker's plugin HTTP+JSON calls, over unix or TCP (TLS).

A plugin call is ``POST /<Method>`` with a JSON body and a JSON reply. The
client speaks just enough HTTP/1.1 for that, directly over sockets: requests
are pre-built bytes sent with one ``sendall``, replies are parsed from one
``recv`` in the common case (status line, the three headers that matter,
``Content-Length`` or chunked bodies), and connections are kept alive and
reused. That keeps a call several times cheaper than a general HTTP library
(``http.client`` costs about twice Docker's Go client; this costs about half).

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

import functools
import io
import json
import json.encoder
import json.scanner
import logging
import os
import re
import select
import socket
import ssl
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Final, TypeVar
from urllib.parse import urlsplit

import attrs

from ._errors import (
    InvalidConfigError,
    PluginCallError,
    PluginConnectionError,
    PluginError,
    PluginProtocolError,
    PluginTimeoutError,
    _json_error_reason,
)

__all__ = ["DEFAULT_MAX_RESPONSE_SIZE", "MIMETYPE", "Client", "TLSConfig"]

log = logging.getLogger("pluginkit.client")

#: The ``Accept`` header the Docker engine sends on every plugin call.
MIMETYPE: Final = "application/vnd.docker.plugins.v1.2+json"
#: The largest reply body :meth:`Client.call` and :meth:`Client.send_file` accept.
DEFAULT_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024

# The Host header for unix sockets: Docker's dummy host (a socket path is not
# a valid host name, and Go >= 1.20.6 rejects it).
_UNIX_HOST: Final = "plugin.moby.localhost"
_MAX_HEAD: Final = 64 * 1024  # status line + headers
_RECV: Final = 65536
_MULTIPLEX_MAX: Final = 1024 * 1024  # replies to call_concurrently (activations)
_FIRST_RECV: Final = 16384  # most replies are small: do not allocate 64 KiB for each
_DIAL_TIMEOUT: Final = 10.0  # Docker's (go-connections) dial timeout
_IDLE_TIMEOUT: Final = 30.0  # Docker's IdleConnTimeout: drop older pooled connections
_MAX_IDLE: Final = 16
_UNIX_PATH_MAX: Final = 107
_BACKOFF_CAP: Final = 30


# JSON in the hot path. json.dumps/json.loads rebuild their C encoder and run
# Python-level checks on every call; a plugin call is a round trip where each
# microsecond of client work counts, so use the C encoder and scanner built
# once (same output as json.dumps/json.loads with default arguments; the
# encoder skips the circular-reference check, a cycle gives RecursionError).
_decoder = json.JSONDecoder()
_decode_json = _decoder.decode


def _unserializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Private CPython helpers, absent from typeshed (and from some Pythons).
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_make_scanner: Any = getattr(json.scanner, "c_make_scanner", None)
_c_encoder = (
    _c_make_encoder(
        None,
        _unserializable,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    if _c_make_encoder is not None
    else None
)
_c_scan = _c_make_scanner(_decoder) if _c_make_scanner is not None else None


def _encode(value: Any) -> str:
    """``json.dumps(value)``, faster."""
    if _c_encoder is None:  # pragma: no cover - Pythons without the C accelerator
        return json.dumps(value)
    return "".join(_c_encoder(value, 0))


def _loads(text: str) -> Any:
    """``json.loads(text)``, faster for the usual reply (no leading whitespace)."""
    if _c_scan is not None:
        try:
            value, end = _c_scan(text, 0)
        except StopIteration:
            pass  # leading whitespace or invalid: the full decoder decides
        else:
            # Only JSON's four whitespace characters may follow: str.isspace
            # would also take others ("\x0b", "\xa0") that json.loads refuses.
            if end == len(text) or not text[end:].strip(" \t\n\r"):
                return value
    return _decode_json(text)


class _Unset:
    """Marks a per-call option that was not given (``None`` means "no timeout")."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()
_T = TypeVar("_T")
_MISS: Final = object()  # "take the general path" (see Client._fast_call)


# -- TLS and addresses ------------------------------------------------------


@attrs.frozen
class TLSConfig:
    """TLS settings for ``https://`` plugins, as in Docker's spec ``.json`` files.

    Attributes:
        ca_file: PEM bundle of extra certificate authorities (added to the
            system's, as Docker does).
        cert_file: PEM client certificate (may hold the key too).
        key_file: PEM key of the client certificate.
        insecure_skip_verify: do not verify the server's certificate or name.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """Build the :class:`ssl.SSLContext` these settings describe.

        Raises:
            InvalidConfigError: a file is missing or does not hold what it should.
        """
        return _ssl_context(self)


@functools.lru_cache(maxsize=32)
def _ssl_context(config: TLSConfig | None) -> ssl.SSLContext:
    # Cached: building a context loads the system's CAs (milliseconds), and
    # many plugins share one configuration.
    context = ssl.create_default_context()
    if config is None:
        return context
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.ca_file:
        try:
            context.load_verify_locations(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(
                f"cannot load CA file {config.ca_file}: {exc}", path=config.ca_file
            ) from exc
    if config.key_file and not config.cert_file:
        raise InvalidConfigError("TLS key_file given without cert_file", field="cert_file")
    if config.cert_file:
        try:
            context.load_cert_chain(config.cert_file, config.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(
                f"cannot load client certificate {config.cert_file}: {exc}",
                path=config.cert_file,
            ) from exc
    return context


@attrs.frozen
class _Address:
    """Where a plugin listens, resolved from its address URL."""

    unix_path: str | None
    host: str
    port: int
    tls: bool
    host_header: str


def parse_address(addr: str) -> _Address:
    """Parse a plugin address (``unix://``, ``tcp://``, ``http://``, ``https://``).

    Raises:
        InvalidConfigError: the address has no or an unknown scheme, no host or
            port, or a unix socket path that is too long.
    """
    if not isinstance(addr, str):
        raise TypeError(f"plugin address must be a str, not {type(addr).__name__}")
    scheme, sep, rest = addr.partition("://")
    if not sep:
        raise InvalidConfigError(
            f"invalid plugin address {addr!r}: no scheme"
            " (expected unix://, tcp://, http:// or https://)"
        )
    scheme = scheme.lower()
    if scheme == "unix":
        # Everything after "unix://" is the path ("unix:///run/x.sock"); Go
        # would read "unix://var/x.sock" as host "var", we read it as the
        # relative path the writer meant.
        if not rest:
            raise InvalidConfigError(f"invalid plugin address {addr!r}: empty socket path")
        if len(os.fsencode(rest)) > _UNIX_PATH_MAX:
            raise InvalidConfigError(f"unix socket path {rest!r} is too long")
        return _Address(rest, "", 0, tls=False, host_header=_UNIX_HOST)
    if scheme not in ("tcp", "http", "https"):
        raise InvalidConfigError(
            f"invalid plugin address {addr!r}: unknown scheme {scheme!r}"
            " (expected unix, tcp, http or https)"
        )
    try:
        parts = urlsplit(addr)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidConfigError(f"invalid plugin address {addr!r}: {exc}") from exc
    if not host:
        raise InvalidConfigError(f"invalid plugin address {addr!r}: no host")
    if port is None:
        if scheme == "tcp":
            raise InvalidConfigError(f"invalid plugin address {addr!r}: no port")
        port = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return _Address(None, host, port, tls=scheme == "https", host_header=f"{shown}:{port}")


# -- HTTP/1.1 parsing --------------------------------------------------------


class _BadReply(Exception):
    """The reply broke HTTP; turned into PluginProtocolError by the caller."""


# Heads of plain replies already parsed: head bytes -> Content-Length, for
# 200 keep-alive replies framed by Content-Length. A plugin sends the same
# head again and again (only its Date changes, once a second), and parsing
# it is the largest piece of client work in a call; the parse is a pure
# function of the bytes, so a repeat needs only a dict lookup. Cleared when
# full rather than evicted one by one: a few entries per second are live.
# Only small heads are kept: a plugin sending large ones must not make every
# client hold megabytes.
_plain_heads: dict[bytes, int] = {}
_PLAIN_HEADS_MAX: Final = 256
_PLAIN_HEAD_SIZE: Final = 1024


class _Head:
    """What the status line and headers say about the body that follows."""

    __slots__ = ("chunked", "keep_alive", "length", "status")

    def __init__(self, status: int, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.status = status
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


def _heads(data: bytes | bytearray) -> tuple[_Head | None, int]:
    """Parse the reply heads at the start of ``data``, up to the final one.

    Returns the final head and the offset of its body, or ``None`` and the
    offset where the first incomplete head starts. Interim 1xx replies (not
    101, which ends the exchange) are parsed like any head, so a malformed
    one is refused, and skipped. Lines may end with a bare LF: Go's and
    Python's clients accept that, so plugins may send it.
    """
    start = 0
    while True:
        blank = _BLANK_LINE.search(data, start)
        if blank is None:
            return None, start
        head = _parse_head(bytes(data[start : blank.start()]))
        start = blank.end()
        if not (100 <= head.status < 200 and head.status != 101):
            return head, start


def _head_too_large(interim: int) -> _BadReply:
    """Build the error for heads over ``_MAX_HEAD``; ``interim``: bytes of 1xx replies in them."""
    if interim:
        return _BadReply(
            f"the reply head and the interim 1xx replies before it are larger than"
            f" {_MAX_HEAD} bytes"
        )
    return _BadReply(_HEAD_TOO_LARGE)


_BLANK_LINE: Final = re.compile(rb"\r?\n\r?\n")
# RFC 9110 token characters: what a header name is made of.
_TOKEN: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX: Final = b"0123456789abcdefABCDEF"
_MAX_CHUNK_LINE: Final = 4096  # a chunk size line, with its extension (Go's limit)
_MAX_CHUNK_OVERHEAD: Final = 64 * 1024  # all chunk extensions and trailers of a reply
_HEAD_TOO_LARGE: Final = f"the reply head is larger than {_MAX_HEAD} bytes (no blank line ends it)"


def _show(data: bytes) -> str:
    """Quote untrusted reply bytes for an error message: repr'd, at most 80 of them."""
    return repr(data[:80].decode("latin-1")) + ("..." if len(data) > 80 else "")


def _bad_line(line: bytes) -> _BadReply:
    """Build the error for a header line that is not ``name: value``."""
    name, colon, _ = line.partition(b":")
    if line[:1] in (b" ", b"\t"):
        reason = "obsolete line folding is not supported"
    elif not colon:
        reason = "no colon"
    elif name and name.rstrip(b" \t") != name:
        reason = "whitespace before the colon"
    else:
        reason = "invalid header name"
    return _BadReply(f"malformed header line {_show(line)}: {reason}")


def _parse_head(head: bytes) -> _Head:
    """Parse a status line and headers (without the blank line after them).

    Strict where leniency would misread the body's framing (Go's net/http
    refuses the same replies): every header line must be ``token: value``
    (whitespace before the colon or obsolete line folding would hide a
    ``Content-Length`` and leave the body to run until the plugin closes);
    Content-Length must be plain digits, repeated only with one value;
    Transfer-Encoding, once, must be ``chunked``, and only in HTTP/1.1.
    """
    if head.count(b"\n") != head.count(b"\r\n"):  # some lines end with a bare LF
        head = head.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if head[:7] != b"HTTP/1." or head[8:9] != b" " or not head[9:12].isdigit():
        raise _BadReply(f"not an HTTP/1.x reply: {head[:40]!r}")
    status = int(head[9:12])
    lines = head.split(b"\r\n")
    del lines[0]
    length_text: bytes | None = None
    encoding: bytes | None = None
    connection = b""
    for line in lines:
        name, colon, value = line.partition(b":")
        # One C-level call checks the name: deleting its token bytes leaves
        # nothing. A folded line starts with a space, not a token byte.
        if not colon or not name or name.translate(None, _TOKEN):
            raise _bad_line(line)
        if len(name) not in (10, 14, 17):
            continue  # not a header that frames the body
        name = name.lower()
        if name == b"content-length":
            value = value.strip(b" \t")
            if length_text is None:
                length_text = value
            elif value != length_text:  # compared before parsing, as Go does
                raise _BadReply(
                    "multiple Content-Length headers with different values:"
                    f" {_show(length_text)} and {_show(value)}"
                )
        elif name == b"transfer-encoding":
            if encoding is not None:
                raise _BadReply("multiple Transfer-Encoding headers")
            encoding = value.strip(b" \t")
        elif name == b"connection":
            connection += b"," + value.lower()
    http10 = head[7:8] == b"0"
    if http10 and encoding is not None:
        # HTTP/1.0 has no Transfer-Encoding: a client must treat such a
        # message's framing as faulty (RFC 9112 6.1), Content-Length or not.
        raise _BadReply(
            f"Transfer-Encoding {_show(encoding)} in an HTTP/1.0 reply"
            " (its framing cannot be trusted, RFC 9112 6.1)"
        )
    length = None
    if length_text is not None:
        if not length_text.isdigit():  # bytes.isdigit: ASCII digits only, no sign
            raise _BadReply(f"bad Content-Length {_show(length_text)}")
        length = int(length_text)
    if encoding is not None and encoding.lower() != b"chunked":
        raise _BadReply(f"unsupported Transfer-Encoding {_show(encoding)}")
    chunked = encoding is not None
    # HTTP/1.0 closes unless asked otherwise; HTTP/1.1 keeps alive unless told.
    keep_alive = b"keep-alive" in connection if http10 else b"close" not in connection
    if status in (204, 304) or 100 <= status < 200:
        length, chunked = 0, False
    if status == 101:
        keep_alive = False  # the connection speaks another protocol now
    if chunked:
        if length is not None:
            # Both framings: chunked wins (RFC 9112 6.3), but such a reply
            # may be a smuggling attempt: do not trust what follows it.
            keep_alive = False
        length = None
    elif length is None:
        keep_alive = False  # body runs until the server closes
    return _Head(status, length, chunked, keep_alive)


class _Chunked:
    """Incremental decoder of a chunked body; ``out`` collects decoded bytes.

    Chunk extensions and trailers are skipped, but counted: together they may
    not pass ``_MAX_CHUNK_OVERHEAD`` bytes, or a plugin could keep a call
    reading (and a buffer growing) without ever sending body bytes.
    """

    __slots__ = ("_buf", "_need", "_overhead", "done", "out")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # -1: a size line is next; -2: trailers; >= 0: data then CRLF
        self._overhead = 0  # bytes of chunk extensions and trailers so far
        self.out = bytearray()
        self.done = False

    def _add_overhead(self, size: int) -> None:
        self._overhead += size
        if self._overhead > _MAX_CHUNK_OVERHEAD:
            raise _BadReply(
                f"chunk extensions and trailers are larger than {_MAX_CHUNK_OVERHEAD} bytes"
            )

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume ``data``; return whatever follows the end of the body."""
        buf = self._buf
        buf += data
        while not self.done:
            if self._need == -1:
                end = buf.find(b"\r\n", 0, _MAX_CHUNK_LINE + 2)
                if end < 0:
                    if len(buf) >= _MAX_CHUNK_LINE + 2:
                        raise _BadReply(f"chunk size line longer than {_MAX_CHUNK_LINE} bytes")
                    return b""
                line = bytes(buf[:end])
                del buf[: end + 2]
                digits, semicolon, extension = line.partition(b";")
                if semicolon:
                    self._add_overhead(len(extension))
                digits = digits.strip(b" \t")
                # int(x, 16) alone would take "0x1f", "+5", "1_0" and spaces.
                if not 0 < len(digits) <= 16 or digits.translate(None, _HEX):
                    raise _BadReply(f"bad chunk size line {_show(line)}")
                size = int(digits, 16)
                self._need = size if size else -2
            elif self._need == -2:
                end = buf.find(b"\r\n")
                if end < 0:
                    if self._overhead + len(buf) > _MAX_CHUNK_OVERHEAD:
                        self._add_overhead(len(buf))
                    return b""
                self._add_overhead(end)
                del buf[: end + 2]
                if end == 0:
                    self.done = True
            else:
                if len(buf) < self._need + 2:
                    # Move what we have of this chunk out now: big chunks must
                    # not be re-buffered on every recv.
                    take = min(len(buf), self._need)
                    self.out += buf[:take]
                    del buf[:take]
                    self._need -= take
                    if self._need or len(buf) < 2:
                        return b""
                else:
                    self.out += buf[: self._need]
                    del buf[: self._need]
                    self._need = 0
                if buf[:2] != b"\r\n":
                    raise _BadReply("chunk not followed by CRLF")
                del buf[:2]
                self._need = -1
        rest = bytes(buf)
        buf.clear()
        return rest


def _complete(data: bytes, eof: bool, limit: int) -> tuple[_Head, bytes] | None:
    """Parse a whole reply held in ``data``; ``None`` while more is needed."""
    head, end = _heads(data)
    if head is None:
        if len(data) > _MAX_HEAD:
            raise _head_too_large(end)
        if eof:
            raise _BadReply("connection closed in the middle of the reply headers")
        return None
    body = data[end:]
    if head.length is not None:
        if head.length > limit:
            raise _TooLarge(head.length)
        if len(body) < head.length:
            if eof:
                raise _BadReply(f"reply truncated: got {len(body)} of {head.length} bytes")
            return None
        if len(body) > head.length:
            head.keep_alive = False
        return head, body[: head.length]
    if head.chunked:
        decoder = _Chunked()
        rest = decoder.feed(body)
        if len(decoder.out) > limit:
            raise _TooLarge(len(decoder.out))
        if not decoder.done:
            if eof:
                raise _BadReply("reply truncated in the middle of a chunked body")
            return None
        if rest:
            head.keep_alive = False
        return head, bytes(decoder.out)
    if len(body) > limit:
        raise _TooLarge(len(body))
    return (head, body) if eof else None


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


# -- the client ---------------------------------------------------------------


class _NothingReceived(Exception):
    """The connection failed before any byte of the reply arrived."""


class _ConnectFailed(Exception):
    """The plugin could not be reached; retried with backoff.

    ``sent``: the connection broke after (part of) the request went out, so
    the plugin may have received it.
    """

    def __init__(self, cause: BaseException, *, retry: bool = True, sent: bool = False) -> None:
        self.cause = cause
        self.retry = retry
        self.sent = sent


class _FileBody:
    """A request body read from a binary file object (``send_file``)."""

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

    def send(self, sock: socket.socket, deadline: float | None) -> None:
        """Send the file on ``sock``, all of it by ``deadline``."""
        self.consumed = True
        read = self.file.read

        def sendall(data: bytes) -> None:
            if deadline is not None:  # each sendall would get the whole timeout
                sock.settimeout(_remaining(deadline))
            sock.sendall(data)

        if self.length is not None:
            left = self.length
            while left > 0:
                block = read(min(left, 1 << 20))
                if not block:
                    raise _BadReply("the file got shorter while it was being sent")
                sendall(block)
                left -= len(block)
            return
        while True:
            block = read(1 << 20)
            if not block:
                break
            sendall(b"%x\r\n%b\r\n" % (len(block), block))
        sendall(b"0\r\n\r\n")


class Client:
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
        self._address = parse_address(addr)
        if tls is not None and not isinstance(tls, TLSConfig):
            raise TypeError(f"tls must be a TLSConfig, not {type(tls).__name__}")
        _check_timeout("timeout", timeout)
        _check_retry_timeout(retry_timeout)
        if max_response_size <= 0:
            raise ValueError(f"max_response_size must be > 0, not {max_response_size!r}")
        if not backoff_unit > 0:
            raise ValueError(f"backoff_unit must be > 0, not {backoff_unit!r}")
        self.addr = addr
        self.tls = tls
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.max_response_size = max_response_size
        self.backoff_unit = backoff_unit
        self._use_tls = self._address.tls or (tls is not None and self._address.unix_path is None)
        self._host_line = (
            _UNIX_HOST_LINE
            if self._address.unix_path is not None
            else b"Host: " + self._address.host_header.encode("idna") + b"\r\n"
        )
        self._prefixes: dict[str, bytes] = {}
        # Idle connections: (socket, when it came back, a poll object watching it).
        self._idle: list[tuple[socket.socket, float, select.poll]] = []
        self._closed = False
        _clients.add(self)

    def __repr__(self) -> str:
        return f"Client({self.addr!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; later calls raise PluginConnectionError."""
        self._closed = True
        self._drain()

    # -- public calls --

    def call(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | _Unset | None = _UNSET,
        retry_timeout: float | _Unset = _UNSET,
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
        body = b"" if args is None else _encode(args).encode()
        if timeout is _UNSET and retry_timeout is _UNSET and self.timeout is None and self._idle:
            result = self._fast_call(method, body)
            if result is not _MISS:
                return result
        head, data = self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise _call_error(method, head.status, data)
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
        if time.monotonic() - since >= _IDLE_TIMEOUT or not _quiet(poller):
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
            length = _plain_heads.get(head_bytes)
            if length is None:
                # The general path's parser: one home for the rules on headers.
                try:
                    head: _Head | None = _parse_head(head_bytes)
                except _BadReply:
                    # Malformed, or the head ended earlier, at a blank line
                    # with a bare LF: the general reader finds its real end
                    # (and says what is wrong, if anything).
                    head = None
                if (
                    head is not None
                    and head.length is not None
                    and head.keep_alive
                    and end <= _PLAIN_HEAD_SIZE
                ):
                    length = head.length
                    if len(_plain_heads) >= _PLAIN_HEADS_MAX:
                        _plain_heads.clear()
                    _plain_heads[head_bytes] = length
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
            raise _call_error(method, head_info.status, reply)
        return self._decode(method, reply)

    def send_file(
        self,
        method: str,
        data: bytes | bytearray | memoryview | BinaryIO,
        *,
        timeout: float | _Unset | None = _UNSET,
        retry_timeout: float | _Unset = _UNSET,
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
        body: bytes | _FileBody
        if isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif hasattr(data, "read"):
            body = _FileBody(data)
        else:
            raise TypeError(f"send_file needs bytes or a binary file, not {type(data).__name__}")
        head, reply = self._roundtrip(method, body, timeout, retry_timeout)
        if head.status != 200:
            raise _call_error(method, head.status, reply)
        return self._decode(method, reply)

    @contextmanager
    def stream(
        self,
        method: str,
        args: Any = None,
        *,
        timeout: float | _Unset | None = _UNSET,
        retry_timeout: float | _Unset = _UNSET,
    ) -> Iterator[io.BufferedReader[_BodyReader]]:
        """Call ``method`` and yield the reply body as a readable binary stream.

        The timeout bounds getting the reply's headers and then each read.
        Leaving the block closes the stream; a connection whose body was read
        to the end goes back to the pool.

        Raises:
            PluginCallError: the plugin answered with a status other than 200.
            PluginConnectionError: the plugin could not be reached in time.
            PluginTimeoutError: the timeout passed.
        """
        body = b"" if args is None else _encode(args).encode()
        status, reader = self._roundtrip_stream(method, body, timeout, retry_timeout)
        if status != 200:
            with reader:
                data = _read_up_to(reader, self.max_response_size)
            raise _call_error(method, status, data)
        buffered = io.BufferedReader(reader)
        try:
            yield buffered
        finally:
            buffered.close()

    # -- internals --

    def _decode(self, method: str, data: bytes) -> Any:
        if not data:
            return None
        try:
            # JSON on the wire is UTF-8 (RFC 8259; Go's decoder assumes it too).
            return _loads(data.decode())
        except (ValueError, RecursionError) as exc:
            raise PluginProtocolError(
                f"{method}: reply from plugin at {self.addr} is not JSON: {_json_error_reason(exc)}"
                f" (reply starts with {data[:60]!r})"
            ) from None

    def _prefix(self, method: str) -> bytes:
        prefix = self._prefixes.get(method)
        if prefix is None:
            prefix = _request_prefix(method, self._host_line)
            if len(self._prefixes) < 256:
                self._prefixes[method] = prefix
        return prefix

    def _request_head(self, method: str, body: bytes | _FileBody) -> bytes:
        prefix = self._prefix(method)
        if isinstance(body, bytes):
            return prefix + b"Content-Length: %d\r\n\r\n" % len(body)
        if body.length is not None:
            return prefix + b"Content-Length: %d\r\n\r\n" % body.length
        return prefix + b"Transfer-Encoding: chunked\r\n\r\n"

    def _options(
        self, timeout: float | _Unset | None, retry_timeout: float | _Unset
    ) -> tuple[float | None, float]:
        if isinstance(timeout, _Unset):
            timeout = self.timeout
        else:
            _check_timeout("timeout", timeout)
        if isinstance(retry_timeout, _Unset):
            retry_timeout = self.retry_timeout
        else:
            _check_retry_timeout(retry_timeout)
        return timeout, retry_timeout

    def _roundtrip(
        self,
        method: str,
        body: bytes | _FileBody,
        timeout: Any,
        retry_timeout: Any,
    ) -> tuple[_Head, bytes]:
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

        def exchange(sock: socket.socket, deadline: float | None) -> tuple[_Head, bytes]:
            data, sent_whole = self._send(sock, method, request, body, deadline, timeout)
            return self._finish_reply(sock, method, data, deadline, timeout, reuse=sent_whole)

        return self._with_retries(exchange, method, body, timeout, retry_timeout)

    def _roundtrip_stream(
        self,
        method: str,
        body: bytes,
        timeout: float | _Unset | None,
        retry_timeout: float | _Unset,
    ) -> tuple[int, _BodyReader]:
        """Send one request and read the reply's head; the body is left to read."""
        timeout, retry_timeout = self._options(timeout, retry_timeout)
        request = self._request_head(method, body) + body

        def exchange(sock: socket.socket, deadline: float | None) -> tuple[int, _BodyReader]:
            data, sent_whole = self._send(sock, method, request, b"", deadline, timeout)
            try:
                head, rest = _read_head(sock, data, deadline)
                head.keep_alive = head.keep_alive and sent_whole
                # Reads of the body wait at most `timeout` each.
                sock.settimeout(timeout)
                # The reader decodes the chunks that came with the head at once.
                reader = _BodyReader(self, sock, head, rest, method, timeout)
            except (_BadReply, OSError) as exc:  # TimeoutError is an OSError
                raise self._reply_failed(sock, exc, method, timeout) from None
            return head.status, reader

        return self._with_retries(exchange, method, body, timeout, retry_timeout)

    def _with_retries(
        self,
        exchange: Callable[[socket.socket, float | None], _T],
        method: str,
        body: bytes | _FileBody,
        timeout: float | None,
        retry_timeout: float,
    ) -> _T:
        """Run ``exchange`` on a connection, retrying connection failures (Docker's rule)."""
        start = time.monotonic()
        retries = 0
        while True:
            try:
                return self._attempt(exchange, method, body, timeout)
            except _ConnectFailed as failed:
                self._before_retry(failed, method, retries, start, retry_timeout, body)
                retries += 1

    def _before_retry(
        self,
        failed: _ConnectFailed,
        method: str,
        retries: int,
        start: float,
        retry_timeout: float,
        body: bytes | _FileBody,
    ) -> None:
        """Sleep before the next attempt, or raise when Docker's rule says stop."""
        delay = _backoff(retries) * self.backoff_unit
        elapsed = time.monotonic() - start
        rewound = isinstance(body, bytes) or body.rewind()
        if failed.sent:
            what = f"the connection to plugin at {self.addr} broke before any reply"
        else:
            what = f"cannot connect to plugin at {self.addr}"
        if not failed.retry or not rewound or elapsed + delay >= retry_timeout:
            detail = f" (gave up after {retries + 1} attempts)" if retries else ""
            raise PluginConnectionError(
                f"{method}: {what}: {_reason(failed.cause)}{detail}"
            ) from failed.cause
        # Docker re-sends in this case too (its TestFailOnce); say so, since
        # the plugin may have acted on the request it did not answer.
        again = "sending the request again" if failed.sent else "retrying"
        log.warning("%s: %s: %s, %s in %g s", method, what, _reason(failed.cause), again, delay)
        time.sleep(delay)

    def _attempt(
        self,
        exchange: Callable[[socket.socket, float | None], _T],
        method: str,
        body: bytes | _FileBody,
        timeout: float | None,
    ) -> _T:
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._checkout(method)
        if sock is not None:
            try:
                return exchange(sock, deadline)
            except _NothingReceived:
                # The pooled connection had gone stale (the plugin closed it or
                # restarted); nothing came back, so try once on a fresh one.
                if not (isinstance(body, bytes) or body.rewind()):
                    raise _ConnectFailed(
                        ConnectionResetError("connection reset"), retry=False, sent=True
                    ) from None
        sock = self._connect(method, deadline, timeout)
        try:
            return exchange(sock, deadline)
        except _NothingReceived as exc:
            raise _ConnectFailed(exc.__cause__ or exc, sent=True) from None

    def _send(
        self,
        sock: socket.socket,
        method: str,
        request: bytes | tuple[bytes, bytes],
        body: bytes | _FileBody,
        deadline: float | None,
        timeout: float | None,
    ) -> tuple[bytes, bool]:
        """Send ``request`` (and a file ``body``); return the reply's first bytes.

        Also returns whether the request went out whole: a plugin may answer
        (an error, typically) and close before reading all of it, and that
        connection must not be reused. Raises ``_NothingReceived`` when the
        connection failed before any byte of a reply arrived.
        """
        sent_whole = True
        try:
            if deadline is None:
                if sock.gettimeout() is not None:
                    sock.settimeout(None)
            else:
                sock.settimeout(_remaining(deadline))
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
                    sock.settimeout(_remaining(deadline))
                data = sock.recv(_FIRST_RECV)
        except (TimeoutError, _BadReply) as exc:
            raise self._reply_failed(sock, exc, method, timeout) from None
        except OSError as exc:
            sock.close()
            raise _NothingReceived() from exc
        if not data:
            sock.close()
            raise _NothingReceived() from ConnectionResetError("connection closed by the plugin")
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
    ) -> tuple[_Head, bytes]:
        """Read the rest of a reply that starts with ``data``; pool or close ``sock``.

        ``reuse=False``: close it in any case (the request was not sent whole).
        """
        try:
            head, reply = self._read_reply(sock, data, deadline)
        except (TimeoutError, _BadReply) as exc:
            raise self._reply_failed(sock, exc, method, timeout) from None
        except _TooLarge as exc:
            sock.close()
            raise self._protocol_error(
                method,
                f"the reply ({exc.size} bytes or more) is larger than the limit of "
                f"{self.max_response_size} bytes (max_response_size)",
            ) from None
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
    ) -> tuple[_Head, bytes]:
        """Read a whole reply whose first bytes are ``data``; linear in its size."""
        limit = self.max_response_size

        def recv(size: int) -> bytes:
            if deadline is not None:
                sock.settimeout(_remaining(deadline))
            return sock.recv(size)

        head, rest = _read_head(sock, data, deadline)
        length = head.length
        if length is not None:
            # The common case: Content-Length, often all in the first recv.
            if length > limit:
                raise _TooLarge(length)
            if len(rest) >= length:
                if len(rest) > length:
                    head.keep_alive = False
                return head, rest[:length]
            buf = bytearray(rest)
            while len(buf) < length:
                more = recv(min(length - len(buf), 1 << 20))
                if not more:
                    raise _BadReply(f"reply truncated: got {len(buf)} of {length} bytes")
                buf += more
            return head, bytes(buf)
        if head.chunked:
            decoder = _Chunked()
            extra = decoder.feed(rest)
            while not decoder.done:
                if len(decoder.out) > limit:
                    raise _TooLarge(len(decoder.out))
                more = recv(_RECV)
                if not more:
                    raise _BadReply("reply truncated in the middle of a chunked body")
                extra = decoder.feed(more)
            if len(decoder.out) > limit:
                raise _TooLarge(len(decoder.out))
            if extra:
                head.keep_alive = False
            return head, bytes(decoder.out)
        # No length: the body ends when the plugin closes the connection.
        buf = bytearray(rest)
        while True:
            if len(buf) > limit:
                raise _TooLarge(len(buf))
            more = recv(_RECV)
            if not more:
                return head, bytes(buf)
            buf += more

    def _closed_error(self, method: str) -> PluginConnectionError:
        return PluginConnectionError(
            f"{method}: cannot call plugin at {self.addr}: client is closed"
        )

    def _protocol_error(self, method: str, detail: str) -> PluginProtocolError:
        return PluginProtocolError(f"{method}: invalid reply from plugin at {self.addr}: {detail}")

    def _reply_failed(
        self, sock: socket.socket, exc: Exception, method: str, timeout: float | None
    ) -> PluginError:
        """Close ``sock`` after a failed exchange; the error to raise for ``exc``.

        A timeout is the call's deadline passing; anything else (a malformed
        reply, a broken connection) is a protocol error naming ``exc``.
        """
        sock.close()
        if isinstance(exc, TimeoutError):
            return self._timeout_error(method, timeout)
        return self._protocol_error(method, str(exc))

    def _timeout_error(self, method: str, timeout: float | None) -> PluginTimeoutError:
        return PluginTimeoutError(
            f"{method}: plugin at {self.addr} did not answer within {timeout:g} s"
        )

    def _checkout(self, method: str) -> socket.socket | None:
        # list.pop and list.append are atomic: the pool needs no lock.
        idle = self._idle
        while idle:
            try:
                sock, since, poller = idle.pop()
            except IndexError:
                break
            if time.monotonic() - since < _IDLE_TIMEOUT and _quiet(poller):
                return sock
            sock.close()  # idle too long, closed by the plugin, or holding stray bytes
        if self._closed:
            raise self._closed_error(method)
        return None

    def _checkin(self, sock: socket.socket, poller: select.poll | None = None) -> None:
        idle = self._idle
        if self._closed or len(idle) >= _MAX_IDLE:
            sock.close()
            return
        if poller is None:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
        idle.append((sock, time.monotonic(), poller))
        self._drain_if_closed()  # close() may have run meanwhile

    def _drain_if_closed(self) -> None:
        if self._closed:
            self._drain()

    def _drain(self) -> None:
        idle = self._idle
        while idle:
            try:
                sock, _, _ = idle.pop()
            except IndexError:
                break
            sock.close()

    def _connect(self, method: str, deadline: float | None, timeout: float | None) -> socket.socket:
        if self._closed:
            raise self._closed_error(method)
        address = self._address
        try:
            dial = _DIAL_TIMEOUT if deadline is None else min(_DIAL_TIMEOUT, _remaining(deadline))
            if address.unix_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    # With a timeout, as Go dials: a full listen backlog then
                    # fails at once (EAGAIN) and is retried, where a blocking
                    # connect would wait for the plugin to accept, forever.
                    sock.settimeout(dial)
                    sock.connect(address.unix_path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            sock = socket.create_connection((address.host, address.port), timeout=dial)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._use_tls:
                    sock = _ssl_context(self.tls).wrap_socket(sock, server_hostname=address.host)
            except BaseException:
                sock.close()
                raise
            return sock
        except ssl.SSLError as exc:
            # A certificate that does not verify will not verify on retry.
            raise _ConnectFailed(exc, retry=False) from None
        except TimeoutError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout_error(method, timeout) from None
            raise _ConnectFailed(exc) from None
        except OSError as exc:
            raise _ConnectFailed(exc) from None


# A forked child must not talk on its parent's pooled connections: both would
# send on one socket and read each other's replies. The hook costs nothing
# per call, unlike a pid check.
_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _drop_pools_after_fork() -> None:
    for client in list(_clients):
        client._drain()  # closes the child's copies only; the parent's stay open


os.register_at_fork(after_in_child=_drop_pools_after_fork)


class _BodyReader(io.RawIOBase):
    """The body of a streamed reply, read straight from the connection."""

    def __init__(
        self,
        client: Client,
        sock: socket.socket,
        head: _Head,
        pending: bytes,
        method: str,
        timeout: float | None,
    ) -> None:
        super().__init__()
        self._client = client
        self._sock: socket.socket | None = sock
        self._head = head
        self._method = method
        self._timeout = timeout  # this call's, not necessarily the client's
        self._left = head.length  # bytes still to read, when known
        self._chunked = _Chunked() if head.chunked else None
        self._pending = bytearray()
        self._eof = False
        if self._chunked is not None:
            self._feed_chunked(pending)
        elif self._left is not None:
            take = pending[: self._left]
            self._pending += take
            self._left -= len(take)
            if len(pending) > len(take):
                head.keep_alive = False
        else:
            self._pending += pending

    def readable(self) -> bool:
        return True

    def _feed_chunked(self, data: bytes) -> None:
        assert self._chunked is not None
        rest = self._chunked.feed(data)
        if rest:
            self._head.keep_alive = False
        self._pending += self._chunked.out
        self._chunked.out.clear()

    def _finished(self) -> bool:
        if self._chunked is not None:
            return self._chunked.done
        if self._left is not None:
            return self._left == 0
        return self._eof

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending and not self._finished():
            self._fill(len(view))
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        del self._pending[:n]
        return n

    def _fill(self, size: int) -> None:
        sock = self._sock
        if sock is None:
            raise ValueError("I/O operation on a closed stream")
        want = _RECV if self._left is None else min(self._left, max(size, _RECV))
        try:
            data = sock.recv(want)
        except TimeoutError:
            raise self._client._timeout_error(self._method, self._timeout) from None
        except OSError as exc:
            raise self._client._protocol_error(
                self._method, f"connection broke mid-reply: {exc}"
            ) from None
        if not data:
            if self._chunked is None and self._left is None:
                self._eof = True
                return
            raise self._client._protocol_error(self._method, "reply truncated")
        if self._chunked is not None:
            try:
                self._feed_chunked(data)
            except _BadReply as exc:
                raise self._client._protocol_error(self._method, str(exc)) from None
        else:
            if self._left is not None:
                self._left -= len(data)
            self._pending += data

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._finished() and not self._pending and self._head.keep_alive:
                self._client._checkin(sock)
            else:
                sock.close()
        super().close()


# -- helpers ----------------------------------------------------------------


def _quiet(poller: select.poll) -> bool:
    """Tell whether an idle pooled connection is still open and received nothing.

    Bytes arriving on an idle connection are no reply to anything we sent:
    read by the next call, they would be taken for its reply (Go's transport
    drops such a connection too). An end of file means the plugin closed it.
    ``poller`` watches the connection alone for POLLIN: received bytes, an end
    of file (POLLIN or POLLHUP), an error (POLLERR) or a closed descriptor
    (POLLNVAL) all report an event. It looks at the raw socket, also for TLS.
    One ``poll(0)`` costs a third of a peeking ``recv``, which raises
    BlockingIOError when all is well (and would first wait for data on a
    socket with a timeout).
    """
    return not poller.poll(0)


def _read_head(sock: socket.socket, data: bytes, deadline: float | None) -> tuple[_Head, bytes]:
    """Read a reply's head (after any interim 1xx replies) starting with ``data``.

    Returns the parsed head and the bytes after it.
    """
    head, end = _heads(data)
    if head is not None:  # the usual case: all in the first recv
        return head, data[end:]
    # Interim replies already parsed are dropped, but count towards the cap.
    skipped = end
    acc = bytearray(data[end:])
    while True:
        if skipped + len(acc) > _MAX_HEAD:
            raise _head_too_large(skipped)
        if deadline is not None:
            sock.settimeout(_remaining(deadline))
        more = sock.recv(_RECV)
        if not more:
            raise _BadReply("connection closed in the middle of the reply headers")
        # Look for the blank line in the new bytes only: a head that trickles
        # in byte by byte must not cost a rescan of all of it each time.
        since = max(len(acc) - 3, 0)
        acc += more
        if _BLANK_LINE.search(acc, since) is not None:
            head, end = _heads(acc)
            if head is not None:
                return head, bytes(acc[end:])
            skipped += end
            del acc[:end]


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


def _read_up_to(reader: io.RawIOBase, limit: int) -> bytes:
    """Read ``reader`` to its end, or to ``limit`` bytes."""
    data = bytearray()
    while len(data) < limit:
        block = reader.read(min(_RECV, limit - len(data)))
        if not block:
            break
        data += block
    return bytes(data)


_UNIX_HOST_LINE: Final = b"Host: " + _UNIX_HOST.encode() + b"\r\n"


@functools.lru_cache(maxsize=1024)
def _request_prefix(method: str, host_line: bytes) -> bytes:
    """Build (once per method and host) the request line and fixed headers."""
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a non-empty str, not {method!r}")
    if any(c.isspace() or ord(c) < 32 for c in method):
        raise ValueError(f"invalid method name {method!r}")
    path = method if method.startswith("/") else "/" + method
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\n" + host_line
        + b"Accept: " + MIMETYPE.encode() + b"\r\n"
    )  # fmt: skip


def _check_timeout(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0 or None, not {value!r}")


def _check_retry_timeout(value: float) -> None:
    if not value >= 0:  # NaN too: it would retry forever
        raise ValueError(f"retry_timeout must be >= 0, not {value!r}")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _backoff(retries: int) -> int:
    """Docker's backoff: 1 doubled ``retries`` times, capped at 30 (units)."""
    delay = 1
    while delay < _BACKOFF_CAP and retries > 0:
        delay *= 2
        retries -= 1
    return min(delay, _BACKOFF_CAP)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _call_error(method: str, status: int, data: bytes) -> PluginCallError:
    """Docker's mapping of a non-200 reply: ``Err`` when set, else the body."""
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError):  # too deep for Python's decoder: the body text
        decoded = None
    if isinstance(decoded, dict):
        err = decoded.get("Err")
        if isinstance(err, str) and err:
            return PluginCallError(method, status, err)
    return PluginCallError(method, status, data.decode("utf-8", "replace"))


# -- many calls at once (used by LegacyRegistry.get_all) ---------------------


def call_concurrently(calls: Iterable[tuple[Client, str]], *, timeout: float | None) -> list[Any]:
    """Make one call (no args, no retries) to each client at the same time.

    ``calls`` is consumed lazily: each request is on its way before the next
    item is produced, so the plugins work while the caller prepares the rest.
    Unix-socket clients are driven from this thread with non-blocking sockets
    and ``epoll`` (hundreds of activations cost one thread); others (TCP,
    TLS) get a thread each, so that slow ones never queue the rest behind
    them. Each result is the decoded reply or the
    :class:`PluginError` the call raised; ``timeout`` counts from the moment
    the last request was sent. Replies over 1 MiB are refused on unix sockets
    (these are handshakes). Connections that end cleanly go to their client's
    pool.
    """
    results: list[Any] = []
    poller = select.epoll()
    jobs: dict[int, _Pending] = {}
    threads: list[threading.Thread] = []
    try:
        for index, (client, method) in enumerate(calls):
            results.append(None)
            if client._address.unix_path is None or client._use_tls:
                thread = threading.Thread(
                    target=_call_quietly,
                    args=(client, method, timeout, results, index),
                    name=f"pluginkit-call-{index}",
                    daemon=True,
                )
                thread.start()
                threads.append(thread)
            else:
                results[index] = _start(poller, jobs, index, client, method, timeout)
        _multiplex(poller, jobs, results, timeout)
    finally:
        poller.close()
        for job in jobs.values():
            job.sock.close()
        for thread in threads:
            thread.join()
    return results


def _call_quietly(
    client: Client, method: str, timeout: float | None, results: list[Any], index: int
) -> None:
    try:
        results[index] = client.call(method, timeout=timeout, retry_timeout=0)
    except PluginError as exc:
        results[index] = exc
    except Exception as exc:  # a result for every call, never a dead thread's None
        error = PluginError(f"{method}: calling plugin at {client.addr} failed: {exc!r}")
        error.__cause__ = exc
        results[index] = error


class _Pending:
    __slots__ = ("client", "data", "index", "method", "out", "sock")

    def __init__(
        self, index: int, client: Client, method: str, sock: socket.socket, out: bytes
    ) -> None:
        self.index = index
        self.client = client
        self.method = method
        self.sock = sock
        self.out = out
        self.data = b""


# One-shot registrations: a finished socket needs no unregister call (it may
# go to a client's pool, still registered but disarmed, until the epoll closes).
_IN: Final = select.EPOLLIN | select.EPOLLONESHOT
_OUT: Final = select.EPOLLOUT | select.EPOLLONESHOT


def _start(
    poller: select.epoll,
    jobs: dict[int, _Pending],
    index: int,
    client: Client,
    method: str,
    timeout: float | None,
) -> PluginError | None:
    """Connect and send one request; an error when that fails at once."""
    prefix = client._prefixes.get(method)
    if prefix is None:
        try:
            prefix = client._prefix(method)
        except ValueError as exc:
            return PluginError(str(exc))
    request = prefix + b"Content-Length: 0\r\n\r\n"
    path = client._address.unix_path
    assert path is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        try:
            sock.connect(path)
        except BlockingIOError:
            # A full listen backlog: unix sockets do not complete such a
            # connect later. Try once more (a connect with a timeout does
            # not wait for room either: it fails at once, EAGAIN, as Go's).
            sock.settimeout(min(timeout or _DIAL_TIMEOUT, _DIAL_TIMEOUT))
            sock.connect(path)
            sock.setblocking(False)
        try:
            sent = sock.send(request)
        except BlockingIOError:
            sent = 0
    except OSError as exc:
        sock.close()
        return PluginConnectionError(
            f"{method}: cannot connect to plugin at {client.addr}: {_reason(exc)}"
        )
    job = _Pending(index, client, method, sock, request[sent:])
    fd = sock.fileno()
    jobs[fd] = job
    poller.register(fd, _OUT if job.out else _IN)
    return None


def _multiplex(
    poller: select.epoll,
    jobs: dict[int, _Pending],
    results: list[Any],
    timeout: float | None,
) -> None:
    """Run the started calls to completion, or until ``timeout``."""

    def limit(client: Client) -> int:
        # Replies are re-parsed as they grow: keep them small (a manifest is).
        return min(client.max_response_size, _MULTIPLEX_MAX)

    deadline = None if timeout is None else time.monotonic() + timeout
    while jobs:
        wait = -1.0 if deadline is None else deadline - time.monotonic()
        if deadline is not None and wait <= 0:
            break
        for fd, _events in poller.poll(wait):
            job = jobs[fd]
            client, method = job.client, job.method
            if job.out:
                try:
                    sent = job.sock.send(job.out)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    _fail_job(jobs, fd, results, exc)
                    continue
                job.out = job.out[sent:]
                poller.modify(fd, _OUT if job.out else _IN)
                continue
            try:
                more = job.sock.recv(_RECV)
            except BlockingIOError:
                poller.modify(fd, _IN)
                continue
            except OSError as exc:
                _fail_job(jobs, fd, results, exc)
                continue
            if not more and not job.data:
                _fail_job(
                    jobs, fd, results, ConnectionResetError("connection closed by the plugin")
                )
                continue
            job.data += more
            try:
                done = _complete(job.data, not more, limit(client))
            except _BadReply as exc:
                del jobs[fd]
                job.sock.close()
                results[job.index] = client._protocol_error(method, str(exc))
                continue
            except _TooLarge as exc:
                del jobs[fd]
                job.sock.close()
                results[job.index] = client._protocol_error(
                    method,
                    f"the reply ({exc.size} bytes or more) is larger than the limit of "
                    f"{limit(client)} bytes",
                )
                continue
            if done is None:
                poller.modify(fd, _IN)
                continue
            del jobs[fd]
            head, body = done
            if head.keep_alive and more:
                # Left non-blocking: the next call sets the mode it needs.
                client._checkin(job.sock)
            else:
                job.sock.close()
            if head.status != 200:
                results[job.index] = _call_error(method, head.status, body)
                continue
            try:
                results[job.index] = client._decode(method, body)
            except PluginProtocolError as exc:
                results[job.index] = exc
    for job in jobs.values():
        job.sock.close()
        results[job.index] = job.client._timeout_error(job.method, timeout)
    jobs.clear()


def _fail_job(jobs: dict[int, _Pending], fd: int, results: list[Any], exc: BaseException) -> None:
    """Record a connection failure for the job on ``fd``."""
    job = jobs.pop(fd)
    job.sock.close()
    results[job.index] = PluginConnectionError(
        f"{job.method}: cannot connect to plugin at {job.client.addr}: {_reason(exc)}"
    )
