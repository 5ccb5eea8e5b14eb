"""The server side of the wire: a strict HTTP/1.1 request parser and response heads.

Docker's plugin protocol uses a tiny slice of HTTP/1.1: ``POST /<Method>``
with a JSON body (``Content-Length`` or chunked), keep-alive connections, and
JSON replies. This parser handles exactly that, incrementally (bytes arrive in
any split), pipelining-safe (one request is taken off the buffer at a time),
and rejects what it does not understand with a status and a clear message
instead of guessing (no obs-fold, no ``Content-Length`` together with
``Transfer-Encoding``, no transfer codings other than ``chunked``).

It exists because ``http.server`` parses headers with the ``email`` package
and buffered file objects, which makes a plugin server about three times
slower than Go's; the hot path here is a few ``bytes.find`` calls.
"""

from __future__ import annotations

import time
from typing import Final, NoReturn

__all__ = [
    "CONTENT_TYPE",
    "HTTPError",
    "Request",
    "RequestParser",
    "chunk",
    "response_head",
]

#: The content type of every reply, as go-plugins-helpers sends it.
CONTENT_TYPE: Final = "application/vnd.docker.plugins.v1.1+json"

_REASONS: Final = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}

_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"

_HEAD: Final = 0
_BODY: Final = 1  # Content-Length body
_CHUNK_SIZE: Final = 2  # waiting for a chunk-size line
_CHUNK_DATA: Final = 3  # inside a chunk (and its CRLF)
_TRAILER: Final = 4  # after the last chunk, until the empty line


class HTTPError(Exception):
    """A request the server cannot parse; answered with ``status`` and the message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class Request:
    """One parsed request: the path (bytes, without query), body and connection flags."""

    __slots__ = ("body", "head_only", "http10", "keep_alive", "method", "path")

    def __init__(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        keep_alive: bool,
        head_only: bool,
        http10: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.keep_alive = keep_alive
        self.head_only = head_only
        #: An HTTP/1.0 request: its reply must not be chunked, and keep-alive
        #: is confirmed explicitly.
        self.http10 = http10


class RequestParser:
    """Turns the bytes of one connection into :class:`Request` objects.

    ``feed()`` the bytes as they arrive, then call ``next()`` until it returns
    None (more bytes needed). ``next()`` raises :class:`HTTPError` for a bad
    request; the connection must then be answered and closed, because its
    framing can no longer be trusted.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_need",
        "_pending",
        "_state",
        "continue_wanted",
        "max_body",
        "max_head",
    )

    def __init__(self, *, max_head: int = 65536, max_body: int = 64 * 1024 * 1024) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buf = bytearray()
        self._state = _HEAD
        self._pending: Request | None = None
        self._body = bytearray()
        self._need = 0
        #: True once per request whose client sent ``Expect: 100-continue``
        #: and still waits for the body; the server answers "100 Continue".
        self.continue_wanted = False

    @property
    def buffered(self) -> int:
        """How many received bytes are not consumed yet."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True when no request is partially received."""
        return self._state == _HEAD and not self._buf

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def next(self) -> Request | None:
        """Return the next complete request, or None when more bytes are needed."""
        if self._state == _HEAD:
            buf = self._buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_head:
                    raise HTTPError(431, f"request head is larger than {self.max_head} bytes")
                _check_line_ends(buf)  # else a bare-LF client waits for a reply forever
                return None
            if end > self.max_head:
                raise HTTPError(431, f"request head is larger than {self.max_head} bytes")
            request, length, chunked, expect = self._parse_head(bytes(buf[:end]))
            if not chunked and len(buf) >= end + 4 + length:
                # Fast path: the whole request is here.
                request.body = bytes(buf[end + 4 : end + 4 + length])
                del buf[: end + 4 + length]
                return request
            del buf[: end + 4]
            self._pending = request
            self.continue_wanted = expect
            if chunked:
                self._state = _CHUNK_SIZE
                self._body = bytearray()
            else:
                self._state = _BODY
                self._need = length
        if self._state == _BODY:
            if len(self._buf) < self._need:
                return None
            return self._finish(bytes(self._buf[: self._need]), self._need)
        return self._next_chunked()

    def _finish(self, body: bytes, consumed: int) -> Request:
        request = self._pending
        assert request is not None
        del self._buf[:consumed]
        request.body = body
        self._pending = None
        self._state = _HEAD
        self.continue_wanted = False
        return request

    def _parse_head(self, head: bytes) -> tuple[Request, int, bool, bool]:
        fields = _parsed_heads.get(head)
        if fields is None:
            fields = _parse_head(head)
            if len(head) <= _PARSED_HEAD_SIZE:
                if len(_parsed_heads) >= _PARSED_HEADS_MAX:
                    _parsed_heads.clear()
                _parsed_heads[head] = fields
        method, path, length, chunked, expect, keep_alive, http10 = fields
        if length > self.max_body:
            raise HTTPError(413, f"request body is larger than {self.max_body} bytes")
        request = Request(method, path, b"", keep_alive, method == b"HEAD", http10)
        return request, length, chunked, expect

    def _next_chunked(self) -> Request | None:
        buf = self._buf
        pos = 0
        try:
            while True:
                if self._state == _CHUNK_SIZE:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        if len(buf) - pos > 1024:
                            raise HTTPError(400, "chunk size line is too long")
                        return None
                    size_text = bytes(buf[pos:eol]).partition(b";")[0].strip()
                    # Only hex digits, as Go reads them: int() alone would also
                    # take "0x2", "+2" and "0_2", sizes a front proxy may frame
                    # differently.
                    if not 0 < len(size_text) <= 16 or size_text.translate(None, _HEX_DIGITS):
                        shown = size_text[:20].decode("latin-1")
                        raise HTTPError(400, f"invalid chunk size {shown!r}")
                    size = int(size_text, 16)
                    pos = eol + 2
                    if size == 0:
                        self._state = _TRAILER
                    else:
                        if len(self._body) + size > self.max_body:
                            raise HTTPError(
                                413, f"request body is larger than {self.max_body} bytes"
                            )
                        self._need = size
                        self._state = _CHUNK_DATA
                elif self._state == _CHUNK_DATA:
                    if len(buf) - pos < self._need + 2:
                        return None
                    end = pos + self._need
                    if buf[end : end + 2] != b"\r\n":
                        raise HTTPError(400, "chunk data is not followed by CRLF")
                    self._body += buf[pos:end]
                    pos = end + 2
                    self._state = _CHUNK_SIZE
                else:  # _TRAILER: skip trailer fields until the empty line
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        if len(buf) - pos > self.max_head:
                            raise HTTPError(431, "chunked trailer is too large")
                        return None
                    if eol == pos:
                        body = bytes(self._body)
                        self._body = bytearray()
                        request = self._finish(body, pos + 2)
                        pos = 0
                        return request
                    pos = eol + 2
        finally:
            if pos:
                del buf[:pos]


# Request heads already parsed: head bytes -> what they say. The engine sends
# the same head for every call of a method with a body of the same size
# (there is no Date in a request), and parsing it is the largest piece of
# per-request work; the parse is a pure function of the bytes, so a repeat
# needs only a dict lookup. Bad heads raise and are never stored. Cleared
# when full rather than evicted one by one; only small heads are kept (a
# client sending large unique heads must not make it hold megabytes).
_HeadFields = tuple[bytes, bytes, int, bool, bool, bool, bool]
_parsed_heads: dict[bytes, _HeadFields] = {}
_PARSED_HEADS_MAX: Final = 512
_PARSED_HEAD_SIZE: Final = 1024


def _parse_head(head: bytes) -> _HeadFields:
    """Parse a request head: method, path, length, chunked, expect, keep-alive, HTTP/1.0."""
    lines = head.split(b"\r\n")
    if head.count(b"\n") != len(lines) - 1:
        _bare_lf()
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HTTPError(400, f"malformed request line {lines[0][:100].decode('latin-1')!r}")
    method, target, version = parts
    if version == b"HTTP/1.1":
        keep_alive = True
        http10 = False
    elif version == b"HTTP/1.0":
        keep_alive = False
        http10 = True
    else:
        raise HTTPError(505, f"unsupported HTTP version {version[:20].decode('latin-1')!r}")
    length = 0
    seen_length = False
    chunked = False
    expect = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            raise HTTPError(400, f"malformed header line {line[:100].decode('latin-1')!r}")
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or len(value) > 18:
                raise HTTPError(400, f"invalid Content-Length {value[:30].decode('latin-1')!r}")
            if seen_length and int(value) != length:
                raise HTTPError(400, "conflicting Content-Length headers")
            length = int(value)
            seen_length = True
        elif name == b"transfer-encoding":
            coding = value.strip()
            if coding.lower() != b"chunked":
                shown = coding[:30].decode("latin-1")
                raise HTTPError(501, f"unsupported Transfer-Encoding {shown!r}")
            chunked = True
        elif name == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
    if chunked and seen_length:
        raise HTTPError(400, "both Content-Length and Transfer-Encoding are set")
    path = target.partition(b"?")[0]
    if path[:7] == b"http://" or path[:8] == b"https://":
        # absolute-form target: keep only the path
        slash = path.find(b"/", path.find(b"//") + 2)
        path = path[slash:] if slash >= 0 else b"/"
    return method, path, length, chunked, expect, keep_alive, http10


def _check_line_ends(head: bytes | bytearray) -> None:
    if head.count(b"\n") != head.count(b"\r\n"):
        _bare_lf()


def _bare_lf() -> NoReturn:
    # A bare LF is a line end to some parsers (and to a proxy in front) but
    # part of a header value to this one: refuse it rather than disagree.
    raise HTTPError(400, "request head lines must end with CRLF, not a bare LF")


# (second, its Date text), replaced as one object: pool threads read it while
# another thread renews it, and must never pair a new second with an old text.
_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    """Return the Date header value, formatted at most once per second."""
    global _date_cache
    now = int(time.time())
    second, value = _date_cache
    if second != now:
        value = _http_date(now)
        _date_cache = (now, value)
    return value


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def _http_date(when: int) -> bytes:
    """``email.utils.formatdate(when, usegmt=True)``, without importing ``email`` (~10 ms)."""
    t = time.gmtime(when)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday].encode(),
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def response_head(
    status: int,
    length: int | None,
    *,
    keep_alive: bool = True,
    http10: bool = False,
    content_type: str = CONTENT_TYPE,
) -> bytes:
    """Build the status line and headers of a response; ``length=None`` means streamed.

    A streamed body is chunked, except for an HTTP/1.0 client (which knows no
    chunked coding): then the body ends when the connection is closed. An
    HTTP/1.0 client's keep-alive is confirmed with ``Connection: keep-alive``.
    """
    if length is not None:
        framing = b"Content-Length: %d\r\n" % length
    elif http10:
        framing = b""
        keep_alive = False
    else:
        framing = b"Transfer-Encoding: chunked\r\n"
    if not keep_alive:
        connection = b"Connection: close\r\n"
    else:
        connection = b"Connection: keep-alive\r\n" if http10 else b""
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nDate: %s\r\n%s%s\r\n" % (
        status,
        _REASONS.get(status, "Unknown").encode("ascii"),
        content_type.encode("latin-1"),
        _date(),
        framing,
        connection,
    )


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (an empty ``data`` is the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
