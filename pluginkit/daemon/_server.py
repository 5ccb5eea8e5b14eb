"""The daemon: a Manager on its root, served over HTTP like dockerd serves plugins.

A stdlib threaded HTTP/1.1 server (one thread per connection, keep-alive)
per listener. Every request goes through the same steps as in dockerd:
version check of ``/v1.NN/`` paths, routing, the handler, and errors
answered as ``{"message": ...}`` with dockerd's status codes. A bad request
is answered (or its connection closed) without touching other clients.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import logging
import os
import queue
import selectors
import signal
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, cast

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import PluginError
from .._events import PluginEvent
from .._health import HealthCheck
from .._paths import default_daemon_socket
from ._api import API_VERSION, ApiError, split_version, status_of
from ._eventlog import EventLog
from ._listen import DaemonTLS, Listener, bind_tcp, bind_unix, parse_host
from ._logs import LogWriter
from ._notify import sd_notify
from ._routes import ROUTES, Request, Response, State, encode

__all__ = ["Daemon"]

log = logging.getLogger("pluginkit.daemon")

IDLE_TIMEOUT = 120.0
"""Seconds a connection may stay silent before it is closed."""
MAX_CONNECTIONS = 512
"""Connections served at once per listener; more are answered 503 and closed."""
DRAIN_LIMIT = 1024 * 1024
"""Unread body bytes skipped to keep a connection; past that it is closed."""
DEFAULT_HEALTH_CHECK = HealthCheck()
"""The daemon probes its plugins unless told not to: supervising is its job."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(IDLE_TIMEOUT)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                log.info("TLS handshake refused: %s", exc)
                raise
        super().setup()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a malformed request with dockerd's JSON error shape, then close."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # answer with a status line, as Go does
        self._answer(
            Response(
                status=code,
                value={"message": message or explain or ""},
                headers={"Connection": "close"},
            )
        )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s", format % args)

    def version_string(self) -> str:
        return f"pluginkit/{self.server.state.version} (linux)"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_HEAD = do_PUT = do_GET

    def _dispatch(self) -> None:
        daemon = self.server.daemon
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        length_text = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            length = int(length_text) if length_text is not None else (-1 if chunked else 0)
            if length_text is not None and length < 0:
                raise ValueError
        except ValueError:
            self._answer(Response(status=400, value={"message": "bad Content-Length"}))
            self.close_connection = True
            return
        body = _Body(self.rfile, length, chunked=chunked)
        try:
            _, path = split_version(urllib.parse.unquote(url.path))
            handler, params = _find(self.command, path)
            request = Request(
                method=self.command,
                path=path,
                query=query,
                headers=self.headers,  # type: ignore[arg-type]
                body=body,  # type: ignore[arg-type]
                length=length,
                state=self.server.state,
                stop=daemon.stopping,
                params=params,
            )
        except Exception as exc:
            response = _error(exc, self.command, self.path)
        else:
            try:
                response = handler(request)
            except Exception as exc:
                response = _error(exc, self.command, self.path)
        # Whatever the handler did not read is skipped so keep-alive stays in step.
        if not body.drain():
            self.close_connection = True
        self._answer(response)

    def _answer(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        for key, value in response.headers.items():
            self.send_header(key, value)
        if response.stream is not None:
            self.send_header("Content-Type", response.content_type)
            if self.command == "HEAD":
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._stream(response.stream)
            return
        if response.raw is not None:
            body = response.raw
        else:
            body = b"" if response.empty else encode(response.value)
        if body:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    # An idle tick: find out whether the client is still there.
                    if _peer_gone(self.connection):
                        self.close_connection = True
                        return
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _error(exc: Exception, method: str, path: str) -> Response:
    status = status_of(exc)
    if status >= 500 and not isinstance(exc, (ApiError, PluginError)):
        log.exception("%s %s failed", method, path)
    message = exc.message if isinstance(exc, ApiError) else str(exc)
    return Response(status=status, value={"message": message})


def _peer_gone(conn: socket.socket) -> bool:
    """Tell whether the client closed its end (a readable socket with nothing to read)."""
    import select

    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _find(method: str, path: str) -> tuple[Any, dict[str, str]]:
    for route_method, regex, handler in ROUTES:
        if route_method != method:
            continue
        match = regex.match(path)
        if match is not None:
            return handler, {k: v for k, v in match.groupdict().items() if v is not None}
    # dockerd's router answers a known path with another method the same way.
    raise ApiError(404, "page not found")


class _Body(io.RawIOBase):
    """The request body: Content-Length bytes of the connection, or its chunks.

    Go's HTTP client (Docker's CLI) sends a body of unknown length, such as
    the tar of ``docker plugin create``, chunked.
    """

    def __init__(self, rfile: Any, length: int, *, chunked: bool = False) -> None:
        super().__init__()
        self._rfile = rfile
        self._chunked = chunked
        self._done = not chunked
        self.remaining = 0 if chunked else max(length, 0)

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        line = self._rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ApiError(400, "malformed chunked request body") from None
        if size == 0:
            while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._done = True
        self.remaining = size

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0 and not self._done:
            self._next_chunk()
        if self.remaining <= 0:
            return b""
        if self._chunked and (size is None or size < 0):
            size = self.remaining
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data: bytes = self._rfile.read(want)
        self.remaining -= len(data)
        if not data:
            self.remaining = 0
            self._done = True
        elif self._chunked and self.remaining == 0:
            self._rfile.readline(16)  # the CRLF after a chunk
        return data

    def read_all(self, limit: int) -> bytes:
        """Read the rest of the body; 413 past ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        while True:
            data = self.read(64 * 1024)
            if not data:
                return b"".join(parts)
            total += len(data)
            if total > limit:
                raise ApiError(413, f"request body too large (more than {limit} bytes)")
            parts.append(data)

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        """Skip what the handler left unread; ``False`` if too much (close instead)."""
        if not self._chunked and self.remaining > limit:
            return False
        try:
            self.read_all(limit)
        except (ApiError, OSError):
            return False
        return True


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, daemon: Daemon, tls: ssl.SSLContext | None) -> None:
        self.daemon = daemon
        self.state = daemon.state
        self._tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refuser = _Refuser()
        # serve_forever() below waits on the socket and this pipe, no timeout:
        # shutdown() wakes it at once.
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._loop_lock = threading.Lock()
        self._stop_asked = False
        self._serving = False  # serve_forever() has begun: shutdown() waits for its end
        self._served = threading.Event()
        # The socket is bound already (mode and group set): no bind here.
        super().__init__(("", 0), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()

    def server_bind(self) -> None:  # pragma: no cover - never called
        pass

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuser.refuse(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        if self._tls is not None:
            conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, (addr if addr else ("unix", 0))

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown`, which wakes it at once.

        socketserver's own loop wakes every ``poll_interval`` (ignored here)
        to look for a shutdown: a daemon stop took up to half a second per
        listener, one after the other (0.95 s with two), and an idle daemon
        woke twice a second for nothing.
        """
        with self._loop_lock:
            if self._stop_asked:
                return
            self._serving = True
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._stop_asked:
                    for key, _ in selector.select():
                        if key.fileobj is self.socket and not self._stop_asked:
                            # What socketserver's loop calls (there since 2.6,
                            # not in the type stubs): accept one, never block.
                            cast("Any", self)._handle_request_noblock()
                    self.service_actions()
        finally:
            self._served.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned (from another thread).

        Called before serve_forever() runs (a start that failed, a thread not
        yet scheduled), it returns at once and serve_forever() will not serve:
        socketserver's own shutdown() then waited for ever.
        """
        with self._loop_lock:
            self._stop_asked = True
            serving = self._serving
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if serving:
            self._served.wait()

    def server_close(self) -> None:
        super().server_close()
        self._refuser.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class _Refuser:
    """Answers 503 on connections past the limit, from one thread, without blocking accept.

    The request is read (up to a second) before closing, so that the client
    sees the answer rather than a connection reset.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[socket.socket | None] = queue.Queue(maxsize=1024)
        self._thread = threading.Thread(target=self._run, name="pluginkit-refuser", daemon=True)
        self._thread.start()

    def refuse(self, conn: socket.socket) -> None:
        try:
            self._queue.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        """End the thread (after the connections queued before)."""
        self._queue.put(None)

    def _run(self) -> None:
        body = encode({"message": "too many connections to the pluginkit daemon"})
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        while True:
            conn = self._queue.get()
            if conn is None:
                return
            try:
                conn.settimeout(1.0)
                if not isinstance(conn, ssl.SSLSocket):  # no TLS handshake here
                    conn.sendall(head + body)
                    conn.shutdown(socket.SHUT_WR)
                    deadline = time.monotonic() + 1.0
                    while time.monotonic() < deadline and conn.recv(65536):
                        pass
            except OSError:
                pass
            finally:
                conn.close()


class Daemon:
    """The pluginkit daemon: holds a :class:`~pluginkit.Manager` and serves Docker's plugin API.

    Args:
        root: the manager's state directory (one daemon per root: the root lock).
        run_root: the plugins' socket directory; the default API socket is
            ``<run_root>/pluginkit.sock``.
        runtime: what runs the plugins (default: the Manager's default).
        hosts: addresses to listen on: ``unix:///PATH`` or ``tcp://HOST:PORT``
            (default: the unix socket in the run root). TCP needs ``tls``.
        tls: server certificate and client CA (client certificates required).
        group: group owning the unix socket (mode 0660), name or gid.
        live_restore: plugins keep running when the daemon stops (default on).
        health_check: how the Manager probes running plugins; a hung one is
            marked unhealthy and restarted through the restart policy. On by
            default (:class:`~pluginkit.HealthCheck` ``()``: a SIGSTOPped
            plugin answers again within 5 s); ``None`` turns probing off.
        manager_options: more keyword arguments for the Manager
            (``restart_policy``, ``legacy`` ...).

    Raises:
        PluginError: an address is malformed, TCP without TLS, or the root
            is held by another manager.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        run_root: str | os.PathLike[str] | None = None,
        runtime: Any = None,
        hosts: Sequence[str] = (),
        tls: DaemonTLS | None = None,
        group: str | int | None = None,
        live_restore: bool = True,
        health_check: HealthCheck | None = DEFAULT_HEALTH_CHECK,
        **manager_options: Any,
    ) -> None:
        self._listeners: list[Listener] = [parse_host(h) for h in hosts]
        for listener in self._listeners:
            if listener.scheme == "tcp" and tls is None:
                raise PluginError(
                    f"refusing to listen on tcp://{listener.host}:{listener.port} without TLS: "
                    "pass --tlsverify with --tlscacert, --tlscert and --tlskey"
                )
        self._root = root
        self._run_root = run_root
        self._runtime = runtime
        self._tls = tls
        self._group = group
        self._live_restore = live_restore
        self.health_check = health_check
        self._manager_options = manager_options
        self.stopping = threading.Event()
        self.events = EventLog()
        self._servers: list[_HTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._unix_paths: list[str] = []
        self._stopped = threading.Event()
        self.manager: Any = None
        self.state: State
        self.addresses: list[str] = []
        self._log_writer: LogWriter | None = None

    def _on_event(self, event: PluginEvent) -> None:
        log.info("plugin %s (%s): %s", event.name, event.id[:12], event.action)
        self.events.publish(event)
        if event.action == "remove" and self._log_writer is not None:
            self._log_writer.forget(event.id)

    def start(self) -> None:
        """Open the manager (restoring plugins), listen, and signal readiness."""
        from .. import __version__
        from .._manager import Manager

        kwargs = dict(self._manager_options)
        if self._runtime is not None:
            kwargs["runtime"] = self._runtime
        plugin_log = logging.getLogger("pluginkit.plugin")
        manager = Manager(
            self._root,
            run_root=self._run_root,
            live_restore=self._live_restore,
            health_check=self.health_check,
            on_event=self._on_event,
            **kwargs,
        )
        self.manager = manager
        try:
            writer = LogWriter(manager.root / "daemon" / "logs")
            self._log_writer = writer
            plugin_log.addHandler(writer)
            if plugin_log.level == logging.NOTSET or plugin_log.level > logging.INFO:
                plugin_log.setLevel(logging.DEBUG)
            self.state = State(
                manager=manager,
                events=self.events,
                logs=writer,
                version=__version__,
                tmp_dir=manager.root / "daemon" / "tmp",
                started=time.time(),
            )
            listeners = self._listeners or [
                Listener("unix", path=os.fspath(default_daemon_socket(manager.run_root)))
            ]
            tls = self._tls.context() if self._tls is not None else None
            for listener in listeners:
                if listener.scheme == "unix":
                    sock = bind_unix(listener.path, group=self._group)
                    self._unix_paths.append(listener.path)
                    self.addresses.append(f"unix://{listener.path}")
                    server = _HTTPServer(sock, self, None)
                else:
                    sock = bind_tcp(listener)
                    host, port = sock.getsockname()[:2]
                    self.addresses.append(f"tcp://{host}:{port}")
                    server = _HTTPServer(sock, self, tls)
                self._servers.append(server)
            if self._group is not None:
                _open_run_root(manager.run_root, self._group)
        except BaseException:
            self._close()
            raise
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("pluginkit daemon on %s listening on %s", manager.root, ", ".join(self.addresses))
        sd_notify(f"READY=1\nMAINPID={os.getpid()}")

    def stop(self) -> None:
        """Stop serving and close the manager (plugins keep running with live restore)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        sd_notify("STOPPING=1")
        self.stopping.set()
        self.events.close()
        for server in self._servers:
            server.shutdown()
        self._close()

    def _close(self) -> None:
        for server in self._servers:
            server.server_close()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self._log_writer is not None:
            logging.getLogger("pluginkit.plugin").removeHandler(self._log_writer)
        if self.manager is not None:
            self.manager.shutdown()
        if self._log_writer is not None:
            self._log_writer.close()

    def serve_forever(self) -> None:
        """Start, then serve until SIGTERM or SIGINT (main thread only), then stop."""
        done = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            done.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not done.wait(1.0):
                pass
        finally:
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _open_run_root(run_root: Path, group: str | int) -> None:
    """Let ``group`` reach the socket: the run root becomes 0710 and group-owned."""
    import grp

    gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
    os.chown(run_root, -1, gid)
    os.chmod(run_root, 0o710)
