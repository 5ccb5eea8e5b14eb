"""AsyncManager: the manager's slow operations as coroutines that never block the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import write_plugin_dir

from pluginkit import (
    AsyncManager,
    ErrNotFound,
    LegacyRegistry,
    PluginEnabledError,
    PluginEvent,
    afind_with_capability,
    alookup_with_capability,
)
from pluginkit.clients import AsyncVolumeDriverClient
from pluginkit.sdk import PluginServer, volume
from pluginkit.testing import FakeRuntime
from tests._clients_helpers import ThreadAdapter

START_DELAY = 0.5


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    fake = FakeRuntime(start_delay=START_DELAY)
    yield fake
    fake.shutdown()


def _options(short_tmp: Path, runtime: FakeRuntime, **more: Any) -> dict[str, Any]:
    return {"runtime": runtime, "run_root": short_tmp / "run", "legacy": None, **more}


async def _ticks_during(operation: Awaitable[Any]) -> tuple[int, float]:
    """Run ``operation`` while a 10 ms heartbeat ticks; return (ticks, max lag in s)."""
    ticks = 0
    lag = 0.0
    done = False

    async def heartbeat() -> None:
        nonlocal ticks, lag
        while not done:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lag = max(lag, time.monotonic() - before - 0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)  # let the heartbeat start
    try:
        await operation
    finally:
        done = True
        await beat
    return ticks, lag


def test_slow_enable_does_not_block_the_loop(short_tmp: Path, runtime: FakeRuntime) -> None:
    """The loop keeps ticking during a slow enable; a blocking Manager.enable stops it (control)."""
    plugin_dir = write_plugin_dir(short_tmp / "src")

    async def body() -> tuple[tuple[int, float], tuple[int, float]]:
        async with AsyncManager(short_tmp / "root", **_options(short_tmp, runtime)) as manager:
            await manager.create("slow", plugin_dir)
            await manager.create("blocking", plugin_dir)
            async_run = await _ticks_during(manager.enable("slow"))

            async def blocking() -> None:
                manager.manager.enable("blocking")  # the blocking Manager, in the loop

            blocked_run = await _ticks_during(blocking())
            assert [p.name for p in manager.list(enabled=True)] == [
                "blocking:latest",
                "slow:latest",
            ]
            return async_run, blocked_run

    (ticks, lag), (blocked_ticks, blocked_lag) = asyncio.run(body())
    # A START_DELAY of 0.5 s is ~50 heartbeats; a blocked loop gets at most one.
    assert ticks >= 10, f"{ticks} ticks, max lag {lag:.3f} s"
    assert blocked_ticks <= 1, f"{blocked_ticks} ticks, max lag {blocked_lag:.3f} s"


def test_lifecycle_through_coroutines(short_tmp: Path, runtime: FakeRuntime) -> None:
    """create/set/enable/disable/remove are coroutines; lookups are plain; events as Manager's."""
    events: list[PluginEvent] = []
    plugin_dir = write_plugin_dir(
        short_tmp / "src",
        Env=[{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}],
    )
    runtime.set_handlers("vol", {"VolumeDriver.List": lambda _: {"Volumes": [{"Name": "a"}]}})

    async def body() -> list[Any]:
        manager = AsyncManager(
            short_tmp / "root", **_options(short_tmp, runtime, on_event=events.append)
        )
        async with manager:
            plugin = await manager.create("vol", plugin_dir)
            await manager.set("vol", ["DEBUG=1"])
            await manager.enable("vol", timeout=10)
            found = manager.lookup_with_capability("vol", "VolumeDriver")
            with manager.use("vol", "volumedriver") as used:
                refcount = used.refcount
            volumes = await AsyncVolumeDriverClient(ThreadAdapter(found.client)).list()
            settings = manager.inspect("vol")["Settings"]["Env"]
            listed = [p.name for p in manager.find_with_capability("volumedriver")]
            with pytest.raises(PluginEnabledError) as twice:
                await manager.enable("vol")
            await manager.disable("vol")
            await manager.remove("vol")
            with pytest.raises(ErrNotFound):
                manager.get("vol")
            return [plugin is found, refcount, volumes, settings, listed, str(twice.value)]

    assert asyncio.run(body()) == [
        True,
        1,
        [volume.Volume("a")],
        ["DEBUG=1"],
        ["vol:latest"],
        "plugin already enabled: plugin vol:latest is enabled",
    ]
    assert [e.action for e in events] == ["create", "set", "enable", "disable", "remove"]


def test_enables_run_concurrently(short_tmp: Path, runtime: FakeRuntime) -> None:
    """Several enables awaited together all start (the pool runs them side by side)."""
    plugin_dir = write_plugin_dir(short_tmp / "src")

    async def body() -> list[str]:
        async with AsyncManager(short_tmp / "root", **_options(short_tmp, runtime)) as manager:
            for i in range(4):
                await manager.create(f"p{i}", plugin_dir)
            await asyncio.gather(*(manager.enable(f"p{i}") for i in range(4)))
            return [p.name for p in manager.list(enabled=True)]

    assert asyncio.run(body()) == [f"p{i}:latest" for i in range(4)]


def test_open_and_from_manager(short_tmp: Path, runtime: FakeRuntime) -> None:
    """open() builds the Manager in a thread; from_manager wraps one; both see the same state."""
    plugin_dir = write_plugin_dir(short_tmp / "src")

    async def body() -> list[Any]:
        manager = await AsyncManager.open(short_tmp / "root", **_options(short_tmp, runtime))
        await manager.create("p", plugin_dir)
        wrapped = AsyncManager.from_manager(manager.manager)
        names = [p.name for p in wrapped.list()]
        await wrapped.shutdown()
        return [names, manager.root == wrapped.root, manager.manager is wrapped.manager]

    assert asyncio.run(body()) == [["p:latest"], True, True]
    with pytest.raises(TypeError, match="from_manager takes a Manager, not str"):
        AsyncManager.from_manager("root")  # type: ignore[arg-type]


def test_errors_are_the_managers(short_tmp: Path, runtime: FakeRuntime) -> None:
    """A failing operation raises the Manager's exception, unchanged."""

    async def body() -> None:
        async with AsyncManager(short_tmp / "root", **_options(short_tmp, runtime)) as manager:
            with pytest.raises(ErrNotFound, match='plugin "ghost" not found'):
                await manager.enable("ghost")
            with pytest.raises(ErrNotFound):
                await manager.remove("ghost")

    asyncio.run(body())


@pytest.mark.registry
def test_push_install_upgrade_save_load(short_tmp: Path, runtime: FakeRuntime) -> None:
    """The distribution operations are coroutines too, against a real registry."""
    import json

    from tests._registry import run_registry

    v1 = write_plugin_dir(short_tmp / "v1")
    v2 = write_plugin_dir(short_tmp / "v2")
    config = json.loads((v2 / "config.json").read_text())
    config["Description"] = "version 2"
    (v2 / "config.json").write_text(json.dumps(config))
    bundle = short_tmp / "p.tar"

    async def body(host: str) -> list[Any]:
        options = _options(short_tmp, runtime)
        async with (
            AsyncManager(short_tmp / "publisher", **options) as publisher,
            AsyncManager(short_tmp / "root", **options) as manager,
        ):
            await publisher.create(f"{host}/team/p:1", v1)
            await publisher.create(f"{host}/team/p:2", v2)
            digests = [await publisher.push(f"{host}/team/p:{tag}") for tag in (1, 2)]
            plugin = await manager.install(f"{host}/team/p:1", grant=True)
            upgraded = await manager.upgrade(plugin.name, f"{host}/team/p:2", grant=True)
            saved = await manager.save(plugin.name, bundle)
            await manager.remove(plugin.name)
            loaded = await manager.load(bundle, name="again", grant=True)
            return [
                [d.startswith("sha256:") for d in digests],
                upgraded.id == plugin.id,
                upgraded.config.description,
                saved.startswith("sha256:"),
                loaded.name,
                loaded.config.description,
            ]

    with run_registry(short_tmp / "registry") as host:
        assert asyncio.run(body(host)) == [
            [True, True],
            True,
            "version 2",
            True,
            "again:latest",
            "version 2",
        ]


# -- awaitable lookups -------------------------------------------------------------


def _legacy_plugin(socket_dir: Path, name: str) -> PluginServer:
    server = PluginServer(["VolumeDriver"])
    server.start(socket_dir / f"{name}.sock")
    return server


def test_awaitable_lookups(short_tmp: Path, runtime: FakeRuntime) -> None:
    """aget_all/aget, afind_with_capability and alookup_with_capability answer as the plain ones."""
    socket_dir = short_tmp / "sockets"
    socket_dir.mkdir()
    servers = [_legacy_plugin(socket_dir, n) for n in ("lega", "legb")]
    registry = LegacyRegistry([str(socket_dir)], [])
    plugin_dir = write_plugin_dir(short_tmp / "src")
    runtime.set_start_delay("managed", 0)

    async def body() -> list[Any]:
        options = _options(short_tmp, runtime, legacy=registry)
        async with AsyncManager(short_tmp / "root", **options) as manager:
            await manager.create("managed", plugin_dir)
            await manager.enable("managed")
            everything = await afind_with_capability("volumedriver", manager=manager)
            one = await alookup_with_capability("lega", "volumedriver", manager=manager)
            with pytest.raises(ErrNotFound):
                await alookup_with_capability("nope", "volumedriver", manager=manager)
            return [
                [p.name for p in everything],
                one is await registry.aget("lega", "VolumeDriver"),
                [p.name for p in await registry.aget_all("volumedriver")],
                await registry.aget_all("networkdriver"),
            ]

    try:
        assert asyncio.run(body()) == [
            ["managed:latest", "lega", "legb"],
            True,
            ["lega", "legb"],
            [],
        ]
    finally:
        registry.close()
        for server in servers:
            server.stop()


def test_async_lookup_without_manager_uses_the_default(short_tmp: Path) -> None:
    """With no manager, afind_with_capability asks the default manager when one is set."""
    import pluginkit

    class Getter:
        def find_with_capability(self, capability: str) -> list[Any]:
            return [capability]

        def lookup_with_capability(self, name: str, capability: str) -> Any:
            return (name, capability)

    pluginkit.set_default_manager(Getter())
    try:
        found: Callable[[], Awaitable[Any]] = lambda: afind_with_capability("x")  # noqa: E731
        looked: Callable[[], Awaitable[Any]] = lambda: alookup_with_capability("n", "c")  # noqa: E731
        assert asyncio.run(found()) == ["x"]
        assert asyncio.run(looked()) == ("n", "c")
    finally:
        pluginkit.set_default_manager(None)


def test_install_and_privileges(short_tmp: Path, runtime: FakeRuntime) -> None:
    """install and privileges are coroutines too; a grant function runs in a manager thread."""
    import threading

    plugin_dir = write_plugin_dir(short_tmp / "src", Network={"Type": "host"})
    asked_in: list[str] = []

    def grant(privileges: list[Any]) -> bool:
        asked_in.append(threading.current_thread().name)
        return True

    async def body() -> list[Any]:
        async with AsyncManager(short_tmp / "root", **_options(short_tmp, runtime)) as manager:
            privileges = await manager.privileges(plugin_dir)
            plugin = await manager.install(plugin_dir, name="net-plugin", grant=grant)
            return [[(p.name, p.value) for p in privileges], plugin.name, plugin.enabled]

    assert asyncio.run(body()) == [[("network", ("host",))], "net-plugin:latest", False]
    assert len(asked_in) == 1
    assert asked_in[0].startswith("pluginkit-manager-root")


def test_cancelling_a_queued_operation_drops_it(short_tmp: Path, runtime: FakeRuntime) -> None:
    """With the one worker busy, a cancelled queued enable never runs."""

    class OneWorker(AsyncManager):
        workers = 1

    plugin_dir = write_plugin_dir(short_tmp / "src")

    async def body() -> list[str]:
        async with OneWorker(short_tmp / "root", **_options(short_tmp, runtime)) as manager:
            await manager.create("first", plugin_dir)
            await manager.create("second", plugin_dir)
            first = asyncio.create_task(manager.enable("first"))
            second = asyncio.create_task(manager.enable("second"))
            await asyncio.sleep(0)  # both submitted: "first" runs, "second" waits in the queue
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            await first
            # One worker, first in first out: this runs after all that was queued.
            await manager.create("probe", plugin_dir)
            return [p.name for p in manager.list(enabled=True)]

    assert asyncio.run(body()) == ["first:latest"]
