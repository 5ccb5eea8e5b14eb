"""A managed plugin's Client is closed by disable, remove and shutdown: no leaked connections."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _manager_helpers import Env, wait_for

from pluginkit import Manager, PluginConnectionError
from pluginkit.examples.localvolume import plugin_dir as localvolume_dir
from pluginkit.runtime.process import ProcessRuntime
from pluginkit.testing import FakeRuntime

pytestmark = pytest.mark.filterwarnings("error")

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDLERS = {"VolumeDriver.List": lambda request: {"Volumes": []}}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settle() -> int:
    """Collect garbage (an unclosed socket would warn here) and count the open fds."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()
    return _open_fds()


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    fake = FakeRuntime()
    fake.set_handlers("vol", HANDLERS)
    e = Env(short_tmp, runtime=fake)
    yield e
    e.close()


def _cycle(m: Manager) -> None:
    m.enable("vol")
    assert m.get("vol").client.call("VolumeDriver.List") == {"Volumes": []}
    m.disable("vol")


def test_enable_call_disable_cycles_keep_the_fd_count_flat(env: Env) -> None:
    """20 enable/call/disable cycles through plugin.client leave no fd and no ResourceWarning."""
    m = env.manager()
    m.create("vol", env.plugin_dir("vol"))
    _cycle(m)  # first use: the server's thread pool, the client module...
    before = _settle()
    for _ in range(20):
        _cycle(m)
    assert _settle() == before


def test_disable_closes_the_client_handed_out(env: Env) -> None:
    """A client taken from plugin.client is closed by disable; the next enable gives a new one."""
    m = env.manager()
    m.create("vol", env.plugin_dir("vol"))
    m.enable("vol")
    client = m.get("vol").client
    assert client.call("VolumeDriver.List") == {"Volumes": []}
    m.disable("vol")
    with pytest.raises(PluginConnectionError) as raised:
        client.call("VolumeDriver.List")
    assert str(raised.value) == (
        f"VolumeDriver.List: cannot call plugin at {client.addr}: client is closed"
    )
    m.enable("vol")
    fresh = m.get("vol").client
    assert fresh is not client
    assert fresh.call("VolumeDriver.List") == {"Volumes": []}


def test_remove_and_shutdown_close_the_clients(env: Env) -> None:
    """Force-remove of an enabled plugin and shutdown close the clients in use."""
    fake = env.runtime
    assert isinstance(fake, FakeRuntime)
    fake.set_handlers("other", HANDLERS)
    m = env.manager()
    m.create("vol", env.plugin_dir("vol"))
    m.create("other", env.plugin_dir("other"))
    m.enable("vol")
    m.enable("other")
    removed = m.get("vol").client
    kept = m.get("other").client
    assert removed.call("VolumeDriver.List") == kept.call("VolumeDriver.List") == {"Volumes": []}
    m.remove("vol", force=True)
    m.shutdown()
    for client in (removed, kept):
        with pytest.raises(PluginConnectionError) as raised:
            client.call("VolumeDriver.List")
        assert str(raised.value) == (
            f"VolumeDriver.List: cannot call plugin at {client.addr}: client is closed"
        )


def test_crash_restart_call_cycles_keep_the_fd_count_flat(env: Env) -> None:
    """Calls across crashes and restarts replace the dead pooled connection: fd count flat."""
    fake = env.runtime
    assert isinstance(fake, FakeRuntime)
    m = env.manager()
    m.restart_policy = type(m.restart_policy)(initial_delay=0.001)
    m.create("vol", env.plugin_dir("vol"))
    m.enable("vol")
    plugin = m.get("vol")
    assert plugin.client.call("VolumeDriver.List") == {"Volumes": []}
    before = _settle()
    for count in range(1, 11):
        fake.crash("vol")
        wait_for(lambda: env.actions().count("restart") == count)  # noqa: B023 - called at once
        fake.wait_listening("vol")
        assert plugin.client.call("VolumeDriver.List") == {"Volumes": []}
    # The pooled connection to a dead run is replaced, not kept beside the new one.
    assert _settle() == before


@pytest.mark.slow
def test_process_plugin_cycles_keep_the_fd_count_flat(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real plugin processes (the localvolume example): enable/call/disable leaves no fd behind."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    env = Env(short_tmp, runtime=ProcessRuntime(grace=5))
    try:
        m = env.manager()
        m.create("vol", localvolume_dir())
        m.set("vol", [f"LOCALVOLUME_ROOT={short_tmp / 'volumes'}"])
        _cycle(m)
        before = _settle()
        for _ in range(3):
            _cycle(m)
        assert _settle() == before
    finally:
        env.close()
