"""The clients' overhead, the async client's throughput, and import times.

Measured in one run, each as a ratio to a baseline measured alongside
(interleaved A/B rounds, median ratio; below 1.0 means pluginkit is faster):

* ``Client.call`` vs a bare-socket Python client making the same call on one
  kept-alive unix connection (the least a Python client can do: ``json.dumps``,
  one ``sendall``, one ``recv``, ``json.loads`` after the blank line), on the
  Go net/http plugin server (target <= 1.1);
* ``AsyncClient.call``: 64 concurrent calls on one event loop vs the sync
  ``Client`` on 8 threads, throughput ratio async/threads (target >= 1.0;
  here above 1.0 means the loop is faster);
* ``python -c "import pluginkit"`` vs ``python -c pass`` (target <= 3) and
  ``pluginkit --help`` vs ``python -c pass`` (target <= 4).

Run alone: ``python3 benchmarks/bench_wire.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _client_helpers import GO_SERVER, GoServer  # noqa: E402
from conftest import build_go_program  # noqa: E402

from pluginkit import AsyncClient, Client  # noqa: E402

ROUNDS = 7
CALLS = 3000
THROUGHPUT_CALLS = 6000
IMPORT_RUNS = 15


def bare_socket_median(path: str, n: int) -> float:
    """Median seconds per call of the least a Python client can do for ``Client.call``.

    It encodes the arguments, sends one pre-built request, takes one ``recv``
    for the whole reply and decodes the JSON after the blank line: no checks,
    no pool, no parsing of the head.
    """
    args = {"Name": "volume-1", "Opts": {"size": "1G"}}
    prefix = (
        b"POST /Test.Echo HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
        b"Accept: application/vnd.docker.plugins.v1.2+json\r\n"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    times = []
    clock = time.perf_counter
    try:
        for i in range(n + n // 10):
            start = clock()
            body = json.dumps(args).encode()
            sock.sendall(prefix + b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
            data = sock.recv(65536)
            reply = json.loads(data[data.find(b"\r\n\r\n") + 4 :])
            if i >= n // 10:
                times.append(clock() - start)
    finally:
        sock.close()
    assert reply == args, reply
    return statistics.median(times)


def client_median(addr: str, n: int) -> float:
    """Median seconds per ``Client.call`` (same body, decoded as JSON)."""
    args = {"Name": "volume-1", "Opts": {"size": "1G"}}
    times = []
    clock = time.perf_counter
    with Client(addr) as client:
        for i in range(n + n // 10):
            start = clock()
            client.call("Test.Echo", args)
            if i >= n // 10:
                times.append(clock() - start)
    return statistics.median(times)


def threads_throughput(addr: str, calls: int, threads: int = 8) -> float:
    """Calls per second of one sync Client shared by ``threads`` threads."""
    args = {"Name": "volume-1"}
    per_thread = calls // threads
    with Client(addr) as client:
        for _ in range(threads * 4):
            client.call("Test.Echo", args)
        barrier = threading.Barrier(threads + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(per_thread):
                client.call("Test.Echo", args)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        return per_thread * threads / (time.perf_counter() - start)


def async_throughput(addr: str, calls: int, concurrency: int = 64) -> float:
    """Calls per second of one AsyncClient with ``concurrency`` calls in flight on one loop."""
    args = {"Name": "volume-1"}
    per_task = calls // concurrency

    async def run() -> float:
        async with AsyncClient(addr) as client:
            await asyncio.gather(*(client.call("Test.Echo", args) for _ in range(concurrency)))

            async def work() -> None:
                for _ in range(per_task):
                    await client.call("Test.Echo", args)

            start = time.perf_counter()
            await asyncio.gather(*(work() for _ in range(concurrency)))
            return per_task * concurrency / (time.perf_counter() - start)

    return asyncio.run(run())


def process_seconds(argv: list[str]) -> float:
    """Wall-clock seconds of one run of ``argv``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    rows: list[tuple[str, float, float, float, str]] = []

    # -- imports (no server needed) --
    py = sys.executable
    bare, imp, cli = [], [], []
    for _ in range(IMPORT_RUNS):  # interleaved: a busy moment hits all three
        bare.append(process_seconds([py, "-c", "pass"]))
        imp.append(process_seconds([py, "-c", "import pluginkit"]))
        cli.append(process_seconds([py, "-m", "pluginkit", "--help"]))
    base = statistics.median(bare)
    import_ratio = statistics.median(i / b for i, b in zip(imp, bare, strict=True))
    cli_ratio = statistics.median(c / b for c, b in zip(cli, bare, strict=True))
    rows.append(("python -c 'import pluginkit' (ms)", statistics.median(imp) * 1e3,
                 base * 1e3, import_ratio, "<= 3"))  # fmt: skip
    rows.append(("python -m pluginkit --help (ms)", statistics.median(cli) * 1e3,
                 base * 1e3, cli_ratio, "<= 4"))  # fmt: skip

    if shutil.which("go") is None:
        print("the Go toolchain is not installed: call benchmarks skipped")
    else:
        work = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
        try:
            server_bin = build_go_program(GO_SERVER, work, "goserver")
            path = str(work / "echo.sock")
            server = GoServer(server_bin, [path])
            addr = f"unix://{path}"
            try:
                client_t, bare_t, ratios = [], [], []
                for _ in range(ROUNDS):
                    b = bare_socket_median(path, CALLS)
                    c = client_median(addr, CALLS)
                    bare_t.append(b)
                    client_t.append(c)
                    ratios.append(c / b)
                rows.append(("Client.call vs bare socket, per call (us)",
                             statistics.median(client_t) * 1e6, statistics.median(bare_t) * 1e6,
                             statistics.median(ratios), "<= 1.1"))  # fmt: skip
                async_r, thread_r, tratios = [], [], []
                for _ in range(ROUNDS):
                    t = threads_throughput(addr, THROUGHPUT_CALLS)
                    a = async_throughput(addr, THROUGHPUT_CALLS)
                    thread_r.append(t)
                    async_r.append(a)
                    tratios.append(a / t)
                rows.append(("AsyncClient x64 vs Client x8 threads (calls/s)",
                             statistics.median(async_r), statistics.median(thread_r),
                             statistics.median(tratios), ">= 1.0"))  # fmt: skip
            finally:
                server.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{'measure':<48}{'pluginkit':>12}{'baseline':>12}{'ratio':>8}  target")
    for name, ours, theirs, ratio, target in rows:
        print(f"{name:<48}{ours:>12.1f}{theirs:>12.1f}{ratio:>8.2f}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
