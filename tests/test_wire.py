"""The wire layer: what one end writes the other end reads, at any split (Hypothesis)."""

from __future__ import annotations

import contextlib
import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import InvalidConfigError, PluginCallError
from pluginkit._wire._address import UNIX_PATH_MAX, parse_address, unix_path_fits
from pluginkit._wire._clientside import (
    UNIX_HOST_LINE,
    BadReply,
    BodyCollector,
    ChunkedDecoder,
    HeadReader,
    StreamDecoder,
    TooLarge,
    call_error,
    complete_reply,
    parse_head,
    plain_reply,
    remember_plain_head,
    request_prefix,
)
from pluginkit._wire._json import decode, decode_body, encode, encode_compact, json_error_reason
from pluginkit._wire._retry import backoff, check_retry_timeout, check_timeout, retry_delay
from pluginkit._wire._serverside import HTTPError, RequestParser, chunk, response_head

methods = st.from_regex(r"[A-Za-z][A-Za-z0-9.]{0,30}", fullmatch=True)
cuts = st.lists(st.integers(min_value=0, max_value=5000), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def pieces(data: bytes, points: list[int]) -> list[bytes]:
    """Split ``data`` at ``points`` (taken modulo its length); never an empty piece."""
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks) if b > a]


def client_request(method: str, body: bytes, *, chunked: bool) -> bytes:
    """A request as the host client writes it (bytes body, or a file of unknown size)."""
    prefix = request_prefix(method, UNIX_HOST_LINE)
    if not chunked:
        return prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body
    blocks = [body[i : i + 5] for i in range(0, len(body), 5)]
    encoded = b"".join(b"%x\r\n%b\r\n" % (len(b), b) for b in blocks)
    return prefix + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"


# -- host -> plugin ------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(methods, st.binary(max_size=200), st.booleans()), min_size=1), cuts)
def test_server_reads_what_the_client_writes(
    requests: list[tuple[str, bytes, bool]], points: list[int]
) -> None:
    """Pipelined client requests (sized or chunked), split anywhere, parse back whole."""
    data = b"".join(client_request(m, body, chunked=c) for m, body, c in requests)
    parser = RequestParser()
    got = []
    for piece in pieces(data, points):
        parser.feed(piece)
        while (request := parser.next()) is not None:
            got.append((request.method, request.path, request.body, request.keep_alive))
    assert got == [(b"POST", f"/{m}".encode(), body, True) for m, body, _ in requests]
    assert parser.idle


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("", "method must be a non-empty str, not ''"),
        ("Volume Driver", "invalid method name 'Volume Driver'"),
        ("A\x00", "invalid method name 'A\\x00'"),
    ],
)
def test_request_prefix_refuses_bad_method_names(method: str, message: str) -> None:
    """A method name that would break the request line is refused, naming it."""
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        request_prefix(method, UNIX_HOST_LINE)
    assert str(info.value) == message


def test_request_prefix_is_dockers_request_line() -> None:
    """The request line and fixed headers are the ones Docker's client sends."""
    assert request_prefix("Plugin.Activate", UNIX_HOST_LINE) == (
        b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
        b"Accept: application/vnd.docker.plugins.v1.2+json\r\n"
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_request_parser_takes_garbage_calmly(data: bytes) -> None:
    """Arbitrary bytes parse, wait for more, or raise HTTPError with a 4xx/5xx status."""
    parser = RequestParser()
    parser.feed(data)
    error: HTTPError | None = None
    try:
        while parser.next() is not None:
            pass
    except HTTPError as exc:
        error = exc
    if error is not None:
        assert 400 <= error.status < 600
        assert error.message


# -- plugin -> host ------------------------------------------------------------


def collect(data: bytes, points: list[int], limit: int = 1 << 20) -> tuple[int, bool, bytes]:
    """Read one reply through HeadReader and BodyCollector, fed the given pieces."""
    parts = [*pieces(data, points), b""]
    reader = HeadReader(parts.pop(0))
    while reader.result is None:
        reader.feed(parts.pop(0))
    head, rest = reader.result
    collector = BodyCollector(head, rest, limit)
    while not collector.done:
        collector.feed(parts.pop(0))
    return head.status, head.keep_alive, collector.body


def stream(data: bytes, points: list[int]) -> bytes:
    """Read one reply's body through StreamDecoder, fed the given pieces."""
    parts = [*pieces(data, points), b""]
    reader = HeadReader(parts.pop(0))
    while reader.result is None:
        reader.feed(parts.pop(0))
    decoder = StreamDecoder(*reader.result)
    out = bytearray()
    while not decoder.finished():
        decoder.feed(parts.pop(0))
        out += decoder.pending
        decoder.pending.clear()
    return bytes(out + decoder.pending)


statuses = st.sampled_from([200, 400, 404, 500])


@settings(max_examples=150, deadline=None)
@given(statuses, st.binary(max_size=300), st.booleans(), st.booleans(), cuts)
def test_client_reads_what_the_server_writes(
    status: int, body: bytes, streamed: bool, http10: bool, points: list[int]
) -> None:
    """A server response (sized, chunked or until-close), split anywhere, reads back whole."""
    if streamed:
        head = response_head(status, None, http10=http10)
        framed = b"".join(chunk(body[i : i + 7]) for i in range(0, len(body), 7) if not http10)
        data = head + (body if http10 else framed + chunk(b""))
    else:
        data = response_head(status, len(body), http10=http10) + body
    keep_alive = not (streamed and http10)
    assert collect(data, points) == (status, keep_alive, body)
    assert stream(data, points) == body
    done = complete_reply(data, True, 1 << 20)
    assert done is not None
    assert (done[0].status, done[1]) == (status, body)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), cuts)
def test_chunked_decoder_takes_any_split(body: bytes, points: list[int]) -> None:
    """Chunks written by ``chunk`` decode back to the body, whatever the split."""
    data = b"".join(chunk(body[i : i + 11]) for i in range(0, len(body), 11)) + chunk(b"")
    decoder = ChunkedDecoder()
    rest = b""
    for piece in pieces(data + b"NEXT", points):
        rest = decoder.feed(piece) if not decoder.done else rest + piece
    assert decoder.done
    assert bytes(decoder.out) == body
    assert rest == b"NEXT"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), cuts)
def test_reply_readers_take_garbage_calmly(data: bytes, points: list[int]) -> None:
    """Arbitrary reply bytes read, or raise BadReply/TooLarge - never anything else."""
    # IndexError: the pieces ran out, i.e. the reader wanted more.
    with contextlib.suppress(BadReply, TooLarge, IndexError):
        collect(b"HTTP/1.1 200 OK\r\n" + data, points, limit=100)
    with contextlib.suppress(BadReply, TooLarge, IndexError):
        stream(b"HTTP/1.1 200 OK\r\n" + data, points)


def test_body_collector_names_the_truncation() -> None:
    """A reply cut short says how much of it came."""
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10")
    collector = BodyCollector(head, b"abc", 100)
    with pytest.raises(BadReply) as info:
        collector.feed(b"")
    assert str(info.value) == "reply truncated: got 3 of 10 bytes"


def test_body_collector_refuses_too_large_bodies() -> None:
    """A Content-Length over the limit is refused before any body byte is read."""
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 101")
    with pytest.raises(TooLarge) as info:
        BodyCollector(head, b"", 100)
    assert info.value.size == 101


def test_head_reader_names_a_close_mid_head() -> None:
    """A connection closed inside the head is a BadReply saying so."""
    reader = HeadReader(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(BadReply) as info:
        reader.feed(b"")
    assert str(info.value) == "connection closed in the middle of the reply headers"


def test_call_error_is_dockers_mapping() -> None:
    """A non-200 reply becomes PluginCallError with ``Err`` when set, else the body."""
    assert str(call_error("M", 500, b'{"Err":"boom"}')) == str(PluginCallError("M", 500, "boom"))
    assert str(call_error("M", 404, b"404 page not found\n")) == str(
        PluginCallError("M", 404, "404 page not found\n")
    )


# -- JSON, addresses, retries ------------------------------------------------------


@given(json_values)
def test_json_codec_matches_the_json_module(value: object) -> None:
    """The fast encoders and decoders give what the json module gives."""
    assert encode(value) == json.dumps(value)
    assert encode_compact(value) == json.dumps(value, separators=(",", ":"))
    assert decode(json.dumps(value)) == value
    assert decode_body(json.dumps(value).encode()) == value


def test_json_error_reason_words_deep_nesting() -> None:
    """Too deep JSON is 'nested too deeply', not Python's recursion message."""
    with pytest.raises(RecursionError) as info:
        decode("[" * 100000 + "]" * 100000)
    assert json_error_reason(info.value) == "it is nested too deeply"


def test_unix_path_limit_is_written_once() -> None:
    """107 bytes fit in a unix socket address, 108 do not; addresses obey it."""
    assert UNIX_PATH_MAX == 107
    assert unix_path_fits("/" + "a" * 106)
    assert not unix_path_fits("/" + "a" * 107)
    assert parse_address("unix:///" + "a" * 106).unix_path == "/" + "a" * 106
    with pytest.raises(InvalidConfigError) as info:
        parse_address("unix:///" + "a" * 107)
    assert str(info.value) == f"unix socket path {'/' + 'a' * 107!r} is too long"


def test_retry_rule_is_dockers() -> None:
    """Delays double from one unit up to 30, while elapsed + delay stays under the budget."""
    assert [backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert retry_delay(0, 0.0, 30.0, 1.0) == 1.0
    assert retry_delay(2, 25.0, 30.0, 1.0) == 4.0
    assert retry_delay(2, 26.0, 30.0, 1.0) is None
    assert retry_delay(0, 0.0, 0.0, 1.0) is None
    assert retry_delay(3, 0.0, 30.0, 0.01) == pytest.approx(0.08)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_timeouts_are_checked_with_their_names(bad: float) -> None:
    """Bad timeouts and retry budgets are refused, naming the option."""
    with pytest.raises(ValueError, match=r"^timeout must be") as info:
        check_timeout("timeout", bad)
    assert str(info.value) == f"timeout must be > 0 or None, not {bad!r}"
    if bad != 0:
        with pytest.raises(ValueError, match=r"^retry_timeout must be") as info:
            check_retry_timeout(bad)
        assert str(info.value) == f"retry_timeout must be >= 0, not {bad!r}"


def test_plain_replies_are_recognised_only_when_whole_and_seen() -> None:
    """A plain 200 reply is taken from the cache of heads only when its body is all there."""
    data = b'HTTP/1.1 200 OK\r\nX-Test-Plain: 1\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    assert plain_reply(data, 100) is None  # its head was never parsed
    head = parse_head(data[: data.find(b"\r\n\r\n")])
    remember_plain_head(data, data.find(b"\r\n\r\n") + 4, head)
    assert plain_reply(data, 100) == b'{"a": 1}'
    assert plain_reply(data[:-1], 100) is None  # truncated
    assert plain_reply(data + b"x", 100) is None  # more than the body
    assert plain_reply(data, 7) is None  # over the limit
    closing = data.replace(b"X-Test-Plain: 1", b"Connection: close")
    end = closing.find(b"\r\n\r\n")
    remember_plain_head(closing, end + 4, parse_head(closing[:end]))
    assert plain_reply(closing, 100) is None  # not kept alive: never cached
