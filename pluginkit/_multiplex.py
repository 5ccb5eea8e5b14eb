"""Many plugin calls at once, from one thread (used by ``LegacyRegistry.get_all``)."""

from __future__ import annotations

import errno
import heapq
import os
import select
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._errors import PluginConnectionError, PluginError, PluginProtocolError
from ._pool import reason
from ._wire._clientside import RECV, BadReply, TooLarge, call_error, complete_reply

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["call_concurrently"]

_MULTIPLEX_MAX: Final = 1024 * 1024  # replies to call_concurrently (activations)


def call_concurrently(calls: Iterable[tuple[Client, str]], *, timeout: float | None) -> list[Any]:
    """Make one call (no args) to each client at the same time.

    Failed calls are not retried, with one exception: a unix socket whose
    listen backlog is full (the plugin lives, but is behind) is connected to
    again, sooner then less often, for as long as the plugin keeps accepting:
    a call fails once a quarter of a second has passed with no connection to
    its plugin's socket going through.

    ``calls`` is consumed lazily: each request is on its way before the next
    item is produced, so the plugins work while the caller prepares the rest.
    Unix-socket clients are driven from this thread with non-blocking sockets
    and ``epoll`` (hundreds of activations cost one thread); others (TCP,
    TLS) get a thread each, so that slow ones never queue the rest behind
    them. Each result is the decoded reply or the
    :class:`PluginError` the call raised; ``timeout`` counts from the moment
    the last request was sent. Replies over 1 MiB are refused on unix sockets
    (these are handshakes). Connections that end cleanly go to their client's
    pool.
    """
    results: list[Any] = []
    poller = select.epoll()
    jobs: dict[int, _Pending] = {}
    waiting: _Waiting = []  # calls whose plugin's backlog was full
    progress: _Progress = {}  # socket path -> when a connect to it last went through
    threads: list[threading.Thread] = []
    try:
        for index, (client, method) in enumerate(calls):
            results.append(None)
            if client._address.unix_path is None or client._use_tls:
                thread = threading.Thread(
                    target=_call_quietly,
                    args=(client, method, timeout, results, index),
                    name=f"pluginkit-call-{index}",
                    daemon=True,
                )
                thread.start()
                threads.append(thread)
            else:
                retry = _Retry(index, client, method)
                results[index] = _begin(poller, jobs, waiting, progress, retry)
        _multiplex(poller, jobs, waiting, progress, results, timeout)
    finally:
        poller.close()
        for job in jobs.values():
            job.sock.close()
        for thread in threads:
            thread.join()
    return results


def _call_quietly(
    client: Client, method: str, timeout: float | None, results: list[Any], index: int
) -> None:
    try:
        results[index] = client.call(method, timeout=timeout, retry_timeout=0)
    except PluginError as exc:
        results[index] = exc
    except Exception as exc:  # a result for every call, never a dead thread's None
        error = PluginError(f"{method}: calling plugin at {client.addr} failed: {exc!r}")
        error.__cause__ = exc
        results[index] = error


class _Pending:
    __slots__ = ("client", "data", "index", "method", "out", "sock")

    def __init__(
        self, index: int, client: Client, method: str, sock: socket.socket, out: bytes
    ) -> None:
        self.index = index
        self.client = client
        self.method = method
        self.sock = sock
        self.out = out
        self.data = b""


# One-shot registrations: a finished socket needs no unregister call (it may
# go to a client's pool, still registered but disarmed, until the epoll closes).
_IN: Final = select.EPOLLIN | select.EPOLLONESHOT
_OUT: Final = select.EPOLLOUT | select.EPOLLONESHOT


def _start(
    poller: select.epoll,
    jobs: dict[int, _Pending],
    index: int,
    client: Client,
    method: str,
) -> PluginError | None:
    """Connect and send one request; an error when that fails at once.

    Raises:
        _Backlogged: the plugin's listen backlog is full (try again later).
    """
    prefix = client._prefixes.get(method)
    if prefix is None:
        try:
            prefix = client._prefix(method)
        except ValueError as exc:
            return PluginError(str(exc))
    request = prefix + b"Content-Length: 0\r\n\r\n"
    path = client._address.unix_path
    assert path is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        try:
            sock.connect(path)
        except BlockingIOError:
            # A full listen backlog: the plugin lives but is behind, and unix
            # sockets neither queue such a connect nor complete it later.
            sock.close()
            raise _Backlogged from None
        try:
            sent = sock.send(request)
        except BlockingIOError:
            sent = 0
    except OSError as exc:
        sock.close()
        return PluginConnectionError(
            f"{method}: cannot connect to plugin at {client.addr}: {reason(exc)}"
        )
    job = _Pending(index, client, method, sock, request[sent:])
    fd = sock.fileno()
    jobs[fd] = job
    poller.register(fd, _OUT if job.out else _IN)
    return None


def _multiplex(
    poller: select.epoll,
    jobs: dict[int, _Pending],
    waiting: _Waiting,
    progress: _Progress,
    results: list[Any],
    timeout: float | None,
) -> None:
    """Run the started calls to completion, or until ``timeout``."""

    def limit(client: Client) -> int:
        # Replies are re-parsed as they grow: keep them small (a manifest is).
        return min(client.max_response_size, _MULTIPLEX_MAX)

    deadline = None if timeout is None else time.monotonic() + timeout
    while jobs or waiting:
        now = time.monotonic()
        wait = -1.0 if deadline is None else deadline - now
        if deadline is not None and wait <= 0:
            break
        if waiting:
            until = max(0.0, waiting[0][0] - now)
            wait = until if wait < 0 else min(wait, until)
        for fd, _events in poller.poll(wait):
            job = jobs[fd]
            client, method = job.client, job.method
            if job.out:
                try:
                    sent = job.sock.send(job.out)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    _fail_job(jobs, fd, results, exc)
                    continue
                job.out = job.out[sent:]
                poller.modify(fd, _OUT if job.out else _IN)
                continue
            try:
                more = job.sock.recv(RECV)
            except BlockingIOError:
                poller.modify(fd, _IN)
                continue
            except OSError as exc:
                _fail_job(jobs, fd, results, exc)
                continue
            if not more and not job.data:
                _fail_job(
                    jobs, fd, results, ConnectionResetError("connection closed by the plugin")
                )
                continue
            job.data += more
            try:
                done = complete_reply(job.data, not more, limit(client))
            except BadReply as exc:
                del jobs[fd]
                job.sock.close()
                results[job.index] = client._protocol_error(method, str(exc))
                continue
            except TooLarge as exc:
                del jobs[fd]
                job.sock.close()
                results[job.index] = client._protocol_error(
                    method,
                    f"the reply ({exc.size} bytes or more) is larger than the limit of "
                    f"{limit(client)} bytes",
                )
                continue
            if done is None:
                poller.modify(fd, _IN)
                continue
            del jobs[fd]
            head, body = done
            if head.keep_alive and more:
                # Left non-blocking: the next call sets the mode it needs.
                client._checkin(job.sock)
            else:
                job.sock.close()
            if head.status != 200:
                results[job.index] = call_error(method, head.status, body)
                continue
            try:
                results[job.index] = client._decode(method, body)
            except PluginProtocolError as exc:
                results[job.index] = exc
        now = time.monotonic()
        while waiting and waiting[0][0] <= now:
            _, _, retry = heapq.heappop(waiting)
            # Patience counts from the last sign of life: a plugin that drains
            # its backlog slowly (a busy host, a burst of names for one socket)
            # is waited for; one that accepts nothing fails its calls.
            since = max(retry.first, progress.get(retry.path, retry.first))
            if now - since >= _BACKLOG_PATIENCE:
                results[retry.index] = _backlog_error(retry)
            else:
                results[retry.index] = _begin(poller, jobs, waiting, progress, retry)
    for _, _, retry in waiting:
        results[retry.index] = _backlog_error(retry)
    waiting.clear()
    for job in jobs.values():
        job.sock.close()
        results[job.index] = job.client._timeout_error(job.method, timeout)
    jobs.clear()


class _Backlogged(Exception):
    """The plugin's listen backlog is full: it lives, but has no room for a connection yet."""


class _Retry:
    """A call to start again once its plugin's backlog may have room."""

    __slots__ = ("client", "delay", "first", "index", "method", "path")

    def __init__(self, index: int, client: Client, method: str) -> None:
        self.index = index
        self.client = client
        self.method = method
        path = client._address.unix_path
        assert path is not None
        self.path = path
        self.first = time.monotonic()
        self.delay = _RETRY_FIRST


_Waiting = list[tuple[float, int, _Retry]]
"""A heap of calls waiting to be started again: (when, index, call)."""

_Progress = dict[str, float]
"""Per unix socket path, when a connect to it last went through (its plugin accepted)."""


# A full backlog drains as fast as the plugin accepts (a burst of calls to
# one plugin, a busy host): try again soon, then less often. Docker's client
# retries every failed dial of an activation for up to ~15 s, which makes one
# hung plugin stall the whole GetAll; here a call fails once its plugin has
# let no connection through for _BACKLOG_PATIENCE. Counting from the last
# connection that went through, not from the call's first try, matters: 60
# names on one socket with a backlog of 1 drain in ~30 ms on a quiet host but
# took over 0.25 s on a loaded CI machine, failing the unlucky last few. A
# hung plugin costs every get_all this long, so it stays short.
_RETRY_FIRST: Final = 0.005
_RETRY_MAX: Final = 0.1
_BACKLOG_PATIENCE: Final = 0.25


def _begin(
    poller: select.epoll,
    jobs: dict[int, _Pending],
    waiting: _Waiting,
    progress: _Progress,
    retry: _Retry,
) -> PluginError | None:
    """Start ``retry``'s call, or put it in ``waiting`` while its plugin's backlog is full."""
    try:
        error = _start(poller, jobs, retry.index, retry.client, retry.method)
    except _Backlogged:
        heapq.heappush(waiting, (time.monotonic() + retry.delay, retry.index, retry))
        retry.delay = min(retry.delay * 2, _RETRY_MAX)
        return None
    if error is None:  # the plugin took a connection: its backlog moves
        progress[retry.path] = time.monotonic()
    return error


def _backlog_error(retry: _Retry) -> PluginConnectionError:
    return PluginConnectionError(
        f"{retry.method}: cannot connect to plugin at {retry.client.addr}: "
        f"{os.strerror(errno.EAGAIN)} (its listen backlog stayed full)"
    )


def _fail_job(jobs: dict[int, _Pending], fd: int, results: list[Any], exc: BaseException) -> None:
    """Record a connection failure for the job on ``fd``."""
    job = jobs.pop(fd)
    job.sock.close()
    results[job.index] = PluginConnectionError(
        f"{job.method}: cannot connect to plugin at {job.client.addr}: {reason(exc)}"
    )
