"""Client and legacy registry against Docker's Go client, on the same Go server.

Builds (offline, with Debian's Docker sources) a Go net/http plugin server and
a Go program over Docker's ``pkg/plugins``, then measures in one run:

* per-call latency of ``Client.call`` vs Go's ``plugins.Client.Call`` on the
  same unix socket (median of each round, rounds interleaved);
* a cold ``LegacyRegistry.get_all`` vs Go's ``plugins.GetAll`` over 200
  legacy plugin sockets (Go's directories are pointed at a temporary one).

Prints the figures and pluginkit/Go ratios (below 1.0: pluginkit is faster).
Run alone: ``python3 benchmarks/bench_client.py``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _client_helpers import GO_CLIENT, GO_SERVER, GoServer  # noqa: E402
from conftest import build_go_program  # noqa: E402

from pluginkit import Client, LegacyRegistry  # noqa: E402

CALLS = 5000
ROUNDS = 5
PLUGINS = 200
COLD_RUNS = 10
GETALL_ROUNDS = 3
ARGS = {"Name": "volume-1", "Opts": {"size": "1G"}}


def python_call_median(addr: str, n: int) -> float:
    """Median seconds per Client.call over n calls (after a warm-up)."""
    with Client(addr) as client:
        for _ in range(n // 10 + 10):
            client.call("Test.Echo", ARGS)
        times = []
        clock = time.perf_counter
        for _ in range(n):
            start = clock()
            client.call("Test.Echo", ARGS)
            times.append(clock() - start)
    return statistics.median(times)


def python_get_all_median(sockets: Path, specs: Path, runs: int) -> tuple[float, int]:
    """Median seconds of a cold get_all (a new registry each time)."""
    times = []
    found = 0
    for _ in range(runs):
        with LegacyRegistry([sockets], [specs]) as registry:
            start = time.perf_counter()
            plugins = registry.get_all("VolumeDriver")
            times.append(time.perf_counter() - start)
            found = len(plugins)
    return statistics.median(times), found


def go(binary: Path, *args: str) -> list[str]:
    out = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    return out.split()


def main() -> int:
    if shutil.which("go") is None:
        print("skipped: the Go toolchain is not installed")
        return 0
    work = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
    try:
        server_bin = build_go_program(GO_SERVER, work, "goserver")
        client_bin = build_go_program(GO_CLIENT, work, "goclient")

        # -- per-call latency --
        socket_path = work / "echo.sock"
        server = GoServer(server_bin, [str(socket_path)])
        try:
            addr = f"unix://{socket_path}"
            go_times, py_times = [], []
            for _ in range(ROUNDS):
                go_times.append(int(go(client_bin, "bench", addr, str(CALLS))[0]) / 1e9)
                py_times.append(python_call_median(addr, CALLS))
        finally:
            server.close()
        go_call, py_call = statistics.median(go_times), statistics.median(py_times)

        # -- cold get_all over 200 plugins --
        sockets, specs = work / "run", work / "etc"
        sockets.mkdir()
        specs.mkdir()
        server = GoServer(server_bin, [str(sockets / f"p{i:03}.sock") for i in range(PLUGINS)])
        try:
            go_all, py_all = [], []
            for _ in range(GETALL_ROUNDS):
                median_ns, go_found = go(
                    client_bin, "getall", str(sockets), str(specs), "VolumeDriver", str(COLD_RUNS)
                )
                go_all.append(int(median_ns) / 1e9)
                seconds, py_found = python_get_all_median(sockets, specs, COLD_RUNS)
                py_all.append(seconds)
                assert int(go_found) == py_found == PLUGINS, (go_found, py_found)
        finally:
            server.close()
        go_getall, py_getall = statistics.median(go_all), statistics.median(py_all)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'measure':<44}{'pluginkit':>12}{'Go':>12}{'ratio':>8}")
    print(
        f"{'Client.call, median per call (us)':<44}"
        f"{py_call * 1e6:>12.1f}{go_call * 1e6:>12.1f}{py_call / go_call:>8.2f}"
    )
    print(
        f"{f'cold get_all over {PLUGINS} plugins, median (ms)':<44}"
        f"{py_getall * 1e3:>12.2f}{go_getall * 1e3:>12.2f}{py_getall / go_getall:>8.2f}"
    )
    print("targets: Client.call <= 0.70, get_all <= 0.80 (ratio = pluginkit / Go)")
    print(
        "rounds (call us, pluginkit/Go): "
        + ", ".join(f"{p * 1e6:.0f}/{g * 1e6:.0f}" for p, g in zip(py_times, go_times, strict=True))
    )
    print(
        "rounds (get_all ms, pluginkit/Go): "
        + ", ".join(f"{p * 1e3:.1f}/{g * 1e3:.1f}" for p, g in zip(py_all, go_all, strict=True))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
