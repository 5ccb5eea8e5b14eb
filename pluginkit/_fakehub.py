"""One event loop serving every fake plugin of a :class:`~pluginkit.testing.FakeRuntime`.

A fake plugin is a listening unix socket served by one shared asyncio loop
thread; requests are answered by a fixed pool of worker threads (handlers
may block without stalling the other plugins). However many fake plugins
run, the threads are the loop's and the pool's: 1,000 enabled plugins cost
a few dozen threads and their sockets, not thousands of threads.

The HTTP it speaks is the plugin protocol's small subset: ``POST /Method``
with a ``Content-Length`` (or chunked) JSON body, HTTP/1.1 keep-alive,
answers framed by ``Content-Length`` with Docker's plugin content type.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from typing import TypeVar

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["Answer", "FakeHub", "Listener", "bind_unix"]

_log = logging.getLogger("pluginkit.testing")

Answer = Callable[[str, bytes], tuple[int, bytes]]
"""Answers one request: (method, body) -> (status, JSON body); runs in a pool thread."""

_T = TypeVar("_T")

CONTENT_TYPE = b"application/vnd.docker.plugins.v1.1+json"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large"}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Listener:
    """One fake plugin's listening socket and open connections (owned by the loop)."""

    def __init__(
        self,
        path: str,
        sock: socket.socket,
        answer: Answer,
        fixed: dict[str, tuple[int, bytes]] | None = None,
    ) -> None:
        self.path = path
        self.sock = sock
        self.answer = answer
        self.fixed = fixed or {}
        self.writers: set[asyncio.StreamWriter] = set()
        self.closed = False

    def open(self) -> bool:
        """Tell whether it still serves (a method: the answer changes across awaits)."""
        return not self.closed


class FakeHub:
    """The loop thread and worker pool shared by a FakeRuntime's plugins.

    Args:
        workers: The most handler calls running at once, over all plugins.
    """

    def __init__(self, workers: int = 16) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="pluginkit-fake-handler"
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="pluginkit-fake-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def in_loop(self) -> bool:
        """Tell whether the calling thread is the loop's."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the loop thread and return its result (inline when already there)."""
        if self.in_loop():
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result()

    def later(self, delay: float, fn: Callable[[], object]) -> asyncio.TimerHandle:
        """Run ``fn`` in the loop thread after ``delay`` seconds; must be called in the loop."""
        return self._loop.call_later(delay, fn)

    def soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the loop thread soon (from any thread)."""
        self._loop.call_soon_threadsafe(fn)

    # -- listeners (loop thread only) ----------------------------------------------

    def serve(
        self,
        path: str,
        sock: socket.socket,
        answer: Answer,
        fixed: dict[str, tuple[int, bytes]] | None = None,
    ) -> Listener:
        """Serve ``sock`` (from :func:`bind_unix`, bound at ``path``) with ``answer``; loop only.

        ``fixed`` maps methods whose answer never changes (``Plugin.Activate``)
        to it: those are answered on the loop, without a trip to the worker
        pool (health checks call one such method on every plugin, every
        interval).
        """
        listener = Listener(path, sock, answer, fixed)
        self._loop.add_reader(sock.fileno(), self._accept, listener)
        return listener

    def _accept(self, listener: Listener) -> None:
        while not listener.closed:
            try:
                conn, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log.warning("fake plugin socket %s cannot accept: %s", listener.path, exc)
                return
            self._loop.create_task(self._connection(listener, conn))

    def close(self, listener: Listener) -> None:
        """Stop listening, cut every connection and remove the socket file; loop thread only."""
        if listener.closed:
            return
        listener.closed = True
        self._loop.remove_reader(listener.sock.fileno())
        listener.sock.close()
        for writer in list(listener.writers):
            writer.transport.abort()
        listener.writers.clear()
        with contextlib.suppress(OSError):
            os.unlink(listener.path)

    def shutdown(self) -> None:
        """End every connection, then stop the loop thread and the pool.

        The listeners must be closed first. Called from the loop thread itself
        (a fake stopped from inside a callback), the loop only stops.
        """
        if self._thread.is_alive() and not self.in_loop():

            async def finish() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(finish(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        elif self._thread.is_alive():
            self._loop.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self._loop.close()

    # -- HTTP -------------------------------------------------------------------

    async def _connection(self, listener: Listener, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=_MAX_HEAD)
        except OSError:
            conn.close()
            return
        if listener.closed:
            writer.transport.abort()
            return
        listener.writers.add(writer)
        try:
            while listener.open():
                try:
                    method, body, keep_alive = await _read_request(reader)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return  # the client went away (or sent a chunk line too long to read)
                except _BadRequest as exc:
                    writer.write(_reply(exc.status, _err(str(exc)), keep_alive=False))
                    return
                fixed = listener.fixed.get(method)
                if fixed is not None:
                    status, payload = fixed
                else:
                    status, payload = await self._loop.run_in_executor(
                        self._pool, _answer, listener, method, body
                    )
                if not listener.open():
                    return
                writer.write(_reply(status, payload, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, RuntimeError):
            return  # cut by close(), or the pool is shut down
        finally:
            listener.writers.discard(writer)
            writer.transport.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes, bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(400, "request head too large") from None
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        raise _BadRequest(400, "malformed request line")
    version = parts[2]
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get(b"connection", b"").lower()
    keep_alive = connection != b"close" if version == b"HTTP/1.1" else connection == b"keep-alive"
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        body = await reader.readexactly(length)
    method = parts[1][1:].split(b"?", 1)[0].decode("utf-8", "replace")
    return method, body, keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    pieces: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if length == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(pieces)
        size += length
        if size > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        pieces.append(await reader.readexactly(length))
        await reader.readexactly(2)


def _answer(listener: Listener, method: str, body: bytes) -> tuple[int, bytes]:
    try:
        return listener.answer(method, body)
    except Exception as exc:
        _log.exception("fake plugin at %s failed to answer %s", listener.path, method)
        return 500, _err(f"{type(exc).__name__}: {exc}")


def _err(message: str) -> bytes:
    return json.dumps({"Err": message}).encode()


def _reply(status: int, payload: bytes, *, keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        CONTENT_TYPE,
        len(payload),
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return head + payload


def bind_unix(path: str) -> socket.socket:
    """Return a non-blocking unix socket listening at ``path``; any thread may call it.

    A stale socket file nobody accepts on is replaced.

    Raises:
        OSError: the socket cannot be made (another listener holds the path...).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _clear_stale(path)
        sock.bind(path)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _clear_stale(path: str) -> None:
    """Remove a socket file at ``path`` that nobody accepts on (a dead plugin's)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return  # bind() will say what is wrong
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
    else:
        raise OSError(f"another server listens on {path}")
    finally:
        probe.close()
