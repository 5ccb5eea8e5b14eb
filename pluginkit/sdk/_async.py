"""The event loop a PluginServer owns for ``async def`` handlers and driver methods.

The selector loop (:mod:`pluginkit.sdk._loop`) stays synchronous: it parses
a request, calls the handler, and when the handler returns an awaitable (an
``async def`` handler, or a driver's ``async def`` method) it hands that to
the :class:`AsyncRunner` - one asyncio event loop in a thread of its own,
started with the first awaitable (or when the server starts, if a handler
is known to be ``async def``). Many awaitables run at once there, each on
its connection; when one finishes, its reply goes back to the selector
loop, which writes it. asyncio is imported only by a server that needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["AsyncRunner", "is_async_function"]

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


def is_async_function(fn: Any) -> bool:
    """Tell whether ``fn`` is an ``async def`` function or bound method (without ``inspect``)."""
    if getattr(fn, "_pluginkit_async", False):  # a driver's handler for an async method
        return True
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


#: Called in the event loop's thread with the awaitable's result, or the
#: exception it raised (then the result is None).
Done = Callable[[Any, "BaseException | None"], None]


class AsyncRunner:
    """An asyncio event loop in a daemon thread, running awaitables handed over from others."""

    def __init__(self, name: str, on_thread_start: Callable[[], None] | None = None) -> None:
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self._on_thread_start = on_thread_start
        self._tasks: set[Any] = set()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio = self._asyncio
        asyncio.set_event_loop(self.loop)
        if self._on_thread_start is not None:
            self._on_thread_start()
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            tasks = [task for task in self._tasks if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, awaitable: Awaitable[Any], done: Done) -> None:
        """Run ``awaitable`` on the loop; ``done(result, exc)`` is called there when it ends."""
        self.loop.call_soon_threadsafe(self._start, awaitable, done)

    def _start(self, awaitable: Awaitable[Any], done: Done) -> None:
        try:
            task = self._asyncio.ensure_future(awaitable)
        except BaseException as exc:  # not awaitable after all
            done(None, exc)
            return
        self._tasks.add(task)

        def finished(task: Any) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                done(None, self._asyncio.CancelledError("the server stopped"))
                return
            exc = task.exception()
            done(None if exc is not None else task.result(), exc)

        task.add_done_callback(finished)

    def run(self, awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
        """Run ``awaitable`` on the loop from another thread and wait for its result."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("AsyncRunner.run() called from the event loop's own thread")

        async def wrapper() -> Any:
            return await awaitable

        future = self._asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        return future.result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (awaitables still running are cancelled) and wait for its thread."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed meanwhile
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
