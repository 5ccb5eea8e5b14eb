"""Manager benchmark: lookups, start-up with many plugins, enable latency.

Run alone with ``python3 benchmarks/bench_manager.py``. Each figure is
measured together with a baseline in the same run and printed as a ratio
(pluginkit / baseline):

- ``lookup_with_capability`` of an enabled plugin vs a plain dict lookup with
  the same capability check (target: <= 5 us median);
- ``find_with_capability`` over 100 enabled plugins vs a list comprehension
  over the same plugins;
- ``Manager(...)`` start on a root with 1000 installed (disabled) plugins vs
  ``json.load`` of the same 1000 records;
- ``enable`` of a real plugin process on ``ProcessRuntime`` vs Docker's fixed
  first sleep of 0.5 s before it dials the socket, and vs the floor: the same
  process spawned by hand and its socket polled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pluginkit import Manager  # noqa: E402
from pluginkit.runtime.process import ProcessRuntime  # noqa: E402
from pluginkit.testing import FakeRuntime  # noqa: E402

DOCKER_FIRST_SLEEP = 0.5

CONFIG = {
    "Description": "bench plugin",
    "Documentation": "",
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/bin/plugin"],
    "WorkDir": "",
    "Network": {"Type": ""},
    "Linux": {"Capabilities": [], "AllowAllDevices": False, "Devices": []},
    "PropagatedMount": "",
    "IpcHost": False,
    "PidHost": False,
    "Mounts": [],
    "Env": [],
    "Args": {"Name": "", "Description": "", "Settable": [], "Value": []},
}

PLUGIN = """\
#!{python}
import os, signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], os.environ["PLUGINKIT_SOCKET"])
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
while True:
    conn, _ = server.accept()
    conn.close()
"""


def plugin_dir(base: Path) -> Path:
    ctx = base / "ctx"
    script = ctx / "rootfs" / "bin" / "plugin"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    (ctx / "config.json").write_text(json.dumps(CONFIG))
    return ctx


def per_call(fn: Callable[[], object], *, number: int, repeat: int) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def report(label: str, ours: float, base: float, unit: str = "us") -> None:
    scale = 1e6 if unit == "us" else 1e3
    print(
        f"{label:<48} pluginkit {ours * scale:10.2f} {unit}   baseline {base * scale:10.2f} {unit}"
        f"   ratio {ours / base:8.2f}"
    )


def bench_lookups(tmp: Path) -> None:
    fake = FakeRuntime()
    try:
        with Manager(tmp / "root", runtime=fake, run_root=tmp / "run", legacy=None) as m:
            ctx = plugin_dir(tmp)
            for i in range(100):
                m.create(f"p{i}", ctx)
                m.enable(f"p{i}")
            m.lookup_with_capability("p50", "VolumeDriver")

            ours = per_call(
                lambda: m.lookup_with_capability("p50", "VolumeDriver"), number=20000, repeat=25
            )
            table = {p.name.removesuffix(":latest"): p for p in m.list()}

            def plain() -> object:
                p = table.get("p50")
                if p is None or "VolumeDriver".lower() not in p.capabilities:
                    raise LookupError("p50")
                return p

            base = per_call(plain, number=20000, repeat=25)
            report("lookup_with_capability (median per call)", ours, base)
            print(f"    target <= 5 us: {'met' if ours <= 5e-6 else 'NOT met'}")

            plugins = m.list()
            ours = per_call(lambda: m.find_with_capability("VolumeDriver"), number=2000, repeat=25)
            base = per_call(
                lambda: [p for p in plugins if p.enabled and "volumedriver" in p.capabilities],
                number=2000,
                repeat=25,
            )
            report("find_with_capability, 100 plugins", ours, base)
    finally:
        fake.shutdown()


def clone_plugins(root: Path, template_id: str, count: int, *, enabled: bool = False) -> None:
    """Make plugins p1 .. p<count-1> in ``root`` as copies of the plugin ``template_id``.

    Cloning is much faster than ``count`` creates (each fsyncs).
    """
    src = root / "plugins" / template_id
    record = json.loads((src / "plugin.json").read_text())
    if enabled:
        record["Enabled"] = True
        (src / "plugin.json").write_text(json.dumps(record))
    for i in range(1, count):
        new_id = secrets.token_hex(32)
        dst = root / "plugins" / new_id
        shutil.copytree(src, dst, symlinks=True)
        record.update(Id=new_id, Name=f"p{i}:latest", PluginReference=f"p{i}:latest")
        (dst / "plugin.json").write_text(json.dumps(record))


def bench_start(tmp: Path, count: int = 1000) -> None:
    root = tmp / "root1000"
    fake = FakeRuntime()
    with Manager(root, runtime=fake, run_root=tmp / "run1000", legacy=None) as m:
        template = m.create("p0", plugin_dir(tmp))
    clone_plugins(root, str(template.id), count)

    def start() -> None:
        Manager(root, runtime=fake, run_root=tmp / "run1000", legacy=None).shutdown()

    def baseline() -> None:
        for entry in os.scandir(root / "plugins"):
            with open(os.path.join(entry.path, "plugin.json"), "rb") as f:
                json.load(f)

    start()
    ours = per_call(start, number=1, repeat=7)
    base = per_call(baseline, number=1, repeat=7)
    report(f"Manager start, {count} installed plugins", ours, base, unit="ms")
    fake.shutdown()


def wait_socket(path: str, deadline: float) -> None:
    delay = 0.001
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        finally:
            s.close()
    raise TimeoutError(path)


def bench_enable(tmp: Path, rounds: int = 9) -> None:
    ctx = plugin_dir(tmp)
    runtime = ProcessRuntime()
    samples = []
    with Manager(tmp / "rootp", runtime=runtime, run_root=tmp / "runp", legacy=None) as m:
        m.create("proc", ctx)
        for _ in range(rounds):
            start = time.perf_counter()
            m.enable("proc", timeout=30)
            samples.append(time.perf_counter() - start)
            m.disable("proc")
    ours = statistics.median(samples)
    report("enable on ProcessRuntime vs Docker's 0.5 s sleep", ours, DOCKER_FIRST_SLEEP, unit="ms")

    floor = []
    sock_dir = tmp / "floor"
    sock_dir.mkdir()
    env = {**os.environ, "PLUGINKIT_SOCKET_DIR": str(sock_dir), "PLUGINKIT_SOCKET": "p.sock"}
    for _ in range(rounds):
        start = time.perf_counter()
        proc = subprocess.Popen([str(ctx / "rootfs" / "bin" / "plugin")], env=env)
        wait_socket(str(sock_dir / "p.sock"), time.monotonic() + 30)
        floor.append(time.perf_counter() - start)
        proc.terminate()
        proc.wait()
        (sock_dir / "p.sock").unlink()
    report("enable on ProcessRuntime vs bare spawn + poll", ours, statistics.median(floor), "ms")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pkb-", dir="/tmp"))
    try:
        bench_lookups(tmp / "a")
        bench_start(tmp / "b")
        bench_enable(tmp / "c")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
