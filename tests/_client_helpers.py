"""Peers for the client and legacy-registry tests and benchmark.

* :class:`HTTPPluginServer` - a small threaded HTTP/1.1 plugin server in Python
  (unix socket or TCP, optional TLS) whose replies a test scripts per method.
* ``GO_SERVER`` / ``GO_CLIENT`` - Go programs built over Docker's own
  ``pkg/plugins`` (with :func:`conftest.build_go_program`): a net/http plugin
  server, and Docker's client and discovery driven from the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

# A handler gets the request (method path without "/", headers, body) and
# returns (status, body bytes) - or None to drop the connection unanswered.
Handler = Callable[["Request"], "tuple[int, bytes] | None"]


class Request:
    def __init__(self, method: str, headers: dict[str, str], body: bytes, http_method: str):
        self.method = method
        self.headers = headers
        self.body = body
        self.http_method = http_method


def echo(request: Request) -> tuple[int, bytes]:
    return 200, request.body


def activate(*implements: str) -> Handler:
    def handler(_request: Request) -> tuple[int, bytes]:
        return 200, json.dumps({"Implements": list(implements)}).encode()

    return handler


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def address_string(self) -> str:  # unix sockets have no peer address
        return "peer"

    def do_POST(self) -> None:
        owner: HTTPPluginServer = self.server.owner
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(length)) if length else b""
        method = self.path.lstrip("/")
        request = Request(method, {k.lower(): v for k, v in self.headers.items()}, body, "POST")
        owner.requests.append(request)
        handler = owner.handlers.get(method)
        if handler is None:
            result: tuple[int, bytes] | None = (404, b"404 page not found\n")
        else:
            result = handler(request)
        if result is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload = result
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are part of the tests


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class HTTPPluginServer:
    """A plugin server for tests, on a unix socket path or on 127.0.0.1:0."""

    def __init__(
        self,
        path: Path | None = None,
        handlers: dict[str, Handler] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.requests: list[Request] = []
        if path is not None:
            self._server: socketserver.BaseServer = _UnixServer(str(path), _RequestHandler)
            self.addr = f"unix://{path}"
        else:
            self._server = _TCPServer(("127.0.0.1", 0), _RequestHandler)
            port = self._server.server_address[1]  # type: ignore[attr-defined]
            self.addr = f"{'https' if tls else 'tcp'}://127.0.0.1:{port}"
            if tls is not None:
                server = self._server

                def get_request() -> tuple[socket.socket, Any]:
                    conn, peer = socketserver.TCPServer.get_request(server)  # type: ignore[arg-type]
                    return tls.wrap_socket(conn, server_side=True), peer

                server.get_request = get_request  # type: ignore[method-assign]
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> HTTPPluginServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class RawServer:
    """A unix-socket server whose connections a test handles byte by byte.

    ``behaviour(conn)`` runs in a thread per accepted connection; ``pace``
    seconds pass before each accept (a plugin slow to take connections).
    """

    def __init__(
        self,
        path: Path,
        behaviour: Callable[[socket.socket], None],
        *,
        backlog: int = 64,
        pace: float = 0.0,
    ) -> None:
        self.path = path
        self._pace = pace
        self.addr = f"unix://{path}"
        self.accepted = 0
        self._behaviour = behaviour
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(backlog)
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            if self._pace:
                time.sleep(self._pace)
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._behaviour(conn)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        for thread in self._threads:
            thread.join(timeout=5)


def read_request(conn: socket.socket) -> bytes:
    """Read one request's head and Content-Length body from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def reply(conn: socket.socket, raw: bytes) -> None:
    """Read one request from ``conn`` and answer ``raw`` bytes."""
    read_request(conn)
    conn.sendall(raw)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


# -- Go peers ---------------------------------------------------------------

GO_SERVER = r"""
package main

// A plugin server in Go's net/http: listens on each unix socket path (or
// tcp:HOST:PORT) given, answers Plugin.Activate, Test.Echo and Test.Err.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	keepAlive := os.Getenv("KEEPALIVE") != "0"
	implements := os.Getenv("IMPLEMENTS")
	if implements == "" {
		implements = "VolumeDriver"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.1+json")
		parts := strings.Split(implements, ",")
		fmt.Fprintf(w, "{\"Implements\": [\"%s\"]}", strings.Join(parts, "\",\""))
	})
	mux.HandleFunc("/Test.Echo", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "not POST", 405)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.1+json")
		if len(b) == 0 {
			b = []byte("{}")
		}
		w.Write(b)
	})
	mux.HandleFunc("/Test.Headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"Accept\": %q, \"Host\": %q, \"ContentType\": %q}",
			r.Header.Get("Accept"), r.Host, r.Header.Get("Content-Type"))
	})
	mux.HandleFunc("/Test.Err", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		fmt.Fprint(w, "{\"Err\": \"boom\"}")
	})
	for _, addr := range os.Args[1:] {
		var l net.Listener
		var err error
		if strings.HasPrefix(addr, "tcp:") {
			l, err = net.Listen("tcp", strings.TrimPrefix(addr, "tcp:"))
		} else {
			os.Remove(addr)
			l, err = net.Listen("unix", addr)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: mux}
		srv.SetKeepAlivesEnabled(keepAlive)
		go srv.Serve(l)
		if strings.HasPrefix(addr, "tcp:") {
			fmt.Println("listening", l.Addr().String())
		}
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	io.ReadAll(os.Stdin) // serve until stdin closes
}
"""

GO_CLIENT = r"""
package main

// Docker's pkg/plugins driven from the command line:
//   call ADDR METHOD JSON          one Client.Call, prints the reply
//   bench ADDR N                   times N Client.Call("Test.Echo"), prints median ns
//   scan SOCKDIR SPECDIR           plugins.Scan() with those directories
//   get SOCKDIR SPECDIR NAME CAP   plugins.Get, prints name/addr/TLS
//   getall SOCKDIR SPECDIR CAP N   times N cold plugins.GetAll, prints median ns

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/docker/docker/pkg/plugins"
)

// Docker's directories are package variables; point them at test dirs.
//go:linkname socketsPath github.com/docker/docker/pkg/plugins.socketsPath
var socketsPath string

//go:linkname specsPaths github.com/docker/docker/pkg/plugins.specsPaths
var specsPaths []string

// The activated-plugin cache, emptied between cold GetAll runs. Declared as a
// plain word (the linker only needs the symbol); its real layout is
// {sync.Mutex; map[string]*Plugin}, reached through unsafe.
//go:linkname storageWord github.com/docker/docker/pkg/plugins.storage
var storageWord uintptr

type storageT struct {
	sync.Mutex
	plugins map[string]*plugins.Plugin
}

func resetStorage() {
	s := (*storageT)(unsafe.Pointer(&storageWord))
	s.Lock()
	s.plugins = make(map[string]*plugins.Plugin)
	s.Unlock()
}

func die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func median(d []time.Duration) int64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return int64(d[len(d)/2])
}

func main() {
	switch os.Args[1] {
	case "call":
		c, err := plugins.NewClient(os.Args[2], nil)
		if err != nil {
			die(err)
		}
		var args interface{}
		if err := json.Unmarshal([]byte(os.Args[4]), &args); err != nil {
			die(err)
		}
		var out interface{}
		if err := c.Call(os.Args[3], args, &out); err != nil {
			die(err)
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	case "bench":
		c, err := plugins.NewClient(os.Args[2], nil)
		if err != nil {
			die(err)
		}
		n, _ := strconv.Atoi(os.Args[3])
		args := map[string]interface{}{"Name": "volume-1", "Opts": map[string]string{"size": "1G"}}
		var out map[string]interface{}
		for i := 0; i < n/10+10; i++ { // warm up
			if err := c.Call("Test.Echo", args, &out); err != nil {
				die(err)
			}
		}
		times := make([]time.Duration, n)
		for i := 0; i < n; i++ {
			start := time.Now()
			if err := c.Call("Test.Echo", args, &out); err != nil {
				die(err)
			}
			times[i] = time.Since(start)
		}
		fmt.Println(median(times))
	case "scan":
		socketsPath, specsPaths = os.Args[2], []string{os.Args[3]}
		names, err := plugins.Scan()
		if err != nil {
			die(err)
		}
		b, _ := json.Marshal(names)
		fmt.Println(string(b))
	case "get":
		socketsPath, specsPaths = os.Args[2], []string{os.Args[3]}
		p, err := plugins.Get(os.Args[4], os.Args[5])
		if err != nil {
			die(err)
		}
		b, _ := json.Marshal(map[string]interface{}{"Name": p.Name(), "Addr": p.Addr})
		fmt.Println(string(b))
	case "getall":
		socketsPath, specsPaths = os.Args[2], []string{os.Args[3]}
		n, _ := strconv.Atoi(os.Args[5])
		times := make([]time.Duration, n)
		found := 0
		for i := 0; i < n; i++ {
			resetStorage()
			start := time.Now()
			ps, err := plugins.GetAll(os.Args[4])
			times[i] = time.Since(start)
			if err != nil {
				die(err)
			}
			found = len(ps)
		}
		fmt.Println(median(times), found)
	}
}
"""


class GoServer:
    """Run the Go plugin server on the given addresses until closed."""

    def __init__(self, binary: Path, addresses: list[str], *, keep_alive: bool = True) -> None:
        env = {**os.environ, "KEEPALIVE": "1" if keep_alive else "0"}
        self.process = subprocess.Popen(
            [str(binary), *addresses],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.tcp_addresses: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("listening "):
                self.tcp_addresses.append(line.split()[1])
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError("the Go plugin server did not start")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


def go_server(binary: Path, addresses: list[str], **kwargs: Any) -> Iterator[GoServer]:
    server = GoServer(binary, addresses, **kwargs)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def full_backlog(path: Path) -> Iterator[str]:
    """A unix socket that never accepts, its listen backlog filled; yields its address."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    queued: list[socket.socket] = []
    try:
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            queued.append(sock)
            try:
                sock.connect(str(path))
            except BlockingIOError:
                break
        yield f"unix://{path}"
    finally:
        for sock in queued:
            sock.close()
        listener.close()
