"""SDK server under hostile clients: a cap on connections and a whole-request deadline."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit.sdk import PluginServer
from tests._sdk_helpers import RawClient, wait_for

# A request that is never finished in time at one byte per tick.
_TRICKLE = b"POST /Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]"


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Raise this process's soft limit of open files (for thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if want < 6000:
        pytest.skip(f"the hard limit of open files is {hard}: too low for 2,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _echo_server(**options: object) -> PluginServer:
    server = PluginServer([], **options)  # type: ignore[arg-type]
    server.add_handler("Echo", lambda request: request)
    return server


class Attackers:
    """``count`` unix connections to ``path`` in a thread, each sending one byte per ``tick``.

    A connection the server closed is opened again at the next tick, as a
    determined attacker would. ``stop()`` closes them all.
    """

    def __init__(self, path: Path, count: int, tick: float, *, idle: bool = False) -> None:
        self.path = str(path)
        self.tick = tick
        self.idle = idle
        self.socks: list[socket.socket | None] = [None] * count
        self.sent = [0] * count
        self.reconnects = 0
        self.cut = 0
        self.rounds = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self, i: int) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.path)
        except OSError:  # the backlog is full: try again next tick
            sock.close()
            return
        if self.idle:  # one whole request, then a keep-alive connection left idle
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(_TRICKLE)
            sock.recv(65536)
            sock.setblocking(False)
        self.socks[i] = sock
        self.sent[i] = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            for i, sock in enumerate(self.socks):
                if sock is None:
                    self.reconnects += 1
                    self.connect(i)
                    continue
                if self.idle:
                    continue
                try:
                    sock.send(_TRICKLE[self.sent[i] % len(_TRICKLE) :][:1])
                    self.sent[i] += 1
                except OSError:  # closed by the server
                    self.cut += 1
                    sock.close()
                    self.socks[i] = None
            self.rounds += 1
            self.stopping.wait(max(0.0, self.tick - (time.monotonic() - started)))

    def start(self) -> None:
        for i in range(len(self.socks)):
            self.connect(i)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        for sock in self.socks:
            if sock is not None:
                sock.close()


# The server as a plugin process usually runs: 1,024 open files at most.
_PLUGIN = """
import resource, sys
from pluginkit.sdk import PluginServer

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
cap = None if sys.argv[2] == "default" else int(sys.argv[2])
server = PluginServer([], max_connections=cap, threads=int(sys.argv[3]))
server.add_handler("Echo", lambda request: request)
server.serve(sys.argv[1])
"""


@contextlib.contextmanager
def _plugin_process(path: Path, cap: int | None, threads: int) -> Iterator[None]:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _PLUGIN, str(path), str(cap or "default"), str(threads)],
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        wait_for(lambda: path.exists() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, "the plugin process exited"
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _good_client(path: Path, calls: int = 10) -> list[float]:
    """Make ``calls`` calls, each on a new connection; return how long each took."""
    took = []
    for n in range(calls):
        started = time.monotonic()
        with RawClient(path, timeout=5) as client:
            reply = client.call("Echo", [n])
            assert (reply.status, reply.json()) == (200, [n])
        took.append(time.monotonic() - started)
        time.sleep(0.3)  # spread over several of the attackers' ticks
    return took


@pytest.mark.slow
@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
@pytest.mark.parametrize(
    ("kind", "count", "cap"),
    [("slow", 2000, None), ("slow", 2000, 256), ("idle", 1000, None), ("idle", 1000, 256)],
    ids=["slow-2000", "slow-2000-cap256", "idle-1000", "idle-1000-cap256"],
)
def test_hostile_connections_do_not_starve_a_good_client(
    many_fds: None, short_tmp: Path, kind: str, count: int, cap: int | None, threads: int
) -> None:
    """Under 2,000 trickling or 1,000 idle connections a good client gets 10 of 10, each < 1 s.

    The plugin runs as a process of its own with 1,024 open files at most,
    as plugin processes usually do.
    """
    path = short_tmp / "s.sock"
    attackers = Attackers(path, count, 1.7, idle=kind == "idle")
    with _plugin_process(path, cap, threads):
        try:
            attackers.start()
            wait_for(lambda: attackers.rounds >= 1, timeout=30)
            took = _good_client(path)
        finally:
            attackers.stop()
    assert len(took) == 10
    assert max(took) < 1.0, f"slowest answer took {max(took):.3f} s"
    if kind == "slow":
        assert attackers.cut > 0  # the cap held: attackers were cut off


def test_trickling_client_is_cut_at_the_whole_request_deadline(short_tmp: Path) -> None:
    """A client sending a byte every 50 ms still gets 408 once read_timeout has passed."""
    path = short_tmp / "s.sock"
    with _echo_server(read_timeout=0.3) as server:
        server.start(path)
        with RawClient(path) as slow:
            started = time.monotonic()
            reply = None
            for byte in _TRICKLE:
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    break
                slow.sock.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    slow.buf += slow.sock.recv(65536)
                if b"\r\n\r\n" in slow.buf:
                    break
            slow.sock.settimeout(10)
            reply = slow.read_reply()
            took = time.monotonic() - started
            assert (reply.status, reply.json(), reply.headers["connection"]) == (
                408,
                {"Err": "request not completed within 0.3 s"},
                "close",
            )
            assert slow.closed_by_server()
    assert took < len(_TRICKLE) * 0.05  # cut before the request could have been completed


def test_at_the_cap_idle_connections_go_first(short_tmp: Path) -> None:
    """At max_connections the longest-idle keep-alive is closed, not a request being received."""
    path = short_tmp / "s.sock"
    with _echo_server(max_connections=4) as server:
        server.start(path)
        with (
            RawClient(path) as idle1,
            RawClient(path) as partial1,
            RawClient(path) as idle2,
            RawClient(path) as partial2,
        ):
            assert idle1.call("Echo", [1]).json() == [1]
            partial1.send(b"POST /Echo HTTP/1.1\r\n")
            time.sleep(0.2)  # read by the server before the next one (ordering)
            assert idle2.call("Echo", [2]).json() == [2]
            partial2.send(b"POST /Echo HTTP/1.1\r\n")
            time.sleep(0.2)  # read by the server before the next one (ordering)
            with RawClient(path) as fifth:
                assert fifth.call("Echo", [5]).json() == [5]
                assert idle1.closed_by_server()
                assert idle2.call("Echo", [3]).json() == [3]
                for partial in (partial1, partial2):
                    partial.send(b"Content-Length: 3\r\n\r\n[7]")
                replies = [p.read_reply() for p in (partial1, partial2)]
                assert [(r.status, r.json()) for r in replies] == [(200, [7]), (200, [7])]


def test_at_the_cap_the_oldest_partial_request_goes_when_none_is_idle(short_tmp: Path) -> None:
    """With no idle connection at the cap, the request that began first is cut off."""
    path = short_tmp / "s.sock"
    with _echo_server(max_connections=2) as server:
        server.start(path)
        with RawClient(path) as first, RawClient(path) as second:
            first.send(b"POST /Echo HTTP/1.1\r\n")
            time.sleep(0.2)  # read by the server before the next one (ordering)
            second.send(b"POST /Echo HTTP/1.1\r\n")
            time.sleep(0.2)  # read by the server before the next one (ordering)
            with RawClient(path) as third:
                assert third.call("Echo", [3]).json() == [3]
            assert first.closed_by_server()
            second.send(b"Content-Length: 3\r\n\r\n[9]")
            assert second.read_reply().json() == [9]


def test_max_connections_must_be_positive() -> None:
    """max_connections is an int >= 1 or None."""
    with pytest.raises(ValueError, match="max_connections") as info:
        PluginServer([], max_connections=0)
    assert str(info.value) == "max_connections must be an int >= 1 or None, not 0"


def test_silent_connection_is_closed_at_the_deadline(short_tmp: Path) -> None:
    """A connection that sends nothing at all is closed, without a reply, after read_timeout."""
    path = short_tmp / "s.sock"
    with _echo_server(read_timeout=0.2) as server:
        server.start(path)
        with RawClient(path) as silent, RawClient(path) as used:
            assert used.call("Echo", [1]).json() == [1]
            assert silent.closed_by_server()  # EOF: no 408 for a request never begun
            time.sleep(0.3)
            assert used.call("Echo", [2]).json() == [2]  # idle keep-alive: left open
