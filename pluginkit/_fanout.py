"""Run one function over many items: inline while each is quick, in threads once one is slow.

The manager starts, restores and stops every plugin at once at start-up and
shutdown. With a runtime whose start takes milliseconds (a process, a
container), threads overlap the waiting and save most of the time. With a
runtime whose start takes microseconds they cost more than they save: on
two cores, sixteen threads taking turns at the GIL made a restore of 1,000
plugins 1.7 to 2.3 times slower than one thread doing them in turn
(``benchmarks/bench_restore.py``). So the calling thread works through the
items itself and starts helpers only when one item takes longer than
``slow`` seconds; then up to ``workers`` threads share what is left.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["run_each"]

_T = TypeVar("_T")

SLOW = 0.002
"""An item taking longer than this (seconds) is worth overlapping with others."""


def run_each(
    fn: Callable[[_T], object],
    items: Iterable[_T],
    *,
    workers: int = 16,
    slow: float = SLOW,
    name: str = "pluginkit-fanout",
) -> None:
    """Call ``fn(item)`` once for every item, in parallel once calls prove slow.

    Every item is run even when some raise; the first exception (in the
    order the calls ended) is raised at the end. A ``BaseException`` that is
    not an ``Exception`` (``KeyboardInterrupt``) stops handing out items,
    waits for the calls under way and is raised.
    """
    todo: deque[_T] = deque(items)
    errors: list[Exception] = []
    stop = threading.Event()
    helpers: list[threading.Thread] = []

    def work(lead: bool) -> None:
        while not stop.is_set():
            try:
                item = todo.popleft()  # atomic: no lock needed
            except IndexError:
                return
            started = time.monotonic()
            try:
                fn(item)
            except Exception as exc:
                errors.append(exc)
            except BaseException:
                stop.set()
                raise
            if lead and not helpers and todo and time.monotonic() - started > slow:
                for index in range(min(workers - 1, len(todo))):
                    helper = threading.Thread(
                        target=work, args=(False,), name=f"{name}-{index}", daemon=True
                    )
                    helper.start()
                    helpers.append(helper)

    try:
        work(True)
    finally:
        for helper in helpers:
            helper.join()
    if errors:
        raise errors[0]
