"""The SDK's HTTP/1.1 request parser: framing, limits and arbitrary splits (Hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit._wire._serverside import HTTPError, Request, RequestParser


def request_bytes(path: str, body: bytes, *, chunked: bool = False, extra: str = "") -> bytes:
    if chunked:
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return (
            f"POST /{path} HTTP/1.1\r\nHost: x\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
        ).encode() + encoded
    return (
        f"POST /{path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def parse_all(data: bytes, cuts: list[int]) -> list[Request]:
    parser = RequestParser()
    out = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        parser.feed(data[start:end])
        while (request := parser.next()) is not None:
            out.append(request)
    return out


methods = st.from_regex(r"[A-Za-z][A-Za-z0-9.]{0,30}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(methods, st.binary(max_size=300), st.booleans()), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=10000), max_size=20),
)
def test_pipelined_requests_survive_any_split(
    requests: list[tuple[str, bytes, bool]], cuts: list[int]
) -> None:
    """Any sequence of requests (Content-Length or chunked), split anywhere, parses back whole."""
    data = b"".join(request_bytes(m, body, chunked=c) for m, body, c in requests)
    parsed = parse_all(data, cuts)
    assert [(r.path, r.body) for r in parsed] == [
        (f"/{m}".encode(), body) for m, body, _ in requests
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_crashes(data: bytes) -> None:
    """Arbitrary bytes either parse, wait for more, or raise HTTPError - nothing else."""
    parser = RequestParser()
    parser.feed(data)
    status = 0
    try:
        while parser.next() is not None:
            pass
    except HTTPError as exc:
        status = exc.status
    assert status == 0 or 400 <= status < 600


def one(data: bytes, **limits: int) -> Request | None:
    parser = RequestParser(**limits)
    parser.feed(data)
    return parser.next()


def test_query_string_ignored() -> None:
    """The query string is not part of the routed path."""
    request = one(b"POST /VolumeDriver.List?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert request is not None
    assert request.path == b"/VolumeDriver.List"


def test_http10_closes_by_default() -> None:
    """HTTP/1.0 requests are not kept alive unless they ask."""
    request = one(b"POST /A HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert request is not None
    assert request.keep_alive is False


def test_connection_close_header() -> None:
    """Connection: close ends keep-alive."""
    request = one(b"POST /A HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert request is not None
    assert request.keep_alive is False


@pytest.mark.parametrize(
    "data",
    [
        b"POST /A HTTP/1.1\nContent-Length: 0\n\n",
        b"POST /A HTTP/1.1\r\nHost: x\n",
        b"\n",
        b"POST /A HTTP/1.1\r\nX: a\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_bare_lf_line_ends_are_refused_at_once(data: bytes) -> None:
    """A head with a bare LF line end is refused when the LF arrives, not waited on forever."""
    with pytest.raises(HTTPError) as info:
        one(data)
    assert (info.value.status, info.value.message) == (
        400,
        "request head lines must end with CRLF, not a bare LF",
    )


@pytest.mark.parametrize("size", [b"0x2", b"+2", b"0_2", b"-0", b"2 2", b"1" * 17, b""])
def test_chunk_size_must_be_plain_hex(size: bytes) -> None:
    """A chunk size is 1-16 hex digits, as Go reads it: no 0x, sign, underscore or inner blank."""
    head = b"POST /A HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(HTTPError) as info:
        one(head + size + b"\r\n{}\r\n0\r\n\r\n")
    assert (info.value.status, info.value.message) == (
        400,
        f"invalid chunk size {size[:20].decode()!r}",
    )


def test_chunk_size_with_extension_and_blanks() -> None:
    """Upper/lower-case hex, blanks before an extension and the extension itself are accepted."""
    data = (
        b"POST /A HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0000A ;name=value\r\n0123456789\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    request = one(data)
    assert request is not None
    assert request.body == b"0123456789{}"


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"POST /A HTTP/2.0\r\n\r\n", 505, "unsupported HTTP version 'HTTP/2.0'"),
        (b"POST /A HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "invalid Content-Length 'x'"),
        (
            b"POST /A HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "conflicting Content-Length headers",
        ),
        (
            b"POST /A HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding are set",
        ),
        (
            b"POST /A HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "unsupported Transfer-Encoding 'gzip'",
        ),
        (b"POST /A HTTP/1.1\r\n folded\r\n\r\n", 400, "malformed header line ' folded'"),
        (
            b"POST /A HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "invalid chunk size 'zz'",
        ),
    ],
)
def test_bad_framing_rejected(data: bytes, status: int, message: str) -> None:
    """Requests whose framing cannot be trusted are rejected with a status and a clear message."""
    with pytest.raises(HTTPError) as info:
        one(data)
    assert (info.value.status, info.value.message) == (status, message)


def test_body_limit() -> None:
    """A Content-Length above max_body is refused with 413 before the body arrives."""
    with pytest.raises(HTTPError) as info:
        one(b"POST /A HTTP/1.1\r\nContent-Length: 11\r\n\r\n", max_body=10)
    assert (info.value.status, info.value.message) == (413, "request body is larger than 10 bytes")


def test_head_limit() -> None:
    """A request head that never ends is refused with 431 once it passes max_head."""
    with pytest.raises(HTTPError) as info:
        one(b"POST /A HTTP/1.1\r\nX: " + b"a" * 200, max_head=100)
    assert (info.value.status, info.value.message) == (
        431,
        "request head is larger than 100 bytes",
    )


def test_expect_continue_flag() -> None:
    """Expect: 100-continue with the body still missing asks the server for a 100 reply."""
    parser = RequestParser()
    parser.feed(b"POST /A HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert parser.next() is None
    assert parser.continue_wanted is True
    parser.feed(b"{}")
    request = parser.next()
    assert request is not None
    assert request.body == b"{}"
