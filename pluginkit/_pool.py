"""Connections to a plugin: dialing (unix, TCP, TLS) and the pool of kept-alive ones.

Blocking sockets for the sync :class:`~pluginkit.Client`; the async client
dials with asyncio and keeps its own pool of streams, under the same rules
(Docker's dial timeout and idle timeout, at most 16 idle connections).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
import weakref
from typing import Final

from ._tls import TLSConfig, ssl_context
from ._wire._address import PluginAddress

__all__ = [
    "DIAL_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_IDLE",
    "ConnectFailed",
    "NothingReceived",
    "Pool",
    "connect",
    "is_tls_error",
    "quiet",
    "reason",
    "remaining",
]

DIAL_TIMEOUT: Final = 10.0  # Docker's (go-connections) dial timeout
IDLE_TIMEOUT: Final = 30.0  # Docker's IdleConnTimeout: drop older pooled connections
MAX_IDLE: Final = 16


class NothingReceived(Exception):
    """The connection failed before any byte of the reply arrived."""


class ConnectFailed(Exception):
    """The plugin could not be reached; retried with backoff.

    ``sent``: the connection broke after (part of) the request went out, so
    the plugin may have received it. ``retry``: False when trying again
    cannot help (a certificate that does not verify).
    """

    def __init__(self, cause: BaseException, *, retry: bool = True, sent: bool = False) -> None:
        self.cause = cause
        self.retry = retry
        self.sent = sent


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline``; TimeoutError when it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def reason(exc: BaseException) -> str:
    """Say briefly why a connection failed (an OSError's strerror, else its text)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def connect(
    address: PluginAddress, tls: TLSConfig | None, use_tls: bool, deadline: float | None
) -> socket.socket:
    """Dial ``address`` within Docker's dial timeout (and ``deadline``).

    Raises:
        ConnectFailed: the plugin cannot be reached (``retry=False`` for TLS
            errors: a certificate that does not verify will not on retry).
        TimeoutError: the deadline passed while dialing.
    """
    try:
        dial = DIAL_TIMEOUT if deadline is None else min(DIAL_TIMEOUT, remaining(deadline))
        if address.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                # With a timeout, as Go dials: a full listen backlog then
                # fails at once (EAGAIN) and is retried, where a blocking
                # connect would wait for the plugin to accept, forever.
                sock.settimeout(dial)
                sock.connect(address.unix_path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((address.host, address.port), timeout=dial)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if use_tls:
                sock = ssl_context(tls).wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
        return sock
    except TimeoutError as exc:
        if deadline is not None and time.monotonic() >= deadline:
            raise
        raise ConnectFailed(exc) from None
    except OSError as exc:
        raise ConnectFailed(exc, retry=not is_tls_error(exc)) from None


def is_tls_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` is an :class:`ssl.SSLError` (without importing :mod:`ssl`)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


def quiet(poller: select.poll) -> bool:
    """Tell whether an idle pooled connection is still open and received nothing.

    Bytes arriving on an idle connection are no reply to anything we sent:
    read by the next call, they would be taken for its reply (Go's transport
    drops such a connection too). An end of file means the plugin closed it.
    ``poller`` watches the connection alone for POLLIN: received bytes, an end
    of file (POLLIN or POLLHUP), an error (POLLERR) or a closed descriptor
    (POLLNVAL) all report an event. It looks at the raw socket, also for TLS.
    One ``poll(0)`` costs a third of a peeking ``recv``, which raises
    BlockingIOError when all is well (and would first wait for data on a
    socket with a timeout).
    """
    return not poller.poll(0)


class Pool:
    """Idle kept-alive connections of one client; thread-safe without a lock.

    ``idle`` holds (socket, when it came back, a poll object watching it);
    ``list.pop`` and ``list.append`` are atomic. After :meth:`close`, sockets
    checked in are closed instead.
    """

    __slots__ = ("__weakref__", "closed", "idle")

    def __init__(self) -> None:
        self.idle: list[tuple[socket.socket, float, select.poll]] = []
        self.closed = False
        _pools.add(self)

    def checkout(self) -> socket.socket | None:
        """Return an idle connection that is still usable, or None."""
        idle = self.idle
        while idle:
            try:
                sock, since, poller = idle.pop()
            except IndexError:
                break
            if time.monotonic() - since < IDLE_TIMEOUT and quiet(poller):
                return sock
            sock.close()  # idle too long, closed by the plugin, or holding stray bytes
        return None

    def checkin(self, sock: socket.socket, poller: select.poll | None = None) -> None:
        """Keep ``sock`` for a later call (or close it: pool closed or full)."""
        idle = self.idle
        if self.closed or len(idle) >= MAX_IDLE:
            sock.close()
            return
        if poller is None:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
        idle.append((sock, time.monotonic(), poller))
        self._drain_if_closed()  # close() may have run meanwhile

    def _drain_if_closed(self) -> None:
        if self.closed:
            self.drain()

    def close(self) -> None:
        """Close the idle connections; later check-ins close theirs."""
        self.closed = True
        self.drain()

    def drain(self) -> None:
        """Close the idle connections."""
        idle = self.idle
        while idle:
            try:
                sock, _, _ = idle.pop()
            except IndexError:
                break
            sock.close()


# A forked child must not talk on its parent's pooled connections: both would
# send on one socket and read each other's replies. The hook costs nothing
# per call, unlike a pid check.
_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _drop_pools_after_fork() -> None:
    for pool in list(_pools):
        pool.drain()  # closes the child's copies only; the parent's stay open


os.register_at_fork(after_in_child=_drop_pools_after_fork)
