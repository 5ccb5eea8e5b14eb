"""Run blocking pluginkit work from asyncio without blocking the event loop.

:class:`Offloader` is a small, dedicated thread pool: a coroutine submits a
blocking call and awaits its result while the loop keeps running.
pluginkit's async faces use their own pools rather than the loop's default
executor (``asyncio.to_thread``) because

- the default executor is shared with the application and with the loop's
  own ``getaddrinfo``: a burst of slow plugin starts (each may wait up to its
  timeout) must not stall the application's DNS lookups or ``to_thread`` work;
- the pool bounds how many operations hit the runtime (a Docker engine) at
  once; more wait in its queue - as coroutines, not as threads;
- it is not tied to one event loop, so one async manager can serve several
  loops (or ``asyncio.run`` calls) over its lifetime.

Cancelling the awaiting coroutine drops a call still queued; one already
running in a thread finishes (threads cannot be interrupted) and its result
is discarded.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

# asyncio is imported where it is used: `import pluginkit` must stay light for
# programs (and SDK plugins) that never touch the async faces.

__all__ = ["Offloader", "offload"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Offloader:
    """A dedicated pool of at most ``workers`` threads named ``name-N``, made on first use."""

    def __init__(self, name: str, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers!r}")
        self.name = name
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
                pool = self._pool
        return pool

    async def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``fn(*args, **kwargs)`` in the pool (with the caller's context variables)."""
        import asyncio

        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._executor().submit(call))

    def close(self) -> None:
        """Let the threads end once idle; a later :meth:`run` makes a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


_lookups = Offloader("pluginkit-lookup", 4)


async def offload(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a blocking lookup in pluginkit's lookup pool (4 threads) and await it."""
    return await _lookups.run(fn, *args, **kwargs)
