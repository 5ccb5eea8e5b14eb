"""PluginServer: answer Docker's plugin protocol from Python functions.

One I/O thread runs a selector loop over the listening socket and every
connection; requests are parsed by :mod:`pluginkit.sdk._http`. Handlers run
inline in that loop by default (``threads=0``): that is the fastest path (no
thread hand-off per request, which costs more than the whole request in
CPython) and every client is still served, one request at a time. A plugin
whose handlers block for long (a Mount that talks to remote storage) passes
``threads=N``: handlers then run in a pool of N threads, the loop keeps
accepting and parsing, and a slow handler only holds up its own connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import attrs

from .._errors import PluginError
from ._address import Address, prepare_unix_path, resolve_address, resolve_gid
from ._http import HTTPError, Request, RequestParser, chunk, response_head

__all__ = ["Handler", "InvalidRequestError", "PluginServer"]

logger = logging.getLogger("pluginkit.sdk")

#: A handler takes the decoded JSON request (None for an empty body) and
#: returns something JSON-encodable, None (sent as ``{}``), an attrs instance,
#: ``bytes``, or an iterator of bytes / a binary file for a streamed reply.
Handler = Callable[[Any], Any]
_H = TypeVar("_H", bound=Handler)

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_RECV_SIZE = 262144
_ACTIVATE = b"/Plugin.Activate"


class InvalidRequestError(PluginError, ValueError):
    """The request is not what the method expects; the server answers HTTP 400.

    Raise it from a handler for a request you reject as malformed; typed
    drivers raise it when a request does not match its model.
    """


class _Conn:
    """One client connection, owned by the loop thread (or by a worker while ``busy``)."""

    __slots__ = (
        "busy",
        "close_after",
        "closed",
        "events",
        "handshaking",
        "out",
        "parser",
        "sock",
        "stream",
    )

    def __init__(self, sock: socket.socket, parser: RequestParser) -> None:
        self.sock = sock
        self.parser = parser
        self.out = bytearray()
        self.stream: Iterator[bytes] | None = None
        self.events = 0
        self.busy = False
        self.close_after = False
        self.closed = False
        self.handshaking = False


class _Stream:
    """A streamed reply: the response head and the iterator of body pieces."""

    __slots__ = ("head", "pieces")

    def __init__(self, head: bytes, pieces: Iterator[bytes]) -> None:
        self.head = head
        self.pieces = pieces


# Compact like Go's encoder: smaller replies, same speed.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _err(status: int, message: str) -> tuple[int, bytes]:
    return status, _dumps({"Err": message}).encode()


def _close_quietly(pieces: Iterator[bytes]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing a streamed reply failed")


def _file_pieces(fileobj: Any) -> Iterator[bytes]:
    try:
        while True:
            data = fileobj.read(65536)
            if not data:
                return
            yield data
    finally:
        fileobj.close()


class PluginServer:
    """A Docker plugin server: routes ``POST /<Method>`` to Python functions.

    Example:
        ```python
        server = PluginServer(["VolumeDriver"], name="myvol")

        @server.handler("VolumeDriver.Create")
        def create(request):
            ...  # request is the decoded JSON body, e.g. {"Name": "v1", "Opts": {}}

        server.serve()  # /run/docker/plugins/myvol.sock, or $PLUGINKIT_SOCKET_DIR
        ```

    ``Plugin.Activate`` is answered with ``{"Implements": implements}``. A
    handler that raises answers HTTP 500 ``{"Err": "<message>"}``; an unknown
    method answers 404 and a body that is not JSON answers 400.

    Args:
        implements: The capabilities announced in the handshake, e.g.
            ``["VolumeDriver"]`` (matching is case-sensitive in Docker).
        name: The plugin's name: used for the default socket
            (``/run/docker/plugins/<name>.sock``) and for spec files.
        threads: 0 (the default) runs handlers inline in the I/O loop, one
            at a time - the fastest choice for handlers that return quickly.
            N > 0 runs them in a pool of N threads, for handlers that block.
        max_body: The largest request body accepted (HTTP 413 above it).
        stop_timeout: How long :meth:`stop` waits for in-flight requests.
    """

    def __init__(
        self,
        implements: Iterable[str] = (),
        *,
        name: str | None = None,
        threads: int = 0,
        max_body: int = 64 * 1024 * 1024,
        stop_timeout: float = 10.0,
    ) -> None:
        if isinstance(implements, str):
            implements = [implements]
        self._implements: list[str] = []
        for capability in implements:
            self._add_capability(capability)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name must be a non-empty string without '/', not {name!r}")
        if not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, not {threads!r}")
        self.name = name
        self.threads = threads
        self.max_body = max_body
        self.stop_timeout = stop_timeout
        self._routes: dict[bytes, tuple[Callable[[Any], Any], bool]] = {}
        self._activate_body = b""
        self._update_manifest()
        self._lock = threading.Lock()
        self._state: _ServeState | None = None
        self._thread: threading.Thread | None = None

    # -- routing ---------------------------------------------------------------

    @property
    def implements(self) -> list[str]:
        """The capabilities announced by ``Plugin.Activate`` (a copy)."""
        return list(self._implements)

    def _add_capability(self, capability: str) -> None:
        if not isinstance(capability, str) or not capability:
            raise ValueError(f"implements must hold non-empty strings, not {capability!r}")
        if capability not in self._implements:
            self._implements.append(capability)

    def _update_manifest(self) -> None:
        self._activate_body = _dumps({"Implements": self._implements}).encode()

    def add_capability(self, capability: str) -> None:
        """Announce one more capability in the ``Plugin.Activate`` handshake."""
        self._add_capability(capability)
        self._update_manifest()

    def add_handler(self, method: str, fn: Handler, *, raw: bool = False) -> None:
        """Route ``POST /<method>`` to ``fn``.

        Args:
            method: The method name, e.g. ``"VolumeDriver.Create"``.
            fn: Called with the decoded JSON body (None when the body is
                empty); its return value is the reply (None sends ``{}``).
            raw: Pass the request body as ``bytes`` instead of decoding JSON.

        Raises:
            ValueError: The method name is empty, has whitespace, is
                ``Plugin.Activate`` (built in) or already has a handler.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, not {type(method).__name__}")
        name = method[1:] if method.startswith("/") else method
        if not name or any(ch.isspace() for ch in name) or "?" in name:
            raise ValueError(f"invalid method name {method!r}")
        path = b"/" + name.encode("utf-8")
        if path == _ACTIVATE:
            raise ValueError("Plugin.Activate is built in; pass implements=[...] instead")
        if path in self._routes:
            raise ValueError(f"method {name!r} already has a handler")
        if not callable(fn):
            raise TypeError(f"handler for {name!r} is not callable: {fn!r}")
        self._routes[path] = (fn, raw)

    def handler(self, method: str, *, raw: bool = False) -> Callable[[_H], _H]:
        """Register the decorated function for ``method`` (see :meth:`add_handler`)."""

        def register(fn: _H) -> _H:
            self.add_handler(method, fn, raw=raw)
            return fn

        return register

    @property
    def methods(self) -> list[str]:
        """The method names with a handler (``Plugin.Activate`` included)."""
        return ["Plugin.Activate", *(p[1:].decode() for p in self._routes)]

    # -- answering -------------------------------------------------------------

    def _answer(self, request: Request, state: _ServeState) -> bytes | _Stream:
        """Build the reply to one request: complete bytes, or a head plus body pieces."""
        status, payload = self._run(request)
        # Decided after the handler ran: a stop() meanwhile closes the connection.
        keep_alive = request.keep_alive = request.keep_alive and not state.stopping
        if type(payload) is bytes:
            head = response_head(status, len(payload), keep_alive=keep_alive)
            return head if request.head_only else head + payload
        assert isinstance(payload, Iterator)
        head = response_head(status, None, keep_alive=keep_alive)
        if request.head_only:
            _close_quietly(payload)
            return head
        return _Stream(head, payload)

    def _run(self, request: Request) -> tuple[int, bytes | Iterator[bytes]]:
        """Route one request and run its handler: the status and the body (or pieces)."""
        path = request.path
        if path == _ACTIVATE:
            return 200, self._activate_body
        route = self._routes.get(path)
        if route is None:
            method = path[1:].decode("utf-8", "replace")
            return _err(404, f"plugin does not implement method {method!r}")
        fn, raw = route
        body = request.body
        if raw:
            argument: Any = body
        elif body and not body.isspace():
            try:
                argument = json.loads(body)
            except ValueError as exc:
                method = path[1:].decode("utf-8", "replace")
                return _err(400, f"{method}: request body is not valid JSON: {exc}")
        else:
            argument = None
        try:
            result = fn(argument)
        except Exception as exc:
            method = path[1:].decode("utf-8", "replace")
            if isinstance(exc, PluginError):
                logger.debug("%s failed: %s", method, exc)
            else:
                logger.exception("handler for %s raised", method)
            status = 400 if isinstance(exc, InvalidRequestError) else 500
            return _err(status, str(exc) or type(exc).__name__)
        if result is None:
            return 200, b"{}"
        kind = type(result)
        if kind is not dict and kind is not list:
            if isinstance(result, (bytes, bytearray, memoryview)):
                return 200, bytes(result)
            if attrs.has(kind):
                from ._convert import converter

                result = converter.unstructure(result)
            elif hasattr(result, "read"):
                return 200, _file_pieces(result)
            elif isinstance(result, Iterator):
                return 200, result
        try:
            return 200, _dumps(result).encode()
        except (TypeError, ValueError) as exc:
            method = path[1:].decode("utf-8", "replace")
            logger.error("handler for %s returned a value that is not JSON: %s", method, exc)
            return _err(500, f"{method}: the plugin's reply is not JSON: {exc}")

    # -- serving ---------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """The URL being served (``unix:///path`` or ``tcp://host:port``), None when stopped."""
        state = self._state
        return state.url if state is not None else None

    @property
    def serving(self) -> bool:
        """True between a successful start and the end of :meth:`stop`."""
        return self._state is not None

    def start(
        self,
        address: str | os.PathLike[str] | None = None,
        *,
        gid: int | str | None = None,
        mode: int = 0o660,
        spec_dir: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
    ) -> None:
        """Listen on ``address`` and serve from a background thread.

        Returns once the socket is listening. See :meth:`serve` for the
        arguments.

        Raises:
            PluginError: The server is already serving, or another server
                listens on the socket path.
            ValueError: The address is malformed.
        """
        state = self._listen(address, gid, mode, spec_dir, ssl_context, certfile, keyfile)
        thread = threading.Thread(
            target=self._run_loop, args=(state,), name=f"pluginkit-sdk:{state.url}", daemon=True
        )
        self._thread = thread
        thread.start()

    def serve(
        self,
        address: str | os.PathLike[str] | None = None,
        *,
        gid: int | str | None = None,
        mode: int = 0o660,
        spec_dir: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
    ) -> None:
        """Listen on ``address`` and serve in the foreground until stopped.

        SIGTERM (when called from the main thread) stops the server
        gracefully: in-flight requests finish, then it returns.

        Args:
            address: A unix socket path, ``unix:///path``,
                ``tcp://host:port`` (port 0 picks a free port), or None for
                ``$PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET``, else
                ``/run/docker/plugins/<name>.sock``.
            gid: Group (id or name) given to the unix socket, like
                go-plugins-helpers' ``ServeUnix``; None leaves it alone.
            mode: Permissions of the unix socket.
            spec_dir: For TCP: write ``<spec_dir>/<name>.spec`` with the
                served URL (removed on stop) so that Docker finds the plugin.
            ssl_context: Serve TLS with this server-side context.
            certfile: Serve TLS with this certificate (PEM) ...
            keyfile: ... and this private key (defaults to ``certfile``).
        """
        state = self._listen(address, gid, mode, spec_dir, ssl_context, certfile, keyfile)
        in_main = threading.current_thread() is threading.main_thread()
        previous: Any = None
        if in_main:

            def on_term(signum: int, frame: FrameType | None) -> None:
                self._request_stop(state)

            previous = signal.signal(signal.SIGTERM, on_term)
        try:
            self._run_loop(state)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving: refuse new connections, let in-flight requests finish.

        Waits at most ``timeout`` (default ``stop_timeout``) for in-flight
        requests, then closes every connection and removes the socket file
        and spec file. Stopping a server that does not serve does nothing.
        """
        state = self._state
        if state is None:
            return
        self._request_stop(state, timeout)
        if state.loop_ident == threading.get_ident():
            return  # called by a handler: the loop ends once this request is answered
        state.done.wait()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def _request_stop(self, state: _ServeState, timeout: float | None = None) -> None:
        if state.stopping:
            return
        wait = self.stop_timeout if timeout is None else timeout
        state.deadline = time.monotonic() + wait
        state.stopping = True
        state.wake()

    def __enter__(self) -> PluginServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.address or "not serving"
        return f"<PluginServer {self.name or ''} implements={self._implements} {where}>"

    def _listen(
        self,
        address: str | os.PathLike[str] | None,
        gid: int | str | None,
        mode: int,
        spec_dir: str | os.PathLike[str] | None,
        ssl_context: ssl.SSLContext | None,
        certfile: str | os.PathLike[str] | None,
        keyfile: str | os.PathLike[str] | None,
    ) -> _ServeState:
        with self._lock:
            if self._state is not None:
                raise PluginError(f"the server is already serving at {self._state.url}")
            resolved = resolve_address(address, self.name)
            if certfile is not None:
                if ssl_context is not None:
                    raise ValueError("pass either ssl_context or certfile/keyfile, not both")
                ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_context.load_cert_chain(certfile, keyfile)
            elif keyfile is not None:
                raise ValueError("keyfile needs certfile")
            if spec_dir is not None and resolved.is_unix:
                raise ValueError("spec_dir is for TCP addresses; unix sockets are found by path")
            if spec_dir is not None and not self.name:
                raise ValueError("writing a spec file needs a server name (name=...)")
            state = _ServeState(self, resolved, resolve_gid(gid), mode, ssl_context)
            try:
                if spec_dir is not None:
                    state.write_spec(Path(spec_dir))
            except BaseException:
                state.cleanup()
                raise
            self._state = state
            logger.info("plugin server listening at %s", state.url)
            return state

    def _run_loop(self, state: _ServeState) -> None:
        state.loop_ident = threading.get_ident()
        try:
            state.run()
        except BaseException:
            logger.exception("plugin server loop at %s failed", state.url)
            raise
        finally:
            state.cleanup()
            with self._lock:
                if self._state is state:
                    self._state = None
            state.done.set()


@attrs.define(eq=False)
class _ServeState:
    """Everything belonging to one run of a server: sockets, selector, connections."""

    server: PluginServer
    where: Address
    gid: int | None
    mode: int
    ssl_context: ssl.SSLContext | None
    url: str = ""
    listener: socket.socket = attrs.field(init=False)
    selector: selectors.BaseSelector = attrs.field(init=False)
    waker_r: socket.socket = attrs.field(init=False)
    waker_w: socket.socket = attrs.field(init=False)
    conns: set[_Conn] = attrs.field(init=False, factory=set)
    posted: deque[_Conn] = attrs.field(init=False, factory=deque)
    pool: ThreadPoolExecutor | None = attrs.field(init=False, default=None)
    socket_ino: int | None = attrs.field(init=False, default=None)
    spec_file: Path | None = attrs.field(init=False, default=None)
    stopping: bool = attrs.field(init=False, default=False)
    deadline: float = attrs.field(init=False, default=0.0)
    closed: bool = attrs.field(init=False, default=False)
    loop_ident: int | None = attrs.field(init=False, default=None)
    done: threading.Event = attrs.field(init=False, factory=threading.Event)

    def __attrs_post_init__(self) -> None:
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
        if self.server.threads:
            self.pool = ThreadPoolExecutor(self.server.threads, thread_name_prefix="pluginkit-sdk")

    def _bind(self) -> socket.socket:
        where = self.where
        if where.path is not None:
            path = where.path
            prepare_unix_path(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(path))
                self.socket_ino = path.stat().st_ino
                os.chmod(path, self.mode)
                if self.gid is not None:
                    os.chown(path, -1, self.gid)
                sock.listen(128)
            except BaseException:
                sock.close()
                self._remove_socket()
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
                sock.listen(128)
            except BaseException:
                sock.close()
                raise
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"tcp://{shown}:{port}"
        sock.setblocking(False)
        return sock

    def write_spec(self, spec_dir: Path) -> None:
        """Write ``<spec_dir>/<name>.spec`` atomically (temp file, fsync, rename)."""
        host, _, port = self.url[len("tcp://") :].rpartition(":")
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"  # a wildcard is not an address a client can dial
        scheme = "https" if self.ssl_context is not None else "tcp"
        spec_dir.mkdir(parents=True, exist_ok=True)
        target = spec_dir / f"{self.server.name}.spec"
        fd, tmp = tempfile.mkstemp(dir=spec_dir, prefix=f".{self.server.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{scheme}://{host}:{port}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.spec_file = target

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.waker_w.send(b"\0")

    # -- the loop --------------------------------------------------------------

    def run(self) -> None:
        select = self.selector.select
        while True:
            if self.stopping:
                if not self.drain_step():
                    return
                timeout: float | None = max(0.0, min(0.1, self.deadline - time.monotonic()))
            else:
                timeout = None
            for key, mask in select(timeout):
                data = key.data
                if type(data) is _Conn:
                    self.on_event(data, mask)
                else:
                    data(mask)

    def drain_step(self) -> bool:
        """While stopping: close what is idle; False when the loop may end."""
        if self.listener.fileno() >= 0:
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

    def on_wake(self, mask: int) -> None:
        with contextlib.suppress(OSError):
            self.waker_r.recv(4096)
        while self.posted:
            conn = self.posted.popleft()
            conn.busy = False
            if conn.close_after or conn.closed:
                self.close(conn)
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
                logger.warning("plugin server at %s: accept failed: %s", self.url, exc)
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, RequestParser(max_body=self.server.max_body))
            if self.ssl_context is not None:
                try:
                    conn.sock = self.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ssl.SSLError) as exc:
                    logger.info("plugin server at %s: TLS setup failed: %s", self.url, exc)
                    sock.close()
                    continue
                conn.handshaking = True
            self.conns.add(conn)
            self.set_events(conn, _READ)

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
            data = sock.recv(_RECV_SIZE)
            if self.ssl_context is not None:
                pending = sock.pending()  # type: ignore[attr-defined]
                while pending:
                    data += sock.recv(pending)
                    pending = sock.pending()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except (OSError, ssl.SSLError):
            self.close(conn)
            return
        if not data:
            self.close(conn)
            return
        conn.parser.feed(data)
        self.process(conn)

    def handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.set_events(conn, _READ)
            return
        except ssl.SSLWantWriteError:
            self.set_events(conn, _WRITE)
            return
        except (OSError, ssl.SSLError) as exc:
            logger.info("plugin server at %s: TLS handshake failed: %s", self.url, exc)
            self.close(conn)
            return
        conn.handshaking = False
        self.set_events(conn, _READ)
        if sock.pending():
            self.on_event(conn, _READ)

    def process(self, conn: _Conn) -> None:
        """Answer the complete requests buffered on ``conn``, in order."""
        server = self.server
        parser = conn.parser
        while not conn.busy and not conn.out and conn.stream is None and not conn.closed:
            try:
                request = parser.next()
            except HTTPError as exc:
                conn.close_after = True
                status, data = _err(exc.status, exc.message)
                self.send(conn, response_head(status, len(data), keep_alive=False) + data)
                return
            if request is None:
                if parser.continue_wanted:
                    parser.continue_wanted = False
                    self.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                    continue
                if conn.close_after:
                    self.close(conn)
                return
            if self.pool is not None:
                conn.busy = True
                if conn.events:
                    conn.events = 0
                    self.selector.unregister(conn.sock)
                self.pool.submit(self.work, conn, request)
                return
            reply = server._answer(request, self)
            if not request.keep_alive:
                conn.close_after = True
            if type(reply) is bytes:
                self.send(conn, reply)
            else:
                assert isinstance(reply, _Stream)
                conn.stream = reply.pieces
                conn.out += reply.head
                self.flush(conn, resume=False)

    def send(self, conn: _Conn, data: bytes) -> None:
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                sent = 0
            except (OSError, ssl.SSLError):
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
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                    sent = 0
                except (OSError, ssl.SSLError):
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
                piece = next(stream)
            except StopIteration:
                conn.stream = None
                conn.out += b"0\r\n\r\n"
                continue
            except Exception:
                logger.exception("streamed reply of the plugin server at %s failed", self.url)
                self.close(conn)  # the status is sent already: cutting the stream is all we can do
                return
            if piece:
                conn.out += chunk(bytes(piece))
        if conn.close_after:
            self.close(conn)
            return
        self.set_events(conn, _READ)
        if resume and conn.parser.buffered:
            self.process(conn)

    def work(self, conn: _Conn, request: Request) -> None:
        """Run one handler in a pool thread and write its reply (the loop is not watching)."""
        sock = conn.sock
        try:
            reply = self.server._answer(request, self)
            if not request.keep_alive:
                conn.close_after = True
            sock.settimeout(60.0)
            if type(reply) is bytes:
                sock.sendall(reply)
            else:
                assert isinstance(reply, _Stream)
                sock.sendall(reply.head)
                try:
                    for piece in reply.pieces:
                        if piece:
                            sock.sendall(chunk(bytes(piece)))
                finally:
                    _close_quietly(reply.pieces)
                sock.sendall(b"0\r\n\r\n")
        except Exception as exc:
            if not isinstance(exc, OSError):
                logger.exception("reply of the plugin server at %s failed", self.url)
            conn.close_after = True
        finally:
            with contextlib.suppress(OSError):
                sock.setblocking(False)
            self.posted.append(conn)
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
            _close_quietly(stream)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def cleanup(self) -> None:
        """Close everything and remove the socket and spec files (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for conn in list(self.conns):
            self.close(conn)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.selector.close()
        for sock in (self.listener, self.waker_r, self.waker_w):
            with contextlib.suppress(OSError):
                sock.close()
        self._remove_socket()
        if self.spec_file is not None:
            with contextlib.suppress(OSError):
                self.spec_file.unlink()

    def _remove_socket(self) -> None:
        path = self.where.path
        if path is None:
            return
        # Only remove the file we created: another server may have replaced it.
        with contextlib.suppress(OSError):
            if self.socket_ino is not None and path.stat().st_ino == self.socket_ino:
                path.unlink()
