"""SDK server latency: pluginkit's PluginServer against a Go net/http plugin server.

Both servers do the same work - ``Plugin.Activate`` and an ``Echo`` handler
that decodes the JSON body and encodes it back, with Docker's v1.1 content
type - and listen on a unix socket. Both are driven by the same lean Python
keep-alive client (raw socket, pre-built request bytes), so the client's own
cost is identical on both sides. Rounds alternate between the two servers so
that machine noise hits both alike.

Prints the median per-request latency of each and the ratio
(pluginkit / Go; at most 1.1 is the target), then the same for 64 concurrent
keep-alive clients (multiplexed by one client process with a selector).

Run: ``python3 benchmarks/bench_sdk.py [--quick]``.
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

server = PluginServer(["VolumeDriver"], threads=int(sys.argv[2]))
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
        try:
            go_binary = build_go_program(GO_SERVER, work, "goplugin")
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"cannot build the Go baseline: {exc}", file=sys.stderr)
            return 1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        go_sock = str(work / "go.sock")
        py_sock = str(work / "py.sock")
        py_pool_sock = str(work / "pypool.sock")
        go = start([str(go_binary), go_sock])
        py = start([sys.executable, "-c", PY_SERVER, py_sock, "0"], env)
        py_pool = start([sys.executable, "-c", PY_SERVER, py_pool_sock, "4"], env)
        try:
            replies = [json.loads(LeanClient(p).call()) for p in (go_sock, py_sock, py_pool_sock)]
            assert replies[0] == replies[1] == replies[2], replies
            results: dict[str, list[int]] = {"go": [], "pluginkit": [], "pluginkit threads=4": []}
            socks = {"go": go_sock, "pluginkit": py_sock, "pluginkit threads=4": py_pool_sock}
            for _ in range(rounds):
                for name, path in socks.items():
                    results[name] += sequential_round(path, per_round)
            med = {name: statistics.median(t) / 1000 for name, t in results.items()}
            print(f"sequential, 1 keep-alive client, {rounds * per_round} requests each:")
            for name, value in med.items():
                print(f"  {name:22s} median {value:7.1f} us/request")
            print(f"  ratio pluginkit/go            {med['pluginkit'] / med['go']:.2f}")
            print(f"  ratio pluginkit threads=4/go  {med['pluginkit threads=4'] / med['go']:.2f}")

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
        finally:
            for proc in (go, py, py_pool):
                stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
