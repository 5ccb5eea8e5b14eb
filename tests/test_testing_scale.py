"""FakeRuntime at fleet scale: 1,000 enabled plugins from one loop, in bounded memory."""

from __future__ import annotations

import gc
import json
import os
import secrets
import shutil
import socket
import threading
from pathlib import Path

import pytest

from pluginkit import Manager
from pluginkit.runtime import RuntimeSpec
from pluginkit.testing import FakeRuntime, write_plugin_dir


def _rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _enabled_root(base: Path, count: int) -> tuple[Path, Path]:
    """A root holding ``count`` enabled plugins (one created, its directory cloned)."""
    root, run_root = base / "root", base / "run"
    with FakeRuntime() as fake, Manager(root, runtime=fake, run_root=run_root, legacy=None) as m:
        template = m.create("p0", write_plugin_dir(base / "ctx", socket="p.sock"))
    src = root / "plugins" / str(template.id)
    record = json.loads((src / "plugin.json").read_text())
    record["Enabled"] = True
    (src / "plugin.json").write_text(json.dumps(record))
    for i in range(1, count):
        new_id = secrets.token_hex(32)
        shutil.copytree(src, root / "plugins" / new_id, symlinks=True)
        record.update(Id=new_id, Name=f"p{i}:latest", PluginReference=f"p{i}:latest")
        (root / "plugins" / new_id / "plugin.json").write_text(json.dumps(record))
    return root, run_root


@pytest.mark.slow
def test_a_thousand_enabled_fake_plugins_in_under_100_mb(short_tmp: Path) -> None:
    """1,000 enabled plugins on one FakeRuntime: every one answers, RSS grows < 100 MB
    and the thread count stays small (it was 392 MB and 5 threads per plugin)."""
    count = 1000
    root, run_root = _enabled_root(short_tmp, count)
    fake = FakeRuntime()
    for i in range(count):
        fake.set_handlers(f"p{i}", {"VolumeDriver.Get": lambda req, i=i: {"Volume": {"Name": i}}})
    threads_before = threading.active_count()
    rss_before = _rss_bytes()
    try:
        with Manager(root, runtime=fake, run_root=run_root, legacy=None) as m:
            running = m.find_with_capability("VolumeDriver")
            assert len(running) == count
            for plugin in running[::50]:
                index = int(plugin.name.removeprefix("p").removesuffix(":latest"))
                reply = plugin.client.call("VolumeDriver.Get", {"Name": "v"})
                assert reply == {"Volume": {"Name": index}}
            assert len(fake.running()) == count
            grown = _rss_bytes() - rss_before
            threads = threading.active_count() - threads_before
            assert grown < 100 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MB"
            assert threads <= 40, f"{threads} more threads"
    finally:
        fake.shutdown()


def test_shutdown_ends_open_connections_and_threads(short_tmp: Path) -> None:
    """shutdown() closes keep-alive connections (the client reads EOF) and ends the loop
    and handler threads; the fake starts again afterwards with new ones."""
    spec = RuntimeSpec(
        id="a" * 64,
        name="acme/vol:latest",
        rootfs=short_tmp,
        entrypoint=("/plugin",),
        socket_dir=short_tmp / "s",
        socket="p.sock",
        state_dir=short_tmp,
    )
    before = {t.name for t in threading.enumerate()}
    fake = FakeRuntime()
    fake.set_handlers("acme/vol", {"VolumeDriver.List": lambda request: {"Volumes": []}})
    fake.start(spec, lambda exit_: None)
    fake.wait_listening("acme/vol")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(str(spec.socket_path))
    client.sendall(b"POST /VolumeDriver.List HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n")
    reply = client.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b'\r\n\r\n{"Volumes": []}')
    fake.shutdown()
    assert client.recv(100) == b""  # closed by the fake, not left open
    client.close()
    gc.collect()
    assert {t.name for t in threading.enumerate()} - before == set()
    fake.start(spec, lambda exit_: None)
    fake.wait_listening("acme/vol")
    fake.shutdown()


@pytest.mark.slow
def test_two_thousand_fake_plugins_under_default_health_checks_stay_healthy(
    short_tmp: Path,
) -> None:
    """2,000 healthy fake plugins under the default HealthCheck, all in this one process
    (the monitor and the plugins share a GIL): none is reported unhealthy or restarted.
    The probes used to outrun the process: 3,000 unhealthy verdicts and 1,000 restarts
    of healthy plugins in 15 s."""
    import time
    from collections import Counter

    from pluginkit import HealthCheck

    count = 2000
    root, run_root = _enabled_root(short_tmp, count)
    events: Counter[str] = Counter()
    with (
        FakeRuntime() as fake,
        Manager(
            root,
            runtime=fake,
            run_root=run_root,
            legacy=None,
            health_check=HealthCheck(),
            on_event=lambda event: events.update([event.action]),
        ) as m,
    ):
        deadline = time.monotonic() + 60
        while events["health_status: healthy"] < count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5)  # five probes of each, at 2,000 probes a second
        assert dict(events) == {"health_status: healthy": count}
        assert {p.health for p in m.list()} == {"healthy"}
        assert fake.started_count("p1") == 1
