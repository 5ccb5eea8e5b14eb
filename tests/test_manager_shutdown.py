"""Concurrent Manager.shutdown(): a second call waits, except from the manager's own callbacks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import Env

from pluginkit import Manager, PluginEvent
from pluginkit.testing import FakeRuntime


class GatedRuntime(FakeRuntime):
    """A FakeRuntime whose stop() of one plugin blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gated_id: str | None = None
        self.stopping = threading.Event()
        self.gate = threading.Event()

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        if plugin_id == self.gated_id:
            self.stopping.set()
            self.gate.wait(30)
        super().stop(plugin_id, grace=grace)


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp, runtime=GatedRuntime())
    yield e
    runtime = e.runtime
    assert isinstance(runtime, GatedRuntime)
    runtime.gate.set()
    e.close()


def _runtime(env: Env) -> GatedRuntime:
    runtime = env.runtime
    assert isinstance(runtime, GatedRuntime)
    return runtime


def test_a_concurrent_second_shutdown_returns_only_once_the_root_is_released(env: Env) -> None:
    """A second caller waits for the first: once it returns, a new manager opens the root."""
    runtime = _runtime(env)
    m = env.manager()
    plugin = m.create("a", env.plugin_dir("a"))
    m.enable("a")
    runtime.gated_id = plugin.id
    first = threading.Thread(target=m.shutdown)
    first.start()
    assert runtime.stopping.wait(10)
    outcome: list[Any] = []
    second_done = threading.Event()

    def second() -> None:
        m.shutdown()
        try:
            outcome.append(Manager(env.root, runtime=FakeRuntime(), run_root=env.run_root))
        except Exception as exc:
            outcome.append(exc)
        second_done.set()

    waiter = threading.Thread(target=second)
    waiter.start()
    assert not second_done.wait(0.3)  # still waiting for the first shutdown
    runtime.gate.set()
    waiter.join(10)
    first.join(10)
    assert not waiter.is_alive()
    assert not first.is_alive()
    (reopened,) = outcome
    assert isinstance(reopened, Manager)
    assert [p.name for p in reopened.list()] == ["a:latest"]
    reopened.shutdown()


def test_shutdown_from_an_exit_event_during_a_shutdown_returns_at_once(env: Env) -> None:
    """Called from on_event on the runtime's exit thread, a second shutdown does not wait."""
    runtime = _runtime(env)
    in_callback = threading.Event()
    callback_returned = threading.Event()
    holder: list[Manager] = []

    def on_event(event: PluginEvent) -> None:
        if event.action == "exit" and event.name == "a:latest":
            in_callback.set()
            assert runtime.stopping.wait(10)  # the other thread's shutdown is stopping b
            holder[0].shutdown()
            callback_returned.set()

    m = env.manager(on_event=on_event)
    holder.append(m)
    m.create("a", env.plugin_dir("a"))
    b = m.create("b", env.plugin_dir("b"))
    m.enable("a")
    m.enable("b")
    runtime.gated_id = b.id
    runtime.crash("a", exit_code=1, wait=False)  # its exit callback waits for the shutdown below
    assert in_callback.wait(10)
    first = threading.Thread(target=m.shutdown)
    first.start()
    assert callback_returned.wait(10)
    runtime.gate.set()
    first.join(10)
    assert not first.is_alive()
    assert runtime.running() == []


def test_shutdown_from_an_exit_event_alone_completes(
    env: Env,
) -> None:
    """A shutdown called from the exit callback itself (no other shutdown) completes."""
    runtime = _runtime(env)
    done = threading.Event()
    holder: list[Manager] = []

    def on_event(event: PluginEvent) -> None:
        if event.action == "exit":
            holder[0].shutdown()
            done.set()

    m = env.manager(on_event=on_event)
    holder.append(m)
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    runtime.crash("a", exit_code=1)
    assert done.wait(10)
    again = Manager(env.root, runtime=FakeRuntime(), run_root=env.run_root, legacy=None)
    assert [p.name for p in again.list()] == ["a:latest"]
    again.shutdown()
