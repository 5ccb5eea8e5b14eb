"""SDK server latency: pluginkit's PluginServer against a Go net/http plugin server.

Both servers do the same work - ``Plugin.Activate`` and an ``Echo`` handler
that decodes the JSON body and encodes it back, with Docker's v1.1 content
type - and listen on a unix socket. Both are driven by the same lean Python
keep-alive client (raw socket, pre-built request bytes), so the client's own
cost is identical on both sides. Rounds alternate between the two servers so
that machine noise hits both alike.

Prints the median per-request latency of each and the ratio
(pluginkit / Go; at most 1.0 is the target), for inline handlers, a pool of
threads and ``async def`` handlers, then the same for 64 concurrent
keep-alive clients (multiplexed by one client process with a selector).

First, what an idle plugin costs: the resident memory (VmRSS, and its
private part RssAnon) of an idle SDK plugin process - a bare PluginServer and
a typed VolumeDriver - against a minimal stdlib Python unix-socket server
that answers ``Plugin.Activate`` (socket, selectors, json: target <= 1.4),
and the time of ``python -c "import pluginkit.sdk"`` against ``python -c
pass``. Processes are started in interleaved A/B pairs; medians are reported.

Run: ``python3 benchmarks/bench_sdk.py [--quick] [--idle-only]``.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GO_SERVER = r"""
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
)

const contentType = "application/vnd.docker.plugins.v1.1+json"

func main() {
	path := os.Args[1]
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write([]byte(`{"Implements": ["VolumeDriver"]}`))
	})
	mux.HandleFunc("/Echo", func(w http.ResponseWriter, r *http.Request) {
		var v interface{}
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", contentType)
		json.NewEncoder(w).Encode(v)
	})
	os.Stdout.WriteString("ready\n")
	http.Serve(l, mux)
}
"""

PY_SERVER = r"""
import sys
from pluginkit.sdk import PluginServer

mode = sys.argv[2]
server = PluginServer(["VolumeDriver"], threads=0 if mode == "async" else int(mode))
if mode == "async":
    async def echo(request):
        return request

    server.add_handler("Echo", echo)
else:
    server.add_handler("Echo", lambda request: request)
server.start(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""

BODY = b'{"Name": "volume-1", "Opts": {"size": "10G", "type": "ssd"}}'
REQUEST = (
    b"POST /Echo HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
    b"Accept: application/vnd.docker.plugins.v1.2+json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class LeanClient:
    """Keep-alive client: send pre-built bytes, read one Content-Length response."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def call(self) -> bytes:
        self.sock.sendall(REQUEST)
        buf = self.buf
        recv = self.sock.recv
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end]
                i = head.lower().find(b"content-length:")
                length = int(
                    head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]
                )
                total = end + 4 + length
                if len(buf) >= total:
                    self.buf = buf[total:]
                    return buf[end + 4 : total]
            data = recv(65536)
            if not data:
                raise ConnectionError("server closed")
            buf += data

    def close(self) -> None:
        self.sock.close()


def sequential_round(path: str, n: int) -> list[int]:
    client = LeanClient(path)
    try:
        for _ in range(200):
            client.call()
        times = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t = clock()
            client.call()
            times.append(clock() - t)
        return times
    finally:
        client.close()


def concurrent_round(path: str, clients: int, per_client: int) -> float:
    """Seconds per request with ``clients`` keep-alive connections busy at once."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        socks.append(s)
    remaining = dict.fromkeys(socks, per_client)
    bufs = dict.fromkeys(socks, b"")
    start = time.perf_counter()
    for s in socks:
        s.send(REQUEST)
        sel.register(s, selectors.EVENT_READ)
    done = 0
    while done < clients:
        for key, _ in sel.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            buf = bufs[s] + s.recv(65536)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].lower()
                i = head.find(b"content-length:")
                j = head.find(b"\r\n", i)
                length = int(head[i + 15 : j if j > 0 else None])
                if len(buf) < end + 4 + length:
                    break
                buf = buf[end + 4 + length :]
                remaining[s] -= 1
                if remaining[s] == 0:
                    sel.unregister(s)
                    done += 1
                else:
                    s.send(REQUEST)
            bufs[s] = buf
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    sel.close()
    return elapsed / (clients * per_client)


# -- idle cost ----------------------------------------------------------------------

# The baseline: about the least a Python plugin can be - one thread, a
# selector, a fixed Plugin.Activate reply, json loaded as any plugin needs.
STDLIB_SERVER = r"""
import json, os, selectors, socket, sys

reply = json.dumps({"Implements": ["VolumeDriver"]}).encode()
head = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.1+json\r\n"
answer = head + b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(128)
sel = selectors.DefaultSelector()
sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is listener:
            conn, _ = listener.accept()
            sel.register(conn, selectors.EVENT_READ)
        else:
            data = key.fileobj.recv(65536)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
            elif b"\r\n\r\n" in data:
                key.fileobj.sendall(answer)
"""

SDK_PLAIN = r"""
import sys
from pluginkit.sdk import PluginServer

server = PluginServer(["VolumeDriver"])
server.add_handler("VolumeDriver.List", lambda request: {"Volumes": []})
server.serve(sys.argv[1])
"""

SDK_DRIVER = r"""
import sys
from pluginkit.sdk import VolumeDriver, volume

class Volumes(VolumeDriver):
    def list(self) -> volume.ListResponse:
        return volume.ListResponse()

Volumes().server().serve(sys.argv[1])
"""


def _memory(pid: int) -> tuple[int, int]:
    """VmRSS and RssAnon of a process, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields["VmRSS"]), int(fields.get("RssAnon", fields["VmRSS"]))


def _idle_memory(program: str, path: str, env: dict[str, str]) -> tuple[int, int]:
    """Start ``program`` as a plugin on ``path`` (single-threaded, as serve() runs)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", program, path], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not Path(path).exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the plugin on {path} did not start")
            time.sleep(0.01)
        activate_once(path)  # one call answered: what a served plugin has loaded
        time.sleep(0.2)
        return _memory(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        Path(path).unlink(missing_ok=True)


def activate_once(path: str) -> None:
    """Call Plugin.Activate once on a fresh connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    data = b""
    while b"Implements" not in data:
        data += sock.recv(4096)
    sock.close()


def idle_cost(work: Path, env: dict[str, str], pairs: int) -> None:
    """Print the idle memory ratios and the import time ratio (medians of interleaved pairs)."""
    rows: dict[str, list[tuple[int, int]]] = {"stdlib": [], "sdk": [], "sdk+driver": []}
    programs = {"stdlib": STDLIB_SERVER, "sdk": SDK_PLAIN, "sdk+driver": SDK_DRIVER}
    for n in range(pairs):
        for name, program in programs.items():
            rows[name].append(_idle_memory(program, str(work / f"{name}-{n}.sock"), env))
    base_rss = statistics.median(r for r, _ in rows["stdlib"])
    base_anon = statistics.median(a for _, a in rows["stdlib"])
    print(f"idle plugin memory, median of {pairs} processes each (KiB):")
    for name, values in rows.items():
        rss = statistics.median(r for r, _ in values)
        anon = statistics.median(a for _, a in values)
        print(
            f"  {name:12s} VmRSS {rss:8.0f} ({rss / base_rss:.2f}x)"
            f"   RssAnon {anon:8.0f} ({anon / base_anon:.2f}x)"
        )
    ratios = []
    for _ in range(pairs * 2):
        times = []
        for code in ("pass", "import pluginkit.sdk"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times.append(time.perf_counter() - t)
        ratios.append(times[1] / times[0])
    print(f"  python -c 'import pluginkit.sdk' / python -c pass: {statistics.median(ratios):.2f}")


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    proc.terminate()
    proc.wait(10)


def main() -> int:
    quick = "--quick" in sys.argv
    rounds, per_round = (3, 2000) if quick else (7, 5000)
    from tests.conftest import build_go_program

    with tempfile.TemporaryDirectory(prefix="pk-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        idle_cost(work, {**os.environ, "PYTHONPATH": str(ROOT)}, 3 if quick else 7)
        if "--idle-only" in sys.argv:
            return 0
        try:
            go_binary = build_go_program(GO_SERVER, work, "goplugin")
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"cannot build the Go baseline: {exc}", file=sys.stderr)
            return 1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        go_sock = str(work / "go.sock")
        py_sock = str(work / "py.sock")
        py_pool_sock = str(work / "pypool.sock")
        py_async_sock = str(work / "pyasync.sock")
        go = start([str(go_binary), go_sock])
        py = start([sys.executable, "-c", PY_SERVER, py_sock, "0"], env)
        py_pool = start([sys.executable, "-c", PY_SERVER, py_pool_sock, "4"], env)
        py_async = start([sys.executable, "-c", PY_SERVER, py_async_sock, "async"], env)
        try:
            all_socks = (go_sock, py_sock, py_pool_sock, py_async_sock)
            replies = [json.loads(LeanClient(p).call()) for p in all_socks]
            assert all(r == replies[0] for r in replies), replies
            socks = {
                "go": go_sock,
                "pluginkit": py_sock,
                "pluginkit threads=4": py_pool_sock,
                "pluginkit async": py_async_sock,
            }
            results: dict[str, list[int]] = {name: [] for name in socks}
            for _ in range(rounds):
                for name, path in socks.items():
                    results[name] += sequential_round(path, per_round)
            med = {name: statistics.median(t) / 1000 for name, t in results.items()}
            print(f"sequential, 1 keep-alive client, {rounds * per_round} requests each:")
            for name, value in med.items():
                print(f"  {name:22s} median {value:7.1f} us/request")
            print(f"  ratio pluginkit/go            {med['pluginkit'] / med['go']:.2f}")
            print(f"  ratio pluginkit threads=4/go  {med['pluginkit threads=4'] / med['go']:.2f}")
            print(f"  ratio pluginkit async/go      {med['pluginkit async'] / med['go']:.2f}")

            conc: dict[str, list[float]] = {name: [] for name in socks}
            per_client = 50 if quick else 150
            for _ in range(rounds):
                for name, path in socks.items():
                    conc[name].append(concurrent_round(path, 64, per_client))
            cmed = {name: statistics.median(v) * 1e6 for name, v in conc.items()}
            print(f"64 concurrent keep-alive clients, {per_client} requests each:")
            for name, value in cmed.items():
                print(f"  {name:22s} {value:7.1f} us/request (throughput)")
            print(f"  ratio pluginkit/go            {cmed['pluginkit'] / cmed['go']:.2f}")
            print(f"  ratio pluginkit threads=4/go  {cmed['pluginkit threads=4'] / cmed['go']:.2f}")
            print(f"  ratio pluginkit async/go      {cmed['pluginkit async'] / cmed['go']:.2f}")
        finally:
            for proc in (go, py, py_pool, py_async):
                stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
