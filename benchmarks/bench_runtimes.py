"""Runtimes: how long a plugin takes to come up and to go, against bare baselines.

Run alone: ``python3 benchmarks/bench_runtimes.py``. Prints medians and the
ratio pluginkit / baseline (below 1.0: pluginkit is faster).

- process start: ProcessRuntime.start() until the plugin's socket accepts,
  against subprocess.Popen of the same program and the same socket wait.
- process stop: ProcessRuntime.stop() until it returns (SIGTERM, wait for the
  exit, make sure nothing the plugin started is left), against
  Popen.terminate() + wait() of the same program; "stop+exit" also waits for
  the on_exit callback (delivered from the runtime's dispatcher thread).

Where ProcessRuntime contains plugins in cgroups, the kernel's own work for
a process in a cgroup of its own (joining it at start; at exit, the cgroup
turning empty before the exit is signalled) is in pluginkit's figures and
not in a bare Popen's. So the process rows are measured twice: against the
bare Popen (the issue's baseline), and against the same Popen moved into a
cgroup of its own (written to ``cgroup.procs`` before exec, as ProcessRuntime
does), which leaves pluginkit's own overhead. A third run shows the
process-group containment used where no cgroup v2 is writable.
- fake start: FakeRuntime.start() until listening, against starting a
  PluginServer directly.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pluginkit.runtime import PluginExit, RuntimeSpec
from pluginkit.runtime._cgroup import CGroup, cgroup_base
from pluginkit.runtime.process import ProcessRuntime, _join_cgroup
from pluginkit.sdk import PluginServer
from pluginkit.testing import FakeRuntime

ROUNDS = 40

PLUGIN = f"""#!{sys.executable} -S
import os, socket
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], os.environ["PLUGINKIT_SOCKET"])
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen()
while True:
    s.accept()[0].close()
"""


def wait_listening(path: Path) -> None:
    while True:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return
            except OSError:
                time.sleep(0.0005)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def report(what: str, ours: list[float], base: list[float]) -> None:
    """Print the medians and the median of the ratios of the interleaved A/B pairs."""
    a, b = median_ms(ours), median_ms(base)
    ratio = statistics.median(x / y for x, y in zip(ours, base, strict=True))
    print(f"{what:<18} pluginkit {a:8.2f} ms   baseline {b:8.2f} ms   ratio {ratio:5.2f}")


def make_spec(base: Path) -> RuntimeSpec:
    script = base / "rootfs" / "plugin"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(PLUGIN)
    script.chmod(0o755)
    return RuntimeSpec(
        id="b" * 64,
        name="bench:latest",
        rootfs=base / "rootfs",
        entrypoint=("/plugin",),
        socket_dir=base / "run",
        socket="p.sock",
        state_dir=base / "state",
    )


def bench_process(
    base: Path, *, baseline_cgroup: bool = False, process_groups: bool = False
) -> None:
    spec = make_spec(base)
    runtime = ProcessRuntime()
    if process_groups:
        runtime._cgroup_base = None  # as where no cgroup v2 is writable
    cgroup = None
    if baseline_cgroup:
        parent = cgroup_base()
        if parent is None:
            print("(no writable cgroup v2: no cgroup baseline)")
            runtime.close()
            return
        cgroup = CGroup(parent / f"pluginkit-bench-{os.getpid()}")
        cgroup.create()
    print(
        f"ProcessRuntime containment: {runtime.containment}; baseline: Popen"
        + (" in a cgroup of its own" if cgroup is not None else "")
    )
    exited = threading.Event()

    def on_exit(exit_: PluginExit) -> None:
        exited.set()

    starts, stops, exits = [], [], []
    base_starts, base_stops = [], []
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PLUGINKIT_SOCKET_DIR": str(spec.socket_dir),
        "PLUGINKIT_SOCKET": spec.socket,
    }
    try:
        for _ in range(ROUNDS):
            exited.clear()
            t0 = time.perf_counter()
            runtime.start(spec, on_exit)
            wait_listening(spec.socket_path)
            t1 = time.perf_counter()
            runtime.stop(spec.id)
            t2 = time.perf_counter()
            exited.wait()
            t3 = time.perf_counter()
            starts.append(t1 - t0)
            stops.append(t2 - t1)
            exits.append(t3 - t1)

            spec.socket_path.unlink(missing_ok=True)
            procs_fd = cgroup.open_procs() if cgroup is not None else None
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [str(spec.rootfs / "plugin")],
                env=env,
                cwd=spec.rootfs,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=None if procs_fd is None else _join_cgroup(procs_fd),
            )
            if procs_fd is not None:
                os.close(procs_fd)
            wait_listening(spec.socket_path)
            t1 = time.perf_counter()
            proc.terminate()
            proc.wait()
            t2 = time.perf_counter()
            spec.socket_path.unlink(missing_ok=True)
            base_starts.append(t1 - t0)
            base_stops.append(t2 - t1)
    finally:
        runtime.close()
        if cgroup is not None:
            cgroup.remove()
    report("process start", starts, base_starts)
    report("process stop", stops, base_stops)
    report("process stop+exit", exits, base_stops)


def bench_process_cgroup_baseline(base: Path) -> None:
    bench_process(base, baseline_cgroup=True)


def bench_process_groups(base: Path) -> None:
    bench_process(base, process_groups=True)


def bench_fake(base: Path) -> None:
    spec = make_spec(base)
    ours, baseline = [], []
    with FakeRuntime() as fake:
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            fake.start(spec, lambda exit_: None)
            fake.wait_listening(spec.name)
            ours.append(time.perf_counter() - t0)
            fake.stop(spec.id)

            t0 = time.perf_counter()
            server = PluginServer(implements=["VolumeDriver"])
            server.start(str(spec.socket_path))
            baseline.append(time.perf_counter() - t0)
            server.stop()
    report("fake start", ours, baseline)


def main() -> None:
    print(f"runtimes: median of {ROUNDS} rounds")
    benches: list[Callable[[Path], None]] = [
        bench_process,
        bench_process_cgroup_baseline,
        bench_process_groups,
        bench_fake,
    ]
    for bench in benches:
        base = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
        try:
            bench(base)
        finally:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
