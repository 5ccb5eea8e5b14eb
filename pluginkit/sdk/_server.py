"""PluginServer: answer Docker's plugin protocol from Python functions.

This module is the public face - routing, the handshake, the error envelope,
how a handler's return value becomes a reply, start/serve/stop. The sockets
and connections are :mod:`pluginkit.sdk._loop`'s business. Handlers run
inline in the I/O loop by default (``threads=0``): that is the fastest path
and every client is still served, one request at a time. A plugin whose
handlers block for long (a Mount that talks to remote storage) passes
``threads=N``: handlers then run in a pool of N threads, the loop keeps
accepting and parsing, and a slow handler only holds up its own connection.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import PluginError
from .._wire._json import decode_body, encode_compact
from .._wire._json import json_error_reason as _json_error_reason
from .._wire._listen import ListenAddress, resolve_address
from .._wire._serverside import Request, response_head
from ._activation import take_inherited_listener
from ._address import resolve_gid
from ._async import is_async_function
from ._loop import (
    Deferred,
    ServeLoop,
    Stream,
    close_quietly,
    error_reply,
    handling,
)

if TYPE_CHECKING:
    import asyncio
    import ssl

__all__ = ["Handler", "InvalidRequestError", "PluginServer", "StatusReply"]

logger = logging.getLogger("pluginkit.sdk")

#: A handler takes the decoded JSON request (None for an empty body) and
#: returns something JSON-encodable, None (sent as ``{}``), an attrs instance,
#: ``bytes``, or an iterator of bytes / a binary file for a streamed reply.
Handler = Callable[[Any], Any]
_H = TypeVar("_H", bound=Handler)
_A = TypeVar("_A", bound=Callable[[], object])


_ACTIVATE = b"/Plugin.Activate"


class _ForcedStop(BaseException):
    """A second SIGTERM in :meth:`PluginServer.serve`: stop at once.

    A BaseException, like KeyboardInterrupt, so that a handler's ``except
    Exception`` (and the server's own, which answers 500) lets it through.
    """


class InvalidRequestError(PluginError, ValueError):
    """The request is not what the method expects; the server answers HTTP 400.

    Raise it from a handler for a request you reject as malformed; typed
    drivers raise it when a request does not match its model.
    """


@attrs.frozen
class StatusReply:
    """A reply with a status other than 200: ``body`` (JSON-encodable or attrs) sent as it is.

    The typed drivers use it where go-plugins-helpers answers an error with
    a whole response body, e.g. an authorization verdict carrying ``Err``
    is sent with HTTP 500 (the engine only reads ``Err`` from a non-200
    reply).
    """

    status: int
    body: Any


def _default_logging() -> None:
    """Make a plugin program that set up no logging still say what it does.

    When neither the root logger nor ``pluginkit.sdk`` has a handler,
    ``pluginkit.sdk`` gets one writing INFO and above to stderr as
    ``LEVEL pluginkit.sdk: message`` (tracebacks follow their line): the
    start line, each failed call, and why.
    """
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def _method(path: bytes) -> str:
    return path[1:].decode("utf-8", "replace")


def _inherited_address(sock: socket.socket) -> ListenAddress:
    """Return the address an inherited listening socket is bound to."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        text = name.decode(errors="replace") if isinstance(name, bytes) else name
        return ListenAddress(path=Path(text))
    return ListenAddress(host=name[0], port=name[1])


def _default_max_connections() -> int:
    """64 below the soft limit of open files (room for the handlers' own), within 16..8192."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 8192
    return max(16, min(soft - 64, 8192))


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
        read_timeout: A client must send a whole request (head and body)
            within this many seconds of its first byte (checked every
            ``min(read_timeout / 8, 1)`` s), else it is answered HTTP 408 and
            disconnected, so slow clients cannot hold connections forever,
            however they trickle their bytes; None waits forever. Idle
            keep-alive connections between requests are not affected.
        stop_timeout: How long :meth:`stop` waits for in-flight requests.
        aliases: More names for the same plugin, served by this server:
            each gets a socket of its own beside the server's
            (``<alias>.sock``, a hard link to it) or, with ``spec_dir``, a
            spec file of its own (``<alias>.spec``). Needs ``name``.
        max_connections: The most connections held at once. At the cap, a
            new connection is taken and room is made: idle keep-alive
            connections are closed first (the longest idle first), then
            requests still being received (the oldest first). None (the
            default) is 64 below the process's file descriptor limit, at
            most 8192.
    """

    def __init__(
        self,
        implements: Iterable[str] = (),
        *,
        name: str | None = None,
        threads: int = 0,
        max_body: int = 64 * 1024 * 1024,
        stop_timeout: float = 10.0,
        read_timeout: float | None = 60.0,
        max_connections: int | None = None,
        aliases: Iterable[str] = (),
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
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body must be an int >= 0, not {max_body!r}")
        if (
            isinstance(stop_timeout, bool)
            or not isinstance(stop_timeout, (int, float))
            or not stop_timeout >= 0
        ):
            raise ValueError(f"stop_timeout must be a number >= 0, not {stop_timeout!r}")
        self.name = name
        if isinstance(aliases, str):
            aliases = [aliases]
        self.aliases: tuple[str, ...] = tuple(aliases)
        for alias in self.aliases:
            if not isinstance(alias, str) or not alias or "/" in alias or alias == name:
                raise ValueError(
                    f"aliases must be non-empty strings without '/', other than the name, "
                    f"not {alias!r}"
                )
        if self.aliases and not name:
            raise ValueError("aliases need a server name (name=...)")
        if len(set(self.aliases)) != len(self.aliases):
            raise ValueError(f"aliases repeat a name: {list(self.aliases)!r}")
        self.threads = threads
        if read_timeout is not None and (
            isinstance(read_timeout, bool)
            or not isinstance(read_timeout, (int, float))
            or not read_timeout > 0
        ):
            raise ValueError(f"read_timeout must be a number > 0 or None, not {read_timeout!r}")
        if max_connections is not None and (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(
                f"max_connections must be an int >= 1 or None, not {max_connections!r}"
            )
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.stop_timeout = stop_timeout
        self._routes: dict[bytes, tuple[Callable[[Any], Any], bool]] = {}
        self._activate_body = b""
        self._update_manifest()
        self._lock = threading.Lock()
        self._activations = 0
        self._activate_hooks: list[Callable[[], object]] = []
        self._state: ServeLoop | None = None
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
        self._activate_body = encode_compact({"Implements": self._implements}).encode()

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

    def _answer(self, request: Request, state: ServeLoop) -> bytes | Stream | Deferred:
        """Build the reply to one request: complete bytes, or a head plus body pieces.

        A handler that returned an awaitable gives a :class:`Deferred`: the
        loop runs it on the server's event loop and calls its ``finish``.
        """
        outcome = self._run(request)
        if isinstance(outcome, Deferred):
            path = request.path

            def finish(result: Any, exc: BaseException | None) -> bytes | Stream:
                if exc is not None:
                    return self._reply(request, state, *self._failed(path, exc))
                settled = self._encode(path, result)
                if isinstance(settled, Deferred):
                    getattr(settled.awaitable, "close", lambda: None)()
                    settled = error_reply(
                        500, f"{_method(path)}: the handler's awaitable returned an awaitable"
                    )
                return self._reply(request, state, *settled)

            outcome.finish = finish
            return outcome
        assert not isinstance(outcome, Deferred)
        return self._reply(request, state, *outcome)

    def _reply(
        self, request: Request, state: ServeLoop, status: int, payload: bytes | Iterator[bytes]
    ) -> bytes | Stream:
        # Decided after the handler ran: a stop() meanwhile closes the connection.
        keep_alive = request.keep_alive = request.keep_alive and not state.stopping
        http10 = request.http10
        if type(payload) is bytes:
            head = response_head(status, len(payload), keep_alive=keep_alive, http10=http10)
            return head if request.head_only else head + payload
        assert isinstance(payload, Iterator)
        if http10:
            request.keep_alive = False  # the body ends when the connection does
        head = response_head(status, None, keep_alive=keep_alive, http10=http10)
        if request.head_only:
            close_quietly(payload)
            return head
        return Stream(head, payload, chunked=not http10)

    def _run(self, request: Request) -> tuple[int, bytes | Iterator[bytes]] | Deferred:
        """Route one request and run its handler: the status and the body (or pieces)."""
        path = request.path
        if path == _ACTIVATE:
            return self._activate()
        route = self._routes.get(path)
        if route is None:
            method = path[1:].decode("utf-8", "replace")
            return error_reply(404, f"plugin does not implement method {method!r}")
        fn, raw = route
        body = request.body
        if raw:
            argument: Any = body
        elif body and not body.isspace():
            try:
                argument = decode_body(body)
            except (ValueError, RecursionError) as exc:
                method = path[1:].decode("utf-8", "replace")
                return error_reply(
                    400, f"{method}: request body is not valid JSON: {_json_error_reason(exc)}"
                )
        else:
            argument = None
        try:
            result = fn(argument)
        except Exception as exc:
            return self._failed(path, exc)
        return self._encode(path, result)

    def _failed(self, path: bytes, exc: BaseException) -> tuple[int, bytes]:
        """Log a handler's failure and return the error reply for it."""
        method = _method(path)
        if isinstance(exc, PluginError):
            # An answer the plugin chose; "no such volume" is a routine one.
            level = logging.DEBUG if getattr(exc, "routine", False) else logging.INFO
            logger.log(level, "%s failed: %s", method, exc)
        elif not isinstance(exc, Exception):  # cancelled: the server stops
            logger.warning("handler for %s did not finish: %r", method, exc)
        else:
            logger.error("handler for %s raised", method, exc_info=exc)
        status = 400 if isinstance(exc, InvalidRequestError) else 500
        return error_reply(status, str(exc) or type(exc).__name__)

    def _encode(self, path: bytes, result: Any) -> tuple[int, bytes | Iterator[bytes]] | Deferred:
        """Turn what a handler returned into the status and the body (or pieces)."""
        if result is None:
            return 200, b"{}"
        status = 200
        kind = type(result)
        model = False  # dict and list, the common replies, skip every check below
        if kind is StatusReply:
            status, result = result.status, result.body
            model = attrs.has(type(result))
        elif kind is not dict and kind is not list:
            if hasattr(kind, "__await__"):
                return Deferred(result)
            if isinstance(result, (bytes, bytearray, memoryview)):
                return 200, bytes(result)
            model = attrs.has(kind)
            if not model and hasattr(result, "read"):
                return 200, _file_pieces(result)
            if not model and isinstance(result, Iterator):
                return 200, result
        try:
            if model:
                from ._convert import converter

                result = converter.unstructure(result)
            return status, encode_compact(result).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            method = path[1:].decode("utf-8", "replace")
            logger.error(
                "handler for %s returned a value that is not JSON: %s",
                method,
                _json_error_reason(exc),
            )
            return error_reply(
                500, f"{method}: the plugin's reply is not JSON: {_json_error_reason(exc)}"
            )

    # -- activation ------------------------------------------------------------

    def _activate(self) -> tuple[int, bytes]:
        with self._lock:
            self._activations += 1
        for hook in self._activate_hooks:
            try:
                hook()
            except Exception as exc:
                return self._failed(_ACTIVATE, exc)
        return 200, self._activate_body

    @property
    def activations(self) -> int:
        """How many ``Plugin.Activate`` calls this server has received (since it was made)."""
        return self._activations

    def on_activate(self, fn: _A) -> _A:
        """Call ``fn()`` on every ``Plugin.Activate``, before the handshake is answered.

        Usable as a decorator. A hook that raises fails the handshake: the
        engine gets HTTP 500 ``{"Err": "<message>"}`` and does not use the
        plugin (a way to test how a host copes with a plugin that will not
        activate). Hooks run in the order they were added, on the thread
        that answers the request; keep them quick (Podman activates before
        every call).
        """
        if not callable(fn):
            raise TypeError(f"activation hook is not callable: {fn!r}")
        self._activate_hooks.append(fn)
        return fn

    # -- async -----------------------------------------------------------------

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio event loop ``async def`` handlers run on (None when not serving).

        The server owns it: it starts with the server when an ``async def``
        handler is registered, else with the first awaitable a handler
        returns, and stops with the server. Schedule work on it with
        ``asyncio.run_coroutine_threadsafe(coro, server.event_loop)``.
        """
        state = self._state
        if state is None:
            return None
        runner = state.runner
        return runner.loop if runner is not None else None

    def _await(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` on the server's event loop from another thread; wait for it."""
        state = self._state
        if state is None:
            raise PluginError("the server is not serving")
        return (state.runner or state.start_runner()).run(awaitable)

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

        In a program that has set up no logging (neither the root logger
        nor ``pluginkit.sdk`` has a handler), the ``pluginkit.sdk`` logger
        gets one writing INFO and above to stderr: the start line, each
        failed call, and the traceback of an unexpected exception.

        SIGTERM (when called from the main thread) stops the server
        gracefully: in-flight requests finish, then it returns. A second
        SIGTERM stops it at once, as Ctrl-C would: what is in flight (an
        inline handler too) is cut short, the socket and spec files are
        removed, and it returns.

        Args:
            address: A unix socket path, ``unix:///path``,
                ``tcp://host:port`` (port 0 picks a free port), or None for
                the listening socket the parent handed over (systemd's
                ``LISTEN_FDS``/``LISTEN_PID``: socket activation, or the
                manager upgrading the plugin; the server never removes its
                path), else ``$PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET``,
                else ``/run/docker/plugins/<name>.sock``.
            gid: Group (id or name) given to the unix socket, like
                go-plugins-helpers' ``ServeUnix``; None leaves it alone.
            mode: Permissions of the unix socket.
            spec_dir: For TCP: write ``<spec_dir>/<name>.spec`` with the
                served URL (removed on stop) so that Docker finds the plugin.
            ssl_context: Serve TLS with this server-side context.
            certfile: Serve TLS with this certificate (PEM) ...
            keyfile: ... and this private key (defaults to ``certfile``).
        """
        _default_logging()
        state = self._listen(address, gid, mode, spec_dir, ssl_context, certfile, keyfile)
        in_main = threading.current_thread() is threading.main_thread()
        previous: Any = None
        forced = False
        if in_main:

            def on_term(signum: int, frame: FrameType | None) -> None:
                nonlocal forced
                if not state.stopping:
                    self._request_stop(state)
                elif not forced and state.running:
                    # Raised in this (the loop's) thread wherever it is, in
                    # select() or in an inline handler; the loop's clean-up
                    # runs on the way out. Not once the loop has ended: then
                    # the clean-up is under way and must not be cut short.
                    forced = True
                    raise _ForcedStop

            previous = signal.signal(signal.SIGTERM, on_term)
        try:
            self._run_loop(state)
        except _ForcedStop:
            logger.warning(
                "plugin server at %s: stopped at once by a second SIGTERM, "
                "cutting in-flight requests short",
                state.url,
            )
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
        if state.loop_ident == threading.get_ident() or handling.state is state:
            return  # called by a handler: the server stops once its request is answered
        # A handler stuck inline in the loop cannot be interrupted: past the
        # deadline, close the sockets from here and let that thread run out.
        if not state.done.wait(max(0.0, state.deadline - time.monotonic()) + 2.0):
            logger.warning(
                "plugin server at %s: a handler is still running after the stop timeout; "
                "closing the server under it",
                state.url,
            )
            state.cleanup()
            with self._lock:
                if self._state is state:
                    self._state = None
            return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def _request_stop(self, state: ServeLoop, timeout: float | None = None) -> None:
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
    ) -> ServeLoop:
        with self._lock:
            if self._state is not None:
                raise PluginError(f"the server is already serving at {self._state.url}")
            inherited = take_inherited_listener() if address is None else None
            if inherited is not None:
                resolved = _inherited_address(inherited)
            else:
                resolved = resolve_address(address, self.name)
            if certfile is not None:
                if ssl_context is not None:
                    raise ValueError("pass either ssl_context or certfile/keyfile, not both")
                import ssl  # here: a plugin without TLS never loads it

                ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_context.load_cert_chain(certfile, keyfile)
            elif keyfile is not None:
                raise ValueError("keyfile needs certfile")
            if spec_dir is not None and resolved.is_unix:
                raise ValueError("spec_dir is for TCP addresses; unix sockets are found by path")
            if spec_dir is not None and not self.name:
                raise ValueError("writing a spec file needs a server name (name=...)")
            state = ServeLoop(
                self._answer,
                self.name,
                self.threads,
                self.max_body,
                resolved,
                resolve_gid(gid),
                mode,
                ssl_context,
                read_timeout=self.read_timeout,
                max_connections=self.max_connections or _default_max_connections(),
                aliases=self.aliases,
                inherited=inherited,
            )
            try:
                if spec_dir is not None:
                    state.write_spec(Path(spec_dir))
            except BaseException:
                state.cleanup()
                raise
            self._state = state
            if any(is_async_function(fn) for fn, _ in self._routes.values()):
                state.start_runner()
            logger.info(
                "plugin server%s listening on %s%s",
                f" {self.name}" if self.name else "",
                state.url,
                f" (also as {', '.join(self.aliases)})" if self.aliases else "",
            )
            return state

    def _run_loop(self, state: ServeLoop) -> None:
        state.loop_ident = threading.get_ident()
        try:
            state.running = True
            try:
                state.run()
            finally:
                state.running = False
        except Exception:
            if not state.closed:
                logger.exception("plugin server loop at %s failed", state.url)
                raise
        finally:
            state.cleanup()
            with self._lock:
                if self._state is state:
                    self._state = None
            state.done.set()
