"""Helpers shared by the runtime tests (process and fake runtimes)."""

from __future__ import annotations

import threading

import pytest

from pluginkit.runtime import PluginExit


class Exits:
    """An on_exit callback that records every exit; ``wait`` blocks until enough came."""

    def __init__(self, timeout: float = 15.0) -> None:
        self.exits: list[PluginExit] = []
        self.timeout = timeout
        self._cond = threading.Condition()

    def __call__(self, exit_: PluginExit) -> None:
        with self._cond:
            self.exits.append(exit_)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float | None = None) -> PluginExit:
        """Return the ``count``-th exit, failing the test if it does not come in time."""
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.exits) >= count, limit):
                pytest.fail(f"expected {count} exit(s), got {self.exits}")
            return self.exits[count - 1]
