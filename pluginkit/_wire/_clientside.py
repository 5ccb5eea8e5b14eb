"""The host's half of the wire: request heads out, replies in (sans-I/O).

Replies are parsed strictly where leniency would misread a body's framing
(Go's ``net/http`` refuses the same replies); lines may end with a bare LF,
which Go's and Python's clients accept. Callers own the sockets: they feed
received bytes to :class:`HeadReader`, :class:`BodyCollector` (a whole body)
or :class:`StreamDecoder` (a body read piece by piece), which say how much
to receive next and raise :class:`BadReply` or :class:`TooLarge`.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Final

from .._errors import PluginCallError
from ._address import UNIX_HOST

__all__ = [
    "MAX_HEAD",
    "MIMETYPE",
    "PLAIN_OK",
    "RECV",
    "UNIX_HOST_LINE",
    "BadReply",
    "BodyCollector",
    "ChunkedDecoder",
    "Head",
    "HeadReader",
    "StreamDecoder",
    "TooLarge",
    "call_error",
    "complete_reply",
    "parse_head",
    "parse_heads",
    "plain_reply",
    "remember_plain_head",
    "request_prefix",
]

#: The ``Accept`` header the Docker engine sends on every plugin call.
MIMETYPE: Final = "application/vnd.docker.plugins.v1.2+json"
MAX_HEAD: Final = 64 * 1024  # status line + headers
RECV: Final = 65536  # what to ask one recv for, when the size is not known


class BadReply(Exception):
    """The reply broke HTTP; turned into PluginProtocolError by the caller."""


# Heads of plain replies already parsed: head bytes -> Content-Length, for
# 200 keep-alive replies framed by Content-Length. A plugin sends the same
# head again and again (only its Date changes, once a second), and parsing
# it is the largest piece of client work in a call; the parse is a pure
# function of the bytes, so a repeat needs only a dict lookup. Cleared when
# full rather than evicted one by one: a few entries per second are live.
# Only small heads are kept: a plugin sending large ones must not make every
# client hold megabytes.
plain_heads: dict[bytes, int] = {}
PLAIN_HEADS_MAX: Final = 256
PLAIN_HEAD_SIZE: Final = 1024


class Head:
    """What the status line and headers say about the body that follows."""

    __slots__ = ("chunked", "keep_alive", "length", "status")

    def __init__(self, status: int, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.status = status
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


def parse_heads(data: bytes | bytearray) -> tuple[Head | None, int]:
    """Parse the reply heads at the start of ``data``, up to the final one.

    Returns the final head and the offset of its body, or ``None`` and the
    offset where the first incomplete head starts. Interim 1xx replies (not
    101, which ends the exchange) are parsed like any head, so a malformed
    one is refused, and skipped. Lines may end with a bare LF: Go's and
    Python's clients accept that, so plugins may send it.
    """
    start = 0
    while True:
        blank = BLANK_LINE.search(data, start)
        if blank is None:
            return None, start
        head = parse_head(bytes(data[start : blank.start()]))
        start = blank.end()
        if not (100 <= head.status < 200 and head.status != 101):
            return head, start


def head_too_large(interim: int) -> BadReply:
    """Build the error for heads over ``MAX_HEAD``; ``interim``: bytes of 1xx replies in them."""
    if interim:
        return BadReply(
            f"the reply head and the interim 1xx replies before it are larger than {MAX_HEAD} bytes"
        )
    return BadReply(_HEAD_TOO_LARGE)


BLANK_LINE: Final = re.compile(rb"\r?\n\r?\n")
# RFC 9110 token characters: what a header name is made of.
_TOKEN: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX: Final = b"0123456789abcdefABCDEF"
_MAX_CHUNK_LINE: Final = 4096  # a chunk size line, with its extension (Go's limit)
_MAX_CHUNK_OVERHEAD: Final = 64 * 1024  # all chunk extensions and trailers of a reply
_HEAD_TOO_LARGE: Final = f"the reply head is larger than {MAX_HEAD} bytes (no blank line ends it)"


def _show(data: bytes) -> str:
    """Quote untrusted reply bytes for an error message: repr'd, at most 80 of them."""
    return repr(data[:80].decode("latin-1")) + ("..." if len(data) > 80 else "")


def _bad_line(line: bytes) -> BadReply:
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
    return BadReply(f"malformed header line {_show(line)}: {reason}")


def parse_head(head: bytes) -> Head:
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
        raise BadReply(f"not an HTTP/1.x reply: {head[:40]!r}")
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
                raise BadReply(
                    "multiple Content-Length headers with different values:"
                    f" {_show(length_text)} and {_show(value)}"
                )
        elif name == b"transfer-encoding":
            if encoding is not None:
                raise BadReply("multiple Transfer-Encoding headers")
            encoding = value.strip(b" \t")
        elif name == b"connection":
            connection += b"," + value.lower()
    http10 = head[7:8] == b"0"
    if http10 and encoding is not None:
        # HTTP/1.0 has no Transfer-Encoding: a client must treat such a
        # message's framing as faulty (RFC 9112 6.1), Content-Length or not.
        raise BadReply(
            f"Transfer-Encoding {_show(encoding)} in an HTTP/1.0 reply"
            " (its framing cannot be trusted, RFC 9112 6.1)"
        )
    length = None
    if length_text is not None:
        if not length_text.isdigit():  # bytes.isdigit: ASCII digits only, no sign
            raise BadReply(f"bad Content-Length {_show(length_text)}")
        length = int(length_text)
    if encoding is not None and encoding.lower() != b"chunked":
        raise BadReply(f"unsupported Transfer-Encoding {_show(encoding)}")
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
    return Head(status, length, chunked, keep_alive)


class ChunkedDecoder:
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
            raise BadReply(
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
                        raise BadReply(f"chunk size line longer than {_MAX_CHUNK_LINE} bytes")
                    return b""
                line = bytes(buf[:end])
                del buf[: end + 2]
                digits, semicolon, extension = line.partition(b";")
                if semicolon:
                    self._add_overhead(len(extension))
                digits = digits.strip(b" \t")
                # int(x, 16) alone would take "0x1f", "+5", "1_0" and spaces.
                if not 0 < len(digits) <= 16 or digits.translate(None, _HEX):
                    raise BadReply(f"bad chunk size line {_show(line)}")
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
                    raise BadReply("chunk not followed by CRLF")
                del buf[:2]
                self._need = -1
        rest = bytes(buf)
        buf.clear()
        return rest


def complete_reply(data: bytes, eof: bool, limit: int) -> tuple[Head, bytes] | None:
    """Parse a whole reply held in ``data``; ``None`` while more is needed."""
    head, end = parse_heads(data)
    if head is None:
        if len(data) > MAX_HEAD:
            raise head_too_large(end)
        if eof:
            raise BadReply("connection closed in the middle of the reply headers")
        return None
    body = data[end:]
    if head.length is not None:
        if head.length > limit:
            raise TooLarge(head.length)
        if len(body) < head.length:
            if eof:
                raise BadReply(f"reply truncated: got {len(body)} of {head.length} bytes")
            return None
        if len(body) > head.length:
            head.keep_alive = False
        return head, body[: head.length]
    if head.chunked:
        decoder = ChunkedDecoder()
        rest = decoder.feed(body)
        if len(decoder.out) > limit:
            raise TooLarge(len(decoder.out))
        if not decoder.done:
            if eof:
                raise BadReply("reply truncated in the middle of a chunked body")
            return None
        if rest:
            head.keep_alive = False
        return head, bytes(decoder.out)
    if len(body) > limit:
        raise TooLarge(len(body))
    return (head, body) if eof else None


class TooLarge(Exception):
    """The reply body is larger than the caller's limit; ``size``: its size so far."""

    def __init__(self, size: int) -> None:
        self.size = size


UNIX_HOST_LINE: Final = b"Host: " + UNIX_HOST.encode() + b"\r\n"


@functools.lru_cache(maxsize=1024)
def request_prefix(method: str, host_line: bytes) -> bytes:
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


def call_error(method: str, status: int, data: bytes) -> PluginCallError:
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


class HeadReader:
    """Collects a reply's head (after any interim 1xx replies) from received bytes.

    Build it with the first bytes received; while :attr:`result` is None,
    receive up to :data:`RECV` more bytes and :meth:`feed` them (``b""`` at
    end of file). :attr:`result` is then the head and the bytes after it.
    """

    __slots__ = ("_acc", "_skipped", "result")

    def __init__(self, data: bytes) -> None:
        self.result: tuple[Head, bytes] | None = None
        head, end = parse_heads(data)
        if head is not None:  # the usual case: all in the first recv
            self.result = head, data[end:]
            return
        # Interim replies already parsed are dropped, but count towards the cap.
        self._skipped = end
        self._acc = bytearray(data[end:])
        self._check_size()

    def _check_size(self) -> None:
        if self._skipped + len(self._acc) > MAX_HEAD:
            raise head_too_large(self._skipped)

    def feed(self, more: bytes) -> tuple[Head, bytes] | None:
        """Add received bytes (``b""``: end of file); return :attr:`result`."""
        if not more:
            raise BadReply("connection closed in the middle of the reply headers")
        acc = self._acc
        # Look for the blank line in the new bytes only: a head that trickles
        # in byte by byte must not cost a rescan of all of it each time.
        since = max(len(acc) - 3, 0)
        acc += more
        if BLANK_LINE.search(acc, since) is not None:
            head, end = parse_heads(acc)
            if head is not None:
                self.result = head, bytes(acc[end:])
                return self.result
            self._skipped += end
            del acc[:end]
        self._check_size()
        return None


class BodyCollector:
    """Collects a whole reply body, up to ``limit`` bytes, from received bytes.

    Build it with the head and the bytes that came after it; while not
    :attr:`done`, receive up to :meth:`want` bytes and :meth:`feed` them
    (``b""`` at end of file). Sets ``head.keep_alive`` to False when bytes
    follow the body (the connection cannot be trusted then).
    """

    __slots__ = ("_buf", "_decoder", "body", "done", "head", "limit")

    def __init__(self, head: Head, rest: bytes, limit: int) -> None:
        self.head = head
        self.limit = limit
        self.done = False
        self.body = b""
        self._buf = bytearray()
        self._decoder: ChunkedDecoder | None = None
        length = head.length
        if length is not None:
            # The common case: Content-Length, often all in the first recv.
            if length > limit:
                raise TooLarge(length)
            if len(rest) >= length:
                if len(rest) > length:
                    head.keep_alive = False
                self._finish(rest[:length])
            else:
                self._buf += rest
        elif head.chunked:
            self._decoder = ChunkedDecoder()
            self._chunks(self._decoder.feed(rest))
        else:
            # No length: the body ends when the plugin closes the connection.
            self._buf += rest
            if len(self._buf) > limit:
                raise TooLarge(len(self._buf))

    def _finish(self, body: bytes) -> None:
        self.body = body
        self.done = True

    def _chunks(self, extra: bytes) -> None:
        decoder = self._decoder
        assert decoder is not None
        if len(decoder.out) > self.limit:
            raise TooLarge(len(decoder.out))
        if decoder.done:
            if extra:
                self.head.keep_alive = False
            self._finish(bytes(decoder.out))

    def want(self) -> int:
        """How many bytes to receive next."""
        length = self.head.length
        if length is not None:
            return min(length - len(self._buf), 1 << 20)
        return RECV

    def feed(self, more: bytes) -> None:
        """Add received bytes (``b""``: end of file)."""
        length = self.head.length
        if length is not None:
            if not more:
                raise BadReply(f"reply truncated: got {len(self._buf)} of {length} bytes")
            self._buf += more
            if len(self._buf) >= length:
                self._finish(bytes(self._buf[:length]))
        elif self._decoder is not None:
            if not more:
                raise BadReply("reply truncated in the middle of a chunked body")
            self._chunks(self._decoder.feed(more))
        elif not more:
            self._finish(bytes(self._buf))
        else:
            self._buf += more
            if len(self._buf) > self.limit:
                raise TooLarge(len(self._buf))


class StreamDecoder:
    """Decodes a reply body read piece by piece (a streamed reply).

    Build it with the head and the bytes that came after it; decoded bytes
    collect in :attr:`pending` (the reader takes them out). While neither
    :attr:`pending` nor :meth:`finished`, receive up to :meth:`want` bytes and
    :meth:`feed` them (``b""`` at end of file).
    """

    __slots__ = ("_chunked", "_eof", "_left", "head", "pending")

    def __init__(self, head: Head, pending: bytes) -> None:
        self.head = head
        self._left = head.length  # bytes still to read, when known
        self._chunked = ChunkedDecoder() if head.chunked else None
        self.pending = bytearray()
        self._eof = False
        if self._chunked is not None:
            self._feed_chunked(pending)
        elif self._left is not None:
            take = pending[: self._left]
            self.pending += take
            self._left -= len(take)
            if len(pending) > len(take):
                head.keep_alive = False
        else:
            self.pending += pending

    def _feed_chunked(self, data: bytes) -> None:
        assert self._chunked is not None
        rest = self._chunked.feed(data)
        if rest:
            self.head.keep_alive = False
        self.pending += self._chunked.out
        self._chunked.out.clear()

    def finished(self) -> bool:
        """Tell whether the whole body has been received."""
        if self._chunked is not None:
            return self._chunked.done
        if self._left is not None:
            return self._left == 0
        return self._eof

    def want(self, size: int) -> int:
        """How many bytes to receive next, for a read of ``size`` bytes."""
        return RECV if self._left is None else min(self._left, max(size, RECV))

    def feed(self, data: bytes) -> None:
        """Add received bytes (``b""``: end of file)."""
        if not data:
            if self._chunked is None and self._left is None:
                self._eof = True
                return
            raise BadReply("reply truncated")
        if self._chunked is not None:
            self._feed_chunked(data)
        else:
            if self._left is not None:
                self._left -= len(data)
            self.pending += data


#: The head of a plain reply taken by :func:`plain_reply` (only ``status`` is read).
PLAIN_OK: Final = Head(200, None, chunked=False, keep_alive=True)


def plain_reply(data: bytes, limit: int) -> bytes | None:
    """Return the body when ``data`` is a whole plain reply seen before, else None.

    Plain: ``200``, keep-alive, framed by a ``Content-Length`` that ``data``
    holds exactly, with a head parsed before (see :data:`plain_heads`). The
    caller may then reuse the connection.
    """
    end = data.find(b"\r\n\r\n")
    if end > 0 and data.startswith(b"HTTP/1.1 200 "):
        length = plain_heads.get(data[:end])
        if length is not None and len(data) - end - 4 == length and length <= limit:
            return data[end + 4 :]
    return None


def remember_plain_head(data: bytes, body_start: int, head: Head) -> None:
    """Keep the head at the start of ``data`` for :func:`plain_reply` when it is plain.

    ``body_start``: where the parser found the body to start (the head must
    end with the first CRLF CRLF, not at a bare-LF blank line).
    """
    if head.status != 200 or head.length is None or not head.keep_alive:
        return
    end = data.find(b"\r\n\r\n")
    if 0 < end <= PLAIN_HEAD_SIZE and end + 4 == body_start and data.startswith(b"HTTP/1.1 200 "):
        if len(plain_heads) >= PLAIN_HEADS_MAX:
            plain_heads.clear()
        plain_heads[data[:end]] = head.length
