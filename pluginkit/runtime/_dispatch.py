"""One thread per runtime that calls the ``on_exit`` callbacks, one exit after the other.

Every runtime reports exits the same way (see :class:`~pluginkit.runtime.Runtime`):
from a thread of its own, never from inside one of its methods, exactly once
per exit. :class:`ExitDispatcher` is that thread, shared by the runtimes so
the rules live in one place.
"""

from __future__ import annotations

import logging
import queue
import threading

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._base import ExitCallback, PluginExit

__all__ = ["ExitDispatcher"]

_Item = tuple[ExitCallback, PluginExit] | None


class ExitDispatcher:
    """Calls exit callbacks in order from one daemon thread, started on first use.

    A slow or failing callback never delays exit detection: detectors only
    :meth:`post`. An exception of a callback is logged on ``logger`` and
    does not stop the thread. :meth:`close` ends the thread once what was
    posted before it has been delivered; a later :meth:`post` starts a new
    thread (each thread has its own queue, so a close ends exactly its own).

    Args:
        name: The thread's name.
        logger: Where failing callbacks are logged.
    """

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self._name = name
        self._log = logger
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item] | None = None
        self._thread: threading.Thread | None = None

    def post(self, callback: ExitCallback, exit_: PluginExit) -> None:
        """Have ``callback(exit_)`` called from the dispatcher thread."""
        with self._lock:
            if self._queue is None or self._thread is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._queue,), name=self._name, daemon=True
                )
                self._thread.start()
            self._queue.put((callback, exit_))

    def in_thread(self) -> bool:
        """Tell whether the caller runs in the dispatcher thread (inside a callback)."""
        with self._lock:
            return self._thread is threading.current_thread()

    def close(self) -> None:
        """Deliver what was posted, then end the thread; wait for it unless called from it.

        Called from a callback (which may shut its manager down, closing the
        runtime), it cannot wait for itself: the thread ends once that
        callback returns.
        """
        with self._lock:
            thread, pending = self._thread, self._queue
            self._thread = self._queue = None
        if thread is None or pending is None:
            return
        pending.put(None)
        if thread is not threading.current_thread():
            thread.join()

    def _loop(self, pending: queue.SimpleQueue[_Item]) -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            callback, exit_ = item
            try:
                callback(exit_)
            except Exception:
                self._log.exception("on_exit callback for plugin %s failed", exit_.id)
