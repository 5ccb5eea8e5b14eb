"""gc_paused: the collector is off inside the block and back as it was after."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import Manager
from pluginkit._nogc import gc_paused
from pluginkit.testing import FakeRuntime
from tests._manager_helpers import write_plugin_dir


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_paused_inside_and_enabled_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_enabled_again_after_an_error() -> None:
    with pytest.raises(ValueError, match="boom"), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_a_manager_pauses_the_collector_only_while_it_restores(short_tmp: Path) -> None:
    seen: list[bool] = []

    class Watching(FakeRuntime):
        def start(self, *args: object, **kwargs: object) -> None:
            seen.append(gc.isenabled())
            super().start(*args, **kwargs)  # type: ignore[arg-type]

    ctx = write_plugin_dir(short_tmp / "ctx")
    root, run = short_tmp / "root", short_tmp / "run"
    with Manager(root, runtime=Watching(), run_root=run, legacy=None) as m:
        for name in ("a", "b", "c"):
            m.create(name, ctx)
            m.enable(name)
    assert seen == [True, True, True]  # enable: the collector runs as usual
    with Manager(root, runtime=Watching(), run_root=run, legacy=None) as m:
        assert gc.isenabled()
        assert [p.name for p in m.list() if p.enabled] == ["a:latest", "b:latest", "c:latest"]
    assert seen == [True, True, True, False, False, False]  # restore: paused
