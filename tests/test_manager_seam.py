"""The optional runtime extensions the Manager uses: SupportsPrepare and SupportsCleanup."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from _manager_helpers import Env

from pluginkit import RuntimeStartError
from pluginkit.runtime import Runtime, RuntimeSpec, SupportsCleanup, SupportsPrepare
from pluginkit.testing import FakeRuntime


class PreparingRuntime(FakeRuntime):
    """A FakeRuntime that also prepares and cleans up, recording what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[str, tuple[str, ...], bool]] = []
        self.cleanups: list[tuple[set[str], Path]] = []
        self.prepare_error: Exception | None = None
        self.cleanup_error: Exception | None = None
        self._record_lock = threading.Lock()

    def prepare(self, spec: RuntimeSpec) -> None:
        with self._record_lock:
            self.prepared.append((spec.name, spec.env, self.is_running(spec.id)))
        if self.prepare_error is not None:
            raise self.prepare_error

    def cleanup(self, keep_ids: Collection[str], *, root: Path | str) -> list[str]:
        with self._record_lock:
            self.cleanups.append((set(keep_ids), Path(root)))
        if self.cleanup_error is not None:
            raise self.cleanup_error
        return []


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp, runtime=PreparingRuntime())
    yield e
    e.close()


def test_the_extensions_are_runtime_checkable_protocols() -> None:
    """isinstance tells a runtime with prepare/cleanup from one without."""
    assert isinstance(PreparingRuntime(), SupportsPrepare)
    assert isinstance(PreparingRuntime(), SupportsCleanup)
    assert isinstance(PreparingRuntime(), Runtime)
    assert not isinstance(FakeRuntime(), SupportsPrepare)
    assert not isinstance(FakeRuntime(), SupportsCleanup)


def test_cleanup_runs_once_at_start_with_every_plugin_dir_of_the_root(env: Env) -> None:
    """Manager start calls cleanup once, with the ids of all plugin dirs (unreadable ones too)."""
    first = env.manager()
    a = first.create("a", env.plugin_dir("a"))
    b = first.create("b", env.plugin_dir("b"))
    first.shutdown()
    (env.root / "plugins" / str(b.id) / "plugin.json").write_text("{not json")
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    runtime.cleanups.clear()
    second = env.manager()
    assert runtime.cleanups == [({str(a.id), str(b.id)}, env.root)]
    assert [p.name for p in second.list()] == ["a:latest"]


def test_a_failing_cleanup_is_logged_not_fatal(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """An error of cleanup is logged as a warning; the manager starts anyway."""
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    runtime.cleanup_error = ConnectionError("engine gone")
    with caplog.at_level(logging.WARNING, logger="pluginkit.manager"):
        m = env.manager()
    assert m.list() == []
    assert [r.getMessage() for r in caplog.records if r.name == "pluginkit.manager"] == [
        "runtime clean-up of removed plugins failed: engine gone"
    ]


def test_create_install_and_set_prepare_the_disabled_plugin(env: Env) -> None:
    """prepare() follows create, install and set, with the spec as it then is."""
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    m = env.manager()
    m.create("a", env.plugin_dir("a", Env=[{"Name": "X", "Settable": ["value"], "Value": "1"}]))
    m.install(env.plugin_dir("b"), name="b")
    m.set("a", ["X=2"])
    assert runtime.prepared == [
        ("a:latest", ("X=1",), False),
        ("b:latest", (), False),
        ("a:latest", ("X=2",), False),
    ]
    assert env.actions() == ["create", "install", "set"]


def test_a_failing_prepare_is_logged_and_enable_reports_the_start_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A prepare error leaves the plugin created; the enable then fails with the start's error."""
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    runtime.prepare_error = RuntimeStartError("image cannot be built")
    runtime.fail_start("a", RuntimeStartError("image cannot be built"))
    m = env.manager()
    with caplog.at_level(logging.WARNING, logger="pluginkit.manager"):
        m.create("a", env.plugin_dir("a"))
    assert [r.getMessage() for r in caplog.records if r.name == "pluginkit.manager"] == [
        "cannot prepare plugin a:latest yet (enabling it will retry): image cannot be built"
    ]
    assert [p.name for p in m.list()] == ["a:latest"]
    with pytest.raises(RuntimeStartError) as raised:
        m.enable("a")
    assert str(raised.value) == "image cannot be built"
    assert m.get("a").enabled is False


def test_a_plugin_without_mount_source_is_not_prepared_but_created(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec that cannot be built yet (mount without source) is only logged at create."""
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    mount = {"Name": "data", "Settable": ["source"], "Destination": "/data", "Type": "bind"}
    m = env.manager()
    with caplog.at_level(logging.WARNING, logger="pluginkit.manager"):
        m.create("a", env.plugin_dir("a", Mounts=[mount]))
    assert runtime.prepared == []
    assert [r.getMessage() for r in caplog.records if r.name == "pluginkit.manager"] == [
        "cannot prepare plugin a:latest yet (enabling it will retry): "
        "mount source is not specified (plugin a:latest, mount 'data')"
    ]


def test_an_enabled_plugin_is_never_prepared(env: Env) -> None:
    """Preparing runs only for disabled plugins: a running one's container is never replaced."""
    runtime = env.runtime
    assert isinstance(runtime, PreparingRuntime)
    m = env.manager()
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.disable("a")
    m.enable("a")
    assert [(name, running) for name, _, running in runtime.prepared] == [("a:latest", False)]
