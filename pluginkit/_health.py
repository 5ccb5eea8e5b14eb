"""Health checks of running managed plugins: one probing thread for all of them.

A :class:`HealthCheck` given to a :class:`~pluginkit.Manager` makes it probe
every running managed plugin: a cheap HTTP call on the plugin's socket
(``POST /Plugin.Activate`` by default) every ``interval`` seconds, failed when
no answer comes within ``timeout``. After ``retries`` failures in a row the
plugin is *unhealthy*: the manager emits ``health_status: unhealthy`` and
restarts it through its restart policy. Docker has no such check for
plugins (moby#32797): a hung plugin stays "enabled" forever there.

:class:`HealthMonitor` runs every probe of a manager on one asyncio event
loop in one thread (a timer per plugin on that loop, no thread per plugin),
so thousands of plugins cost thousands of small coroutines, not threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable, Hashable
from typing import Final

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["HEALTHY", "STARTING", "UNHEALTHY", "HealthCheck", "HealthMonitor"]

log = logging.getLogger("pluginkit.manager")

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

_ACTIVATE = "Plugin.Activate"
_STATUS_LINE_MAX = 1024  # an answer's first line longer than this is no HTTP answer

# A probe's deadline handled later than this part of the timeout says the
# monitor was starved, and the plugin likely with it: no verdict, a new
# timeout. Half a timeout let through the lags of an oversubscribed host (2,000
# fake plugins in one process beside two CPU hogs on two cores: deadlines seen
# 0.15-0.3 s late, a few healthy plugins restarted in one run of six). The
# extensions are capped, or a monitor that never keeps time (a lag above this
# on every deadline) would never find a hung plugin.
_LATE: Final = 0.25
_MAX_EXTENSIONS: Final = 3


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"HealthCheck.{attribute.name} must be a number > 0, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"HealthCheck.{attribute.name} must be an integer >= 1, got {value!r}")


def _method(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or any(c in value for c in " /?#\r\n\t"):
        raise ValueError(
            f"HealthCheck.method must be a plugin method name such as "
            f"'VolumeDriver.Capabilities', got {value!r}"
        )


@attrs.frozen
class HealthCheck:
    """How a :class:`~pluginkit.Manager` probes its running plugins.

    The defaults bring a hung plugin (SIGSTOP, deadlock) back within about
    3 s plus its start time: 2 failed probes 1 s apart, each given 0.5 s.

    Attributes:
        interval: seconds from the start of one probe to the start of the next.
        timeout: seconds a probe waits for the answer's status line.
        retries: failed probes in a row that make the plugin unhealthy.
        method: the plugin method called, e.g. ``"VolumeDriver.Capabilities"``:
            then only a 2xx answer counts as healthy. ``None`` (the default)
            calls ``Plugin.Activate``, which every plugin answers; any HTTP
            answer counts (a managed plugin need not implement it, but its
            server still answers).
    """

    interval: float = attrs.field(default=1.0, validator=_positive)
    timeout: float = attrs.field(default=0.5, validator=_positive)
    retries: int = attrs.field(default=2, validator=_at_least_one)
    method: str | None = attrs.field(default=None, validator=_method)


HealthCallback = Callable[[Hashable, str, int], None]
"""``(key, status, failing_streak)``, called on the monitor's thread when a status changes."""


class HealthMonitor:
    """Probes watched unix sockets on one event loop thread; reports status changes.

    ``on_change(key, status, failing)`` is called on the monitor's thread
    with ``"healthy"`` after the first answer (and after any answer that
    follows a failure) and ``"unhealthy"`` after ``check.retries`` failures
    in a row; then the key is no longer probed. It must return quickly.
    """

    def __init__(self, check: HealthCheck, on_change: HealthCallback) -> None:
        self.check = check
        self._on_change = on_change
        method = check.method or _ACTIVATE
        self._request = (
            f"POST /{method} HTTP/1.1\r\nHost: plugin\r\n"
            "Accept: application/vnd.docker.plugins.v1.2+json\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}"
        ).encode()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._closed = False

    def watch(self, key: Hashable, socket_path: str) -> None:
        """Start probing ``socket_path`` for ``key`` (replacing an earlier watch of it)."""
        loop = self._ensure_loop()
        if loop is not None:
            loop.call_soon_threadsafe(self._start, key, socket_path)

    def unwatch(self, key: Hashable) -> None:
        """Stop probing ``key`` (nothing happens for an unknown key)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self._cancel, key)

    def close(self) -> None:
        """Stop every probe and the thread (idempotent)."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()

    # -- on the loop's thread --------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop | None:
        with self._lock:
            if self._closed:
                return None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run, args=(loop,), name="pluginkit-health", daemon=True
                )
                self._loop, self._thread = loop, thread
                thread.start()
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            self._tasks.clear()  # ends a probe loop whose cancel was lost (bpo-42130)
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=2 * self.check.timeout))
                # Let the closed connections finish closing.
                loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _start(self, key: Hashable, socket_path: str) -> None:
        self._cancel(key)
        self._tasks[key] = asyncio.get_running_loop().create_task(self._watch(key, socket_path))

    def _cancel(self, key: Hashable) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def _watch(self, key: Hashable, socket_path: str) -> None:
        loop = asyncio.get_running_loop()
        check = self.check
        failing = 0
        healthy = False
        # Plugins started together (a restore, a fleet roll-out) would be
        # probed together every interval, a burst the monitor cannot serve in
        # time: after the first probe, each plugin's rhythm is shifted by a
        # random part of the interval, which spreads the probes evenly.
        gap = check.interval * (0.5 + random.random())
        me = asyncio.current_task()
        while self._tasks.get(key) is me:
            started = loop.time()
            if await self.probe(socket_path):
                failing = 0
                if not healthy:
                    healthy = True
                    self._report(key, HEALTHY, 0)
            else:
                failing += 1
                if failing >= check.retries:
                    self._tasks.pop(key, None)
                    self._report(key, UNHEALTHY, failing)
                    return
            await asyncio.sleep(max(0.0, started + gap - loop.time()))
            gap = check.interval

    def _report(self, key: Hashable, status: str, failing: int) -> None:
        try:
            self._on_change(key, status, failing)
        except Exception:
            log.exception("health callback failed")

    async def probe(self, socket_path: str) -> bool:
        """Make one probe; True when the plugin answered in time (2xx for a custom method).

        "In time" is ``timeout`` seconds of a monitor that keeps time: when
        the probe's deadline is handled late by more than a quarter of the
        timeout (the monitor's thread was starved: too many probes for one
        thread, a host or process out of CPU), the plugin was most likely
        starved as well, so the late deadline is no verdict on it; the probe
        gets a new ``timeout`` from then. Counting it would restart healthy
        plugins because the host is busy, which makes it busier: at 2,000
        fake plugins in one process, 1,000 restarts in 15 s. A probe gets at
        most ``_MAX_EXTENSIONS`` new timeouts, so a hung plugin is found even
        by a monitor that never keeps time.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        timeout = self.check.timeout
        deadline = loop.time() + timeout
        expired = False
        extensions = 0
        timer: asyncio.TimerHandle

        def expire() -> None:
            nonlocal deadline, timer, expired, extensions
            now = loop.time()
            if now - deadline > timeout * _LATE and extensions < _MAX_EXTENSIONS:
                extensions += 1
                deadline = now + timeout
                timer = loop.call_at(deadline, expire)
                return
            expired = True
            task.cancel()

        timer = loop.call_at(deadline, expire)
        # A plain socket and the loop's socket calls: a probe is a handful
        # of system calls, and asyncio's streams and wait_for cost twice as
        # much CPU (the monitor may run thousands of probes a second).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, socket_path)
            await loop.sock_sendall(sock, self._request)
            head = b""
            while b"\n" not in head:
                if len(head) >= _STATUS_LINE_MAX:
                    return False
                chunk = await loop.sock_recv(sock, _STATUS_LINE_MAX)
                if not chunk:
                    return False
                head += chunk
        except asyncio.CancelledError:
            if not expired:
                raise  # unwatched or closed
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            return False
        except OSError:
            return False
        finally:
            timer.cancel()
            sock.close()
        parts = head.split(b"\n", 1)[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            return False
        if self.check.method is None:
            return True
        return 200 <= int(parts[1]) < 300
