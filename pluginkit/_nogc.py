"""Pause Python's cyclic garbage collector while a manager builds its many long-lived objects.

A manager restoring N plugins builds a few dozen objects per plugin (the
config's model, the entry, the plugin, its locks) that live as long as the
manager. CPython's collector runs every 700 new container objects and, as
they pile up, walks everything that survived: at 5,000 plugins, restore spent
more than half its time collecting (335 against 139 µs per plugin with the
collector paused; ``benchmarks/bench_restore.py``), and the cost per plugin
grew with N. Nothing built here is garbage yet, so those walks find nothing.
Mercurial does the same around its bulk loads (``util.nogc``).

The collector is process-wide: for the pause, cycles that other threads
leave are collected later, not never. A collector someone else disabled is
left alone, and re-enabled by nobody.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable automatic garbage collection inside the block, if it was enabled."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
