"""ExitDispatcher: the one thread per runtime that calls on_exit, and every runtime using it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from _manager_helpers import wait_for

from pluginkit.runtime import PluginExit, RuntimeSpec
from pluginkit.runtime._dispatch import ExitDispatcher
from pluginkit.runtime.process import ProcessRuntime
from pluginkit.testing import FakeRuntime

_log = logging.getLogger("tests.dispatch")


class Recorder:
    """An on_exit callback that records each exit with the name of the thread it ran in."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, str]] = []
        self._lock = threading.Lock()

    def __call__(self, exit_: PluginExit) -> None:
        with self._lock:
            self.seen.append((exit_.id, exit_.exit_code, threading.current_thread().name))


def test_callbacks_run_in_order_on_the_dispatcher_thread() -> None:
    """Posted exits are delivered in order, from the dispatcher's own thread."""
    dispatcher = ExitDispatcher("pk-test-exits", _log)
    seen = Recorder()
    for code in range(5):
        dispatcher.post(seen, PluginExit("p", code))
    dispatcher.close()
    assert seen.seen == [("p", code, "pk-test-exits") for code in range(5)]


def test_a_failing_callback_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception of one callback is logged; later exits are still delivered."""

    def boom(exit_: PluginExit) -> None:
        raise ValueError("boom")

    dispatcher = ExitDispatcher("pk-test-exits", _log)
    seen = Recorder()
    with caplog.at_level(logging.ERROR, logger="tests.dispatch"):
        dispatcher.post(boom, PluginExit("a", 1))
        dispatcher.post(seen, PluginExit("b", 2))
        dispatcher.close()
    assert seen.seen == [("b", 2, "pk-test-exits")]
    assert [r.getMessage() for r in caplog.records] == ["on_exit callback for plugin a failed"]


def test_close_from_a_callback_does_not_wait_for_itself() -> None:
    """A callback that closes its dispatcher returns; the thread ends after it."""
    dispatcher = ExitDispatcher("pk-test-exits", _log)
    done = threading.Event()

    def close_from_inside(exit_: PluginExit) -> None:
        dispatcher.close()
        done.set()

    dispatcher.post(close_from_inside, PluginExit("p", 0))
    assert done.wait(10)


def test_a_post_after_close_starts_a_new_thread() -> None:
    """The dispatcher stays usable after close (FakeRuntime is handed to new managers)."""
    dispatcher = ExitDispatcher("pk-test-exits", _log)
    seen = Recorder()
    dispatcher.post(seen, PluginExit("a", 0))
    dispatcher.close()
    dispatcher.post(seen, PluginExit("b", 0))
    dispatcher.close()
    assert [s[0] for s in seen.seen] == ["a", "b"]


def _spec(tmp: Path, name: str = "pk:latest") -> RuntimeSpec:
    return RuntimeSpec(
        id="c" * 64,
        name=name,
        rootfs=tmp / "rootfs",
        entrypoint=("sleep", "60"),
        socket_dir=tmp / "run",
        socket="p.sock",
        state_dir=tmp / "state",
    )


def test_process_runtime_reports_each_exit_once_from_its_dispatcher(short_tmp: Path) -> None:
    """ProcessRuntime: one report per exit, from pluginkit-process-exits."""
    runtime = ProcessRuntime(grace=5)
    seen = Recorder()
    spec = _spec(short_tmp)
    try:
        runtime.start(spec, seen)
        runtime.stop(spec.id)
        wait_for(lambda: len(seen.seen) == 1)
        runtime.start(spec, seen)
        runtime.stop(spec.id)
        wait_for(lambda: len(seen.seen) == 2)
    finally:
        runtime.close()
    assert seen.seen == [(spec.id, -15, "pluginkit-process-exits")] * 2


def test_fake_runtime_reports_each_exit_once_from_its_dispatcher(short_tmp: Path) -> None:
    """FakeRuntime: one report per exit (crash or stop), from pluginkit-fake-exits."""
    with FakeRuntime() as fake:
        seen = Recorder()
        spec = _spec(short_tmp)
        fake.start(spec, seen)
        fake.crash("pk", exit_code=3)
        wait_for(lambda: len(seen.seen) == 1)
        fake.start(spec, seen)
        fake.stop(spec.id)
        wait_for(lambda: len(seen.seen) == 2)
        fake.close()
    assert seen.seen == [
        (spec.id, 3, "pluginkit-fake-exits"),
        (spec.id, 0, "pluginkit-fake-exits"),
    ]
