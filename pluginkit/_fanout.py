"""Run one function over many items: inline while each is quick, in threads once one is slow.

The manager starts, restores and stops every plugin at once at start-up and
shutdown. With a runtime whose start takes milliseconds (a process, a
container), threads overlap the waiting and save most of the time. With a
runtime whose start takes microseconds they cost more than they save: on
two cores, sixteen threads taking turns at the GIL made a restore of 1,000
plugins 1.7 to 2.3 times slower than one thread doing them in turn
(``benchmarks/bench_restore.py``). So the calling thread works through the
items itself and starts helpers only when two items in a row each take
longer than ``slow`` seconds; then up to ``workers`` threads share what is
left. One slow item is not a trend: with thousands of quick items, the kernel
or the scheduler stalls the thread for a millisecond or two now and then (on
this project's CI machine, about every 400 plugins of a shutdown), and one
such stall used to send the rest into sixteen threads, doubling the time.
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
"""Items taking longer than this (seconds), two in a row, are worth overlapping with the rest."""


def run_each(
    fn: Callable[[_T], object],
    items: Iterable[_T],
    *,
    workers: int = 16,
    slow: float = SLOW,
    name: str = "pluginkit-fanout",
) -> None:
    """Call ``fn(item)`` once for every item, in parallel once calls prove slow.

    Calls prove slow when two in a row each take longer than ``slow``
    seconds; then up to ``workers`` threads (this one included) share the
    items left.

    Every item is run even when some raise; the first exception (in the
    order the calls ended) is raised at the end. A ``BaseException`` that is
    not an ``Exception`` (``KeyboardInterrupt``) stops handing out items,
    waits for the calls under way and is raised.
    """
    todo: deque[_T] = deque(items)
    errors: list[Exception] = []
    stop = threading.Event()
    helpers: list[threading.Thread] = []
    slow_in_a_row = 0

    def work(lead: bool) -> None:
        nonlocal slow_in_a_row
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
            if not lead or helpers:
                continue
            slow_in_a_row = slow_in_a_row + 1 if time.monotonic() - started > slow else 0
            if slow_in_a_row >= 2 and todo:
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
