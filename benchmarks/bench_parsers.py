"""The wire layer's HTTP/1.1 parsers vs h11 and httptools, on a typical plugin call.

Times, interleaved in rounds, parsing one request (the server's side) and one
reply (the client's side) as Docker sends them, and prints microseconds per
parse and each library's time divided by pluginkit's (above 1.0: pluginkit is
faster). h11 and httptools are not dependencies: each is measured when it is
installed (``pip install h11 httptools``), else skipped. The decision these
numbers support is written in ``pluginkit/_wire/__init__.py``.
Run alone: ``python3 benchmarks/bench_parsers.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pluginkit._wire._clientside import parse_head, plain_heads, plain_reply  # noqa: E402
from pluginkit._wire._serverside import RequestParser  # noqa: E402

N = 20000
ROUNDS = 5
BODY = b'{"Name":"v1","ID":"abcdef0123"}'
REQUEST = (
    b"POST /VolumeDriver.Mount HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
    b"User-Agent: Go-http-client/1.1\r\nContent-Length: %d\r\n"
    b"Accept: application/vnd.docker.plugins.v1.2+json\r\nAccept-Encoding: gzip\r\n\r\n%b"
    % (len(BODY), BODY)
)
REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.1+json\r\n"
    b"Date: Sun, 06 Dec 2026 12:00:00 GMT\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
)
HEAD = REPLY[: REPLY.find(b"\r\n\r\n")]


def ours_request() -> object:
    parser = RequestParser()
    parser.feed(REQUEST)
    return parser.next()


def ours_reply() -> object:
    return plain_reply(REPLY, 1 << 20) or parse_head(HEAD)


def ours_reply_fresh() -> object:
    return parse_head(HEAD)


def candidates() -> dict[str, dict[str, Callable[[], object]]]:
    """The parse functions per side: pluginkit's, and those of the installed libraries."""
    plain_heads[HEAD] = len(BODY)
    sides: dict[str, dict[str, Callable[[], object]]] = {
        "request": {"pluginkit": ours_request},
        "reply": {"pluginkit": ours_reply, "pluginkit (new head)": ours_reply_fresh},
    }
    if importlib.util.find_spec("h11") is not None:
        h11: Any = importlib.import_module("h11")  # optional: not a dependency

        def h11_request() -> object:
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(REQUEST)
            return conn.next_event(), conn.next_event()

        def h11_reply() -> object:
            conn = h11.Connection(h11.CLIENT)
            conn.send(h11.Request(method="POST", target="/x", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            conn.receive_data(REPLY)
            return conn.next_event(), conn.next_event()

        sides["request"]["h11"] = h11_request
        sides["reply"]["h11"] = h11_reply
    if importlib.util.find_spec("httptools") is not None:
        httptools: Any = importlib.import_module("httptools")  # optional

        class Sink:
            def __init__(self) -> None:
                self.body = b""

            def on_url(self, url: bytes) -> None:
                self.url = url

            def on_body(self, body: bytes) -> None:
                self.body += body

        def httptools_request() -> object:
            sink = Sink()
            parser: Any = httptools.HttpRequestParser(sink)
            parser.feed_data(REQUEST)
            return sink

        def httptools_reply() -> object:
            sink = Sink()
            parser: Any = httptools.HttpResponseParser(sink)
            parser.feed_data(REPLY)
            return sink

        sides["request"]["httptools"] = httptools_request
        sides["reply"]["httptools"] = httptools_reply
    return sides


def per_call(function: Callable[[], object]) -> float:
    """Microseconds per call of ``function`` over N calls."""
    start = time.perf_counter()
    for _ in range(N):
        function()
    return (time.perf_counter() - start) / N * 1e6


def main() -> int:
    print(f"{'side':<9}{'parser':<22}{'us/parse':>10}{'vs pluginkit':>14}")
    for side, functions in candidates().items():
        times: dict[str, list[float]] = {name: [] for name in functions}
        ratios: dict[str, list[float]] = {name: [] for name in functions}
        for _ in range(ROUNDS):  # interleaved: a busy moment hits all of them
            ours = per_call(functions["pluginkit"])
            times["pluginkit"].append(ours)
            for name, function in functions.items():
                if name != "pluginkit":
                    spent = per_call(function)
                    times[name].append(spent)
                    ratios[name].append(spent / ours)
        for name in functions:
            ratio = f"{statistics.median(ratios[name]):.2f}" if ratios[name] else "1.00"
            print(f"{side:<9}{name:<22}{statistics.median(times[name]):>10.2f}{ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
