"""The I/O loop behind PluginServer: sockets, connections, the optional worker pool.

One thread runs a selector loop over the listening socket and every
connection; requests are parsed by :mod:`pluginkit._wire._serverside` and answered by
the ``answer`` callable the server gives (routing and handlers live in
:mod:`pluginkit.sdk._server`). Without workers, ``answer`` runs inline in the
loop - the fastest path: no thread hand-off per request, which costs more
than the whole request in CPython. With workers, a complete request is handed
to a pool thread, which also writes the reply (what the socket cannot take
at once is left to the loop); the loop keeps accepting and parsing, and only
takes a connection back when there is something to do (pipelined bytes, the
rest of a reply, a close, TLS), so a plain request-reply costs no loop
wake-up.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import queue
import select
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._wire._address import unix_path_fits
from .._wire._json import encode_compact
from .._wire._listen import ListenAddress
from .._wire._serverside import HTTPError, Request, RequestParser, chunk, response_head
from ._address import prepare_unix_path
from ._async import AsyncRunner

if TYPE_CHECKING:
    import ssl

__all__ = [
    "Answer",
    "Deferred",
    "ServeLoop",
    "Stream",
    "close_quietly",
    "error_reply",
    "handling",
]

logger = logging.getLogger("pluginkit.sdk")


class _Handling(threading.local):
    """Which server a pool thread is answering a request for (stop() must not wait on it)."""

    state: ServeLoop | None = None


handling = _Handling()

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_RECV_SIZE = 262144
# The listen backlog, as Go takes it (the kernel clamps it to somaxconn): a
# burst of connections (clients reconnecting after an eviction at the cap)
# must not fill it, or a well-behaved client's connect() fails with EAGAIN.
_BACKLOG = 4096


class _NotRaised(Exception):
    """Stands in for ssl's exceptions until a TLS server loads ``ssl``: never raised."""


# ssl is imported only by a server that serves TLS (it costs an SDK plugin
# several MB); until then plain sockets never raise these, so except clauses
# name placeholders. Module globals: looked up when an except clause runs.
_SSLWantReadError: type[Exception] = _NotRaised
_SSLWantWriteError: type[Exception] = _NotRaised
_SSLError: type[Exception] = _NotRaised


def _load_ssl() -> None:
    """Bind the ssl exceptions the loop catches (a TLS server is being set up)."""
    global _SSLWantReadError, _SSLWantWriteError, _SSLError
    import ssl

    _SSLWantReadError = ssl.SSLWantReadError
    _SSLWantWriteError = ssl.SSLWantWriteError
    _SSLError = ssl.SSLError


class _Conn:
    """One client connection, owned by the loop thread (or by a worker while ``busy``)."""

    __slots__ = (
        "busy",
        "close_after",
        "closed",
        "eof",
        "events",
        "fresh",
        "handshaking",
        "out",
        "parser",
        "reply",
        "serial",
        "since",
        "sock",
        "stream",
    )

    def __init__(self, sock: socket.socket, parser: RequestParser, now: float, serial: int) -> None:
        self.sock = sock
        self.parser = parser
        self.out = bytearray()
        self.stream: Stream | None = None
        self.events = 0
        self.busy = False
        self.close_after = False
        #: The client closed its end while a handler ran: answer the requests
        #: it sent (pipelined), then close.
        self.eof = False
        self.closed = False
        self.handshaking = False
        #: Nothing received yet: counted as a request in progress since the
        #: accept (deadline and eviction), not as an idle keep-alive.
        self.fresh = True
        # When the request in progress began (its first byte was read, or
        # the TLS handshake began); between requests, roughly when the
        # connection fell idle. Deadlines and eviction order go by it.
        self.since = now
        #: Accept order: breaks ties of ``since`` (connections accepted together).
        self.serial = serial
        #: A deferred reply, ready: handed from the event loop's thread to this loop.
        self.reply: tuple[Request, bytes | Stream] | None = None


class Stream:
    """A streamed reply: the response head, the iterator of body pieces, their framing."""

    __slots__ = ("chunked", "head", "pieces")

    def __init__(self, head: bytes, pieces: Iterator[bytes], *, chunked: bool = True) -> None:
        self.head = head
        self.pieces = pieces
        #: False for an HTTP/1.0 client: pieces go out as they are, and
        #: closing the connection ends the body.
        self.chunked = chunked

    def frame(self, piece: bytes) -> bytes:
        """Return one piece as it goes on the wire."""
        return chunk(bytes(piece)) if self.chunked else bytes(piece)

    @property
    def end(self) -> bytes:
        """What ends the body on the wire (the last chunk, or nothing)."""
        return b"0\r\n\r\n" if self.chunked else b""


def send_all(sock: socket.socket, data: bytes, timeout: float = 60.0) -> None:
    """Write all of ``data`` to a non-blocking socket, waiting at most ``timeout`` when full."""
    view = memoryview(data)
    deadline = 0.0
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError, _SSLWantWriteError, _SSLWantReadError):
            sent = 0
        view = view[sent:]
        if view and not sent:
            now = time.monotonic()
            deadline = deadline or now + timeout
            if now >= deadline:
                raise TimeoutError("the client does not read its reply")
            select.select([], [sock], [], deadline - now)


def error_reply(status: int, message: str) -> tuple[int, bytes]:
    """Return Docker's error envelope ``{"Err": message}`` with its status."""
    return status, encode_compact({"Err": message}).encode()


def close_quietly(pieces: Iterator[bytes]) -> None:
    """Close a streamed reply's iterator (or file) if it can be closed; log, never raise."""
    close = getattr(pieces, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing a streamed reply failed")


class Deferred:
    """A reply still to come: the awaitable an ``async`` handler returned.

    The loop runs ``awaitable`` on the server's event loop, then calls
    ``finish(result, exc)`` (in that loop's thread) for the reply.
    """

    __slots__ = ("awaitable", "finish")

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable
        self.finish: Callable[[Any, BaseException | None], bytes | Stream] | None = None


#: What the server does with one request: the complete reply bytes, a
#: :class:`Stream` for a streamed reply, or a :class:`Deferred` one. It may
#: read ``loop.stopping``.
Answer = Callable[[Request, "ServeLoop"], "bytes | Stream | Deferred"]


@attrs.define(eq=False)
class ServeLoop:
    """Everything belonging to one run of a server: sockets, selector, connections, workers."""

    answer: Answer
    name: str | None
    threads: int
    max_body: int
    where: ListenAddress
    gid: int | None
    mode: int
    ssl_context: ssl.SSLContext | None
    url: str = ""
    read_timeout: float | None = None
    #: The most connections held at once; at the cap, the longest-idle
    #: keep-alive connections are closed first, then the oldest requests
    #: still being received.
    max_connections: int = 1024
    #: More names served by the same server: a hard link to the unix socket
    #: (``<alias>.sock`` beside it) or a spec file each.
    aliases: tuple[str, ...] = ()
    #: A listening socket handed over by the parent (``LISTEN_FDS``): served
    #: on as it is, its path never removed (and no alias links made).
    inherited: socket.socket | None = None
    listener: socket.socket = attrs.field(init=False)
    selector: selectors.BaseSelector = attrs.field(init=False)
    waker_r: socket.socket = attrs.field(init=False)
    waker_w: socket.socket = attrs.field(init=False)
    conns: set[_Conn] = attrs.field(init=False, factory=set)
    posted: deque[_Conn] = attrs.field(init=False, factory=deque)
    jobs: queue.SimpleQueue[tuple[_Conn, Request] | None] = attrs.field(
        init=False, factory=queue.SimpleQueue
    )
    workers: list[threading.Thread] = attrs.field(init=False, factory=list)
    # Guards the hand-back of a connection from a pool thread to the loop.
    lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    socket_ino: int | None = attrs.field(init=False, default=None)
    spec_file: Path | None = attrs.field(init=False, default=None)
    spec_ino: int | None = attrs.field(init=False, default=None)
    #: Files made for the aliases (links, spec files) and their inode numbers.
    alias_files: list[tuple[Path, int]] = attrs.field(init=False, factory=list)
    stopping: bool = attrs.field(init=False, default=False)
    #: True while run() runs (a forced stop may interrupt it then, not after).
    running: bool = attrs.field(init=False, default=False)
    deadline: float = attrs.field(init=False, default=0.0)
    # After a failed accept(): the pause before the next try, and when it ends
    # (0.0 = the listener is watched).
    accept_delay: float = attrs.field(init=False, default=0.0)
    accept_resume: float = attrs.field(init=False, default=0.0)
    next_sweep: float = attrs.field(init=False, default=0.0)
    #: time.monotonic() as of the last wake-up of the loop (cheaper than a
    #: clock read per received packet).
    now: float = attrs.field(init=False, factory=time.monotonic)
    accepted: int = attrs.field(init=False, default=0)
    #: The event loop for async handlers (started with the first one).
    runner: AsyncRunner | None = attrs.field(init=False, default=None)
    closed: bool = attrs.field(init=False, default=False)
    loop_ident: int | None = attrs.field(init=False, default=None)
    done: threading.Event = attrs.field(init=False, factory=threading.Event)
    # Where the loop thread receives (only it: pool threads never read).
    recv_view: memoryview = attrs.field(
        init=False, factory=lambda: memoryview(bytearray(_RECV_SIZE))
    )

    def __attrs_post_init__(self) -> None:
        if self.ssl_context is not None:
            _load_ssl()
        self.selector = selectors.DefaultSelector()
        self.waker_r, self.waker_w = socket.socketpair()
        self.waker_r.setblocking(False)
        self.waker_w.setblocking(False)
        try:
            self.listener = self._bind()
        except BaseException:
            self.selector.close()
            self.waker_r.close()
            self.waker_w.close()
            raise
        self.selector.register(self.listener, _READ, self.on_accept)
        self.selector.register(self.waker_r, _READ, self.on_wake)
        for n in range(self.threads):
            worker = threading.Thread(
                target=self.work_loop, name=f"pluginkit-sdk-worker-{n}", daemon=True
            )
            worker.start()
            self.workers.append(worker)

    def _bind(self) -> socket.socket:
        where = self.where
        if self.inherited is not None:
            sock = self.inherited
            self.url = _url_of(sock)
        elif where.path is not None:
            path = where.path
            prepare_unix_path(path)
            # Bind under a temporary name, set mode and group, listen, then
            # rename into place: whoever finds the socket (Docker's discovery
            # polls the directory) finds it ready, with its final permissions.
            staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            if not unix_path_fits(staged):
                staged = path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(staged))
                try:
                    os.chmod(staged, self.mode)
                    if self.gid is not None:
                        os.chown(staged, -1, self.gid)
                    sock.listen(_BACKLOG)
                    os.replace(staged, path)
                except BaseException:
                    staged.unlink(missing_ok=True)
                    raise
                self.socket_ino = path.stat().st_ino
                for alias in self.aliases:
                    # Another name for the same socket: a unix socket is found
                    # by its inode, so a connect() through the link reaches it.
                    link = path.with_name(f"{alias}.sock")
                    prepare_unix_path(link)
                    os.link(path, link)
                    self.alias_files.append((link, self.socket_ino))
            except BaseException:
                sock.close()
                for link, ino in self.alias_files:
                    _remove_if_ours(link, ino)
                _remove_if_ours(path, self.socket_ino)
                raise
            self.url = f"unix://{path}"
        else:
            infos = socket.getaddrinfo(
                where.host, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
                sock.listen(_BACKLOG)
            except BaseException:
                sock.close()
                raise
            self.url = _url_of(sock)
        sock.setblocking(False)
        return sock

    def write_spec(self, spec_dir: Path) -> None:
        """Write ``<spec_dir>/<name>.spec`` atomically (temp file, fsync, rename)."""
        host, _, port = self.url[len("tcp://") :].rpartition(":")
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"  # a wildcard is not an address a client can dial
        scheme = "https" if self.ssl_context is not None else "tcp"
        from .._store import atomic_write  # here: only TCP plugins write spec files

        spec_dir.mkdir(parents=True, exist_ok=True)
        url = f"{scheme}://{host}:{port}\n".encode()
        target = spec_dir / f"{self.name}.spec"
        # 0644: the engine reading it may not run as this process's user.
        atomic_write(target, url, mode=0o644)
        self.spec_file = target
        self.spec_ino = target.stat().st_ino
        for alias in self.aliases:
            other = spec_dir / f"{alias}.spec"
            atomic_write(other, url, mode=0o644)
            self.alias_files.append((other, other.stat().st_ino))

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.waker_w.send(b"\0")

    # -- the loop --------------------------------------------------------------

    def run(self) -> None:
        select = self.selector.select
        monotonic = time.monotonic
        while not self.closed:
            timeout: float | None = None
            if self.stopping:
                if not self.drain_step():
                    return
                timeout = max(0.0, min(0.1, self.deadline - time.monotonic()))
            elif self.accept_resume:
                timeout = self.resume_accepting()
            if self.read_timeout is not None and self.conns:
                now = self.now = monotonic()
                if now >= self.next_sweep:
                    period = min(self.read_timeout / 8, 1.0)
                    # Late by more than a period, the loop was blocked (an
                    # inline handler): bytes may wait unread, so judge no one.
                    self.sweep(now, judge=now - self.next_sweep < period)
                    self.next_sweep = now + period
                wait = self.next_sweep - now
                timeout = wait if timeout is None else min(timeout, wait)
            events = select(timeout)
            self.now = monotonic()
            for key, mask in events:
                data = key.data
                if type(data) is _Conn:
                    self.on_event(data, mask)
                else:
                    data(mask)

    def drain_step(self) -> bool:
        """While stopping: close what is idle; False when the loop may end."""
        if self.listener.fileno() >= 0:
            if not self.accept_resume:
                self.selector.unregister(self.listener)
            self.listener.close()
        for conn in list(self.conns):
            if not conn.busy and not conn.out and conn.stream is None and conn.parser.idle:
                self.close(conn)
        if not self.conns:
            return False
        if time.monotonic() >= self.deadline:
            logger.warning(
                "plugin server at %s: %d connection(s) still busy after the stop timeout",
                self.url,
                len(self.conns),
            )
            return False
        return True

    def sweep(self, now: float, *, judge: bool = True) -> None:
        """Cut off clients whose request is not complete ``read_timeout`` after it began.

        The deadline is for the whole request, not between bytes, so a
        client trickling a byte now and then (slowloris) is cut off as
        surely as one that stalls: it is answered 408 and disconnected (a
        TLS handshake that does not finish in time is just disconnected).
        Idle keep-alive connections are left alone: the engine keeps them
        open between calls.
        """
        assert self.read_timeout is not None
        if not judge:
            return
        limit = now - self.read_timeout
        for conn in [c for c in self.conns if c.since <= limit]:
            partial = conn.handshaking or conn.fresh or not conn.parser.idle
            if not partial or conn.busy or conn.out or conn.stream is not None:
                continue
            if conn.handshaking or conn.fresh:
                self.close(conn)  # nothing to answer: not one byte of a request came
                continue
            conn.close_after = True
            status, data = error_reply(408, f"request not completed within {self.read_timeout:g} s")
            self.send(conn, response_head(status, len(data), keep_alive=False) + data)

    def evict(self) -> bool:
        """Make room for one more connection at the cap; False when none can go.

        Idle keep-alive connections go first (longest idle first), then
        requests still being received (the oldest first: a slow client's).
        Connections whose request is being answered are never cut. A batch
        goes at once, so that a flood of new connections does not scan the
        whole set for each.
        """
        idle: list[tuple[float, int, _Conn]] = []
        partial: list[tuple[float, int, _Conn]] = []
        for conn in self.conns:
            if conn.busy or conn.out or conn.stream is not None:
                continue
            entry = (conn.since, conn.serial, conn)
            if not conn.handshaking and not conn.fresh and conn.parser.idle:
                idle.append(entry)
            else:
                partial.append(entry)
        batch = max(1, self.max_connections // 32)
        victims = heapq.nsmallest(batch, idle)
        if len(victims) < batch:
            victims += heapq.nsmallest(batch - len(victims), partial)
        if not victims:
            return False
        logger.debug(
            "plugin server at %s: at the cap of %d connections, closing %d (idle or slowest first)",
            self.url,
            self.max_connections,
            len(victims),
        )
        for _, _, conn in victims:
            self.close(conn)
        return True

    def on_wake(self, mask: int) -> None:
        with contextlib.suppress(OSError):
            self.waker_r.recv(4096)
        while self.posted:
            conn = self.posted.popleft()
            conn.busy = False
            ready = conn.reply
            if ready is not None:
                conn.reply = None
                self.deliver(conn, *ready)
            elif conn.out and not conn.closed:
                self.flush(conn)  # the rest of a reply the client was slow to take
            elif conn.close_after or conn.closed:
                self.close(conn)
            elif conn.eof:
                self.process(conn)  # what the client sent before its EOF; then closed
            else:
                self.set_events(conn, _READ)
                self.process(conn)

    def on_accept(self, mask: int) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.pause_accepting(exc)
                return
            self.accept_delay = 0.0
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.conns) >= self.max_connections and not self.evict():
                logger.warning(
                    "plugin server at %s: %d connections, every one busy: refusing a new one",
                    self.url,
                    len(self.conns),
                )
                sock.close()
                continue
            self.accepted += 1
            conn = _Conn(sock, RequestParser(max_body=self.max_body), self.now, self.accepted)
            if self.ssl_context is not None:
                try:
                    conn.sock = self.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, _SSLError) as exc:
                    logger.info("plugin server at %s: TLS setup failed: %s", self.url, exc)
                    sock.close()
                    continue
                conn.handshaking = True
            self.conns.add(conn)
            self.set_events(conn, _READ)

    def pause_accepting(self, exc: OSError) -> None:
        """Stop watching the listener for a while after a failed accept().

        Out of file descriptors (EMFILE), the pending connection stays in the
        backlog and the listener stays readable: retrying at once spins the
        loop and floods the log. Like Go's net/http, wait 5 ms, doubling up
        to 1 s, while the loop goes on serving (and closing) connections.
        """
        self.accept_delay = min(max(self.accept_delay * 2, 0.005), 1.0)
        self.accept_resume = time.monotonic() + self.accept_delay
        self.selector.unregister(self.listener)
        logger.warning(
            "plugin server at %s: accept failed: %s; retrying in %s s",
            self.url,
            exc.strerror or exc,
            f"{self.accept_delay:.3g}",
        )

    def resume_accepting(self) -> float | None:
        """Watch the listener again once the pause is over; else return the time left."""
        left = self.accept_resume - time.monotonic()
        if left > 0:
            return left
        self.accept_resume = 0.0
        self.selector.register(self.listener, _READ, self.on_accept)
        return None

    def set_events(self, conn: _Conn, events: int) -> None:
        """Watch ``conn`` for ``events`` (``conn.events == 0`` means not registered)."""
        if conn.events != events and not conn.closed:
            if conn.events:
                self.selector.modify(conn.sock, events, conn)
            else:
                self.selector.register(conn.sock, events, conn)
            conn.events = events

    def on_event(self, conn: _Conn, mask: int) -> None:
        if conn.handshaking:
            self.handshake(conn)
            return
        if mask & _WRITE:
            self.flush(conn)
            return
        sock = conn.sock
        try:
            # Into the loop's buffer, then copy what came: a 256 KiB recv()
            # allocates (mmap, mremap, munmap: three syscalls) for every
            # request, however small.
            data = bytes(self.recv_view[: sock.recv_into(self.recv_view)])
            if self.ssl_context is not None:
                pending = sock.pending()  # type: ignore[attr-defined]
                while pending:
                    data += sock.recv(pending)
                    pending = sock.pending()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError, _SSLWantReadError):
            return
        except (OSError, _SSLError):
            self.close(conn)
            return
        if self.workers or conn.busy:  # busy: an async handler's reply may be sent meanwhile
            self.received_while_busy(conn, data)
            return
        if not data:
            self.close(conn)
            return
        parser = conn.parser
        if parser.idle and not conn.fresh:
            conn.since = self.now  # a request begins (a fresh one began at the accept)
        conn.fresh = False
        parser.feed(data)
        self.process(conn)

    def received_while_busy(self, conn: _Conn, data: bytes) -> None:
        """Take bytes for ``conn`` in pool mode, where a worker may own it right now."""
        with self.lock:
            busy = conn.busy
            if data:
                if conn.parser.idle and not conn.fresh:
                    conn.since = self.now
                conn.fresh = False
                conn.parser.feed(data)
            if busy and (not data or conn.parser.buffered > 1 << 20):
                # Stop watching until the worker hands the connection back: EOF
                # stays readable forever, and a client that floods is paused.
                if not data:
                    conn.eof = True  # answer what it sent, then close
                self.selector.unregister(conn.sock)
                conn.events = 0
        if not busy:
            if data:
                self.process(conn)
            else:
                self.close(conn)

    def handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert hasattr(sock, "do_handshake")
        try:
            sock.do_handshake()
        except _SSLWantReadError:
            self.set_events(conn, _READ)
            return
        except _SSLWantWriteError:
            self.set_events(conn, _WRITE)
            return
        except (OSError, _SSLError) as exc:
            logger.info("plugin server at %s: TLS handshake failed: %s", self.url, exc)
            self.close(conn)
            return
        conn.handshaking = False
        self.set_events(conn, _READ)
        if sock.pending():  # type: ignore[attr-defined]
            self.on_event(conn, _READ)

    def process(self, conn: _Conn) -> None:
        """Answer the complete requests buffered on ``conn``, in order."""
        parser = conn.parser
        while not conn.busy and not conn.out and conn.stream is None and not conn.closed:
            try:
                request = parser.next()
            except HTTPError as exc:
                conn.close_after = True
                status, data = error_reply(exc.status, exc.message)
                self.send(conn, response_head(status, len(data), keep_alive=False) + data)
                return
            if request is None:
                if parser.continue_wanted:
                    parser.continue_wanted = False
                    self.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                    continue
                if conn.close_after or conn.eof:
                    self.close(conn)
                return
            conn.since = self.now  # what is buffered after it is a new request
            if self.workers:
                conn.busy = True
                if conn.events and self.ssl_context is not None:
                    # An SSL object must not be used by two threads at once.
                    conn.events = 0
                    self.selector.unregister(conn.sock)
                self.jobs.put((conn, request))
                return
            reply = self.answer_safely(request)
            if type(reply) is Deferred:
                conn.busy = True
                self.defer(conn, request, reply)
                return
            if not request.keep_alive:
                conn.close_after = True
            if type(reply) is bytes:
                self.send(conn, reply)
            else:
                assert isinstance(reply, Stream)
                conn.stream = reply
                conn.out += reply.head
                self.flush(conn, resume=False)

    # -- async handlers ----------------------------------------------------------

    def start_runner(self) -> AsyncRunner:
        """Start the event loop for async handlers, once (any thread may ask)."""
        with self.lock:
            runner = self.runner
            if runner is None:

                def mark() -> None:
                    handling.state = self  # stop() from an async handler must not wait on it

                runner = self.runner = AsyncRunner(f"pluginkit-sdk-async:{self.url}", mark)
            return runner

    def defer(self, conn: _Conn, request: Request, deferred: Deferred) -> None:
        """Run an async handler's awaitable; its reply comes back through :meth:`on_wake`."""
        runner = self.runner or self.start_runner()

        def done(result: Any, exc: BaseException | None) -> None:
            finish = deferred.finish
            assert finish is not None
            try:
                reply = finish(result, exc)
            except Exception as error:
                reply = self.failed_reply(request, error)
            if type(reply) is bytes and self.ssl_context is None:
                # Sent from here, as a pool thread does: no round trip through
                # the loop for a plain reply. (A TLS socket is the loop's only.)
                self.send_from_thread(conn, request, reply)
                self.hand_back(conn)
                return
            with self.lock:
                conn.reply = (request, reply)
                self.posted.append(conn)
            self.wake()

        runner.submit(deferred.awaitable, done)

    def deliver(self, conn: _Conn, request: Request, reply: bytes | Stream) -> None:
        """Write a deferred reply (in the loop thread), then go on with the connection."""
        if conn.closed:
            if type(reply) is Stream:
                close_quietly(reply.pieces)
            return
        if not request.keep_alive:
            conn.close_after = True
        if type(reply) is bytes:
            self.send(conn, reply)
        else:
            assert isinstance(reply, Stream)
            conn.stream = reply
            conn.out += reply.head
            self.flush(conn, resume=False)
        if conn.closed or conn.out or conn.stream is not None:
            return
        if not conn.eof:
            self.set_events(conn, _READ)
        self.process(conn)

    def answer_safely(self, request: Request) -> bytes | Stream | Deferred:
        """Run ``answer``; an exception escaping it costs one request (500), never the loop."""
        try:
            return self.answer(request, self)
        except Exception as exc:
            return self.failed_reply(request, exc)

    def failed_reply(self, request: Request, exc: Exception) -> bytes:
        """Return the 500 reply for a reply that failed to build (a bug: logged, traceback)."""
        method = request.path.decode("utf-8", "replace")
        logger.error("plugin server at %s failed to answer %s", self.url, method, exc_info=exc)
        request.keep_alive = False
        status, data = error_reply(
            500, f"{method[1:]}: the plugin server failed to build the reply: {exc}"
        )
        return response_head(status, len(data), keep_alive=False) + data

    def send(self, conn: _Conn, data: bytes) -> None:
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError, _SSLWantWriteError):
                sent = 0
            except (OSError, _SSLError):
                self.close(conn)
                return
            if sent == len(data):
                if conn.close_after:
                    self.close(conn)
                return
            data = data[sent:]
        conn.out += data
        self.set_events(conn, _WRITE)

    def flush(self, conn: _Conn, *, resume: bool = True) -> None:
        """Write buffered output (and pull streamed pieces) until the socket is full.

        With ``resume``, pipelined requests buffered meanwhile are answered next.
        """
        sock = conn.sock
        while True:
            if conn.out:
                try:
                    sent = sock.send(conn.out)
                except (BlockingIOError, InterruptedError, _SSLWantWriteError):
                    sent = 0
                except (OSError, _SSLError):
                    self.close(conn)
                    return
                del conn.out[:sent]
                if conn.out:
                    self.set_events(conn, _WRITE)
                    return
            stream = conn.stream
            if stream is None:
                break
            try:
                piece = next(stream.pieces)
            except StopIteration:
                conn.stream = None
                conn.out += stream.end
                continue
            except Exception:
                logger.exception("streamed reply of the plugin server at %s failed", self.url)
                self.close(conn)  # the status is sent already: cutting the stream is all we can do
                return
            if piece:
                conn.out += stream.frame(piece)
        if conn.close_after:
            self.close(conn)
            return
        if conn.eof:
            if resume:
                self.process(conn)
            return
        self.set_events(conn, _READ)
        if resume and conn.parser.buffered:
            self.process(conn)

    def work_loop(self) -> None:
        """Body of a pool thread: answer requests until told to stop (None)."""
        while (job := self.jobs.get()) is not None:
            self.work(*job)

    def work(self, conn: _Conn, request: Request) -> None:
        """Run one handler in a pool thread and write its reply.

        The loop does not process ``conn`` while it is busy (it only buffers
        what arrives); afterwards the connection is handed back to the loop
        only when there is something to do, so a plain request-reply
        exchange costs no extra wake-up of the loop.
        """
        sock = conn.sock
        handling.state = self
        try:
            reply = self.answer_safely(request)
            if type(reply) is Deferred:
                self.defer(conn, request, reply)  # the loop writes it when it is ready
                return
            if type(reply) is bytes:
                self.send_from_thread(conn, request, reply)
            else:
                if not request.keep_alive:
                    conn.close_after = True
                assert isinstance(reply, Stream)
                send_all(sock, reply.head)
                try:
                    for piece in reply.pieces:
                        if piece:
                            send_all(sock, reply.frame(piece))
                finally:
                    close_quietly(reply.pieces)
                send_all(sock, reply.end)
        except Exception as exc:
            if not isinstance(exc, OSError):
                logger.exception("reply of the plugin server at %s failed", self.url)
            conn.close_after = True
        finally:
            handling.state = None
        self.hand_back(conn)

    def send_from_thread(self, conn: _Conn, request: Request, reply: bytes) -> None:
        """From a pool or event-loop thread: send what the socket takes of ``reply`` now.

        The loop writes the rest, so a client that does not read its reply
        does not hold this thread. The connection stays busy: then
        :meth:`hand_back`.
        """
        if not request.keep_alive:
            conn.close_after = True
        try:
            sent = conn.sock.send(reply)
        except (BlockingIOError, InterruptedError, _SSLWantWriteError):
            sent = 0
        except OSError:
            conn.close_after = True
            return
        if sent < len(reply):
            conn.out += memoryview(reply)[sent:]

    def hand_back(self, conn: _Conn) -> None:
        """From a pool or event-loop thread: the reply is out; give ``conn`` back.

        The loop is woken only when there is something for it to do.
        """
        with self.lock:
            if (
                conn.close_after
                or conn.out
                or conn.parser.buffered
                or conn.events == 0
                or self.stopping
                or conn.closed
            ):
                self.posted.append(conn)  # still busy: the loop takes it back
                post = True
            else:
                conn.busy = False
                post = False
        if post:
            self.wake()

    def close(self, conn: _Conn) -> None:
        conn.closed = True
        if conn in self.conns:
            self.conns.discard(conn)
            if conn.events:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.selector.unregister(conn.sock)
            conn.events = 0
        stream = conn.stream
        if stream is not None:
            conn.stream = None
            close_quietly(stream.pieces)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def cleanup(self) -> None:
        """Close everything and remove the socket and spec files (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for conn in list(self.conns):
            self.close(conn)
        for _ in self.workers:
            self.jobs.put(None)
        if self.runner is not None:
            self.runner.stop()
        with contextlib.suppress(Exception):
            self.selector.close()
        for sock in (self.listener, self.waker_r, self.waker_w):
            with contextlib.suppress(OSError):
                sock.close()
        for path, ino in self.alias_files:
            _remove_if_ours(path, ino)
        _remove_if_ours(self.where.path, self.socket_ino)
        _remove_if_ours(self.spec_file, self.spec_ino)


def _url_of(sock: socket.socket) -> str:
    """Return the URL a listening socket serves (``unix://path`` or ``tcp://host:port``)."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        shown = name.decode(errors="replace") if isinstance(name, bytes) else name
        return f"unix://{shown}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"tcp://{shown}:{port}"


def _remove_if_ours(path: Path | None, ino: int | None) -> None:
    """Remove the file we created at ``path``, unless another server has replaced it since."""
    if path is None or ino is None:
        return
    with contextlib.suppress(OSError):
        if path.stat().st_ino == ino:
            path.unlink()
