"""Helpers for the DockerRuntime tests and benchmark: a real Go plugin server in a rootfs.

The plugin is a static Go program (standard library only) that listens on
``/run/docker/plugins/$PK_SOCKET`` (default ``pk.sock``), answers
``Plugin.Activate`` (``VolumeDriver``), ``VolumeDriver.List`` and
``VolumeDriver.Capabilities``, plus test methods: ``Test.Info`` (its args,
env, working dir, uid/gid), ``Test.Say`` (prints ``Stdout``/``Stderr``) and
``Test.Exit`` (exits with ``Code``). It prints a line to stdout and one to
stderr when it listens, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker.errors
from conftest import build_go_program

PLUGIN_SOCKET = "pk.sock"

GO_PLUGIN = r"""
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func reply(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.1+json")
	json.NewEncoder(w).Encode(v)
}

func main() {
	name := os.Getenv("PK_SOCKET")
	if name == "" {
		name = "pk.sock"
	}
	path := filepath.Join("/run/docker/plugins", name)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pkplugin: listen: %v\n", err)
		os.Exit(3)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Implements": []string{"VolumeDriver"}})
	})
	mux.HandleFunc("/VolumeDriver.List", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Volumes": []interface{}{}, "Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Capabilities": map[string]string{"Scope": "local"}})
	})
	mux.HandleFunc("/Test.Info", func(w http.ResponseWriter, r *http.Request) {
		wd, _ := os.Getwd()
		reply(w, map[string]interface{}{
			"Args": os.Args, "Env": os.Environ(), "Cwd": wd,
			"Uid": os.Getuid(), "Gid": os.Getgid(),
		})
	})
	mux.HandleFunc("/Test.Say", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Stdout, Stderr string }
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		if req.Stdout != "" {
			fmt.Fprintln(os.Stdout, req.Stdout)
		}
		if req.Stderr != "" {
			fmt.Fprintln(os.Stderr, req.Stderr)
		}
		reply(w, map[string]interface{}{})
	})
	mux.HandleFunc("/Test.Exit", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Code int }
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		reply(w, map[string]interface{}{})
		go func() {
			time.Sleep(50 * time.Millisecond)
			fmt.Fprintln(os.Stderr, "pkplugin: exiting with "+strconv.Itoa(req.Code))
			os.Exit(req.Code)
		}()
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "pkplugin: terminated")
		l.Close()
		os.Exit(0)
	}()
	fmt.Fprintln(os.Stdout, "pkplugin: listening on "+path)
	fmt.Fprintln(os.Stderr, "pkplugin: ready")
	http.Serve(l, mux)
}
"""


@functools.cache
def plugin_binary() -> Path:
    """Build the Go plugin once per process; return the static binary."""
    workdir = Path(tempfile.mkdtemp(prefix="pk-gobuild-"))
    atexit.register(shutil.rmtree, workdir, True)
    return build_go_program(GO_PLUGIN, workdir, "pkplugin")


CONFIG: dict[str, Any] = {
    "Description": "pluginkit DockerRuntime test plugin",
    "Documentation": "https://example.invalid/pkplugin",
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": PLUGIN_SOCKET},
    "Entrypoint": ["/pkplugin"],
    "WorkDir": "/",
    "Network": {"Type": "none"},
    "Linux": {"Capabilities": ["CAP_NET_ADMIN"], "AllowAllDevices": False, "Devices": None},
    "PropagatedMount": "",
    "IpcHost": False,
    "PidHost": False,
    "Mounts": [],
    "Env": [
        {"Name": "DEBUG", "Description": "debug level", "Settable": ["value"], "Value": "0"},
        {"Name": "FIXED", "Description": "not settable", "Settable": [], "Value": "1"},
    ],
    "Args": {"Name": "args", "Description": "extra args", "Settable": ["value"], "Value": []},
}


def make_plugin_dir(
    where: Path, config: dict[str, Any] | None = None, *, busybox: bool = False
) -> Path:
    """Write a plugin directory (config.json + rootfs with the Go plugin); return it."""
    where.mkdir(parents=True, exist_ok=True)
    rootfs = where / "rootfs"
    rootfs.mkdir(exist_ok=True)
    shutil.copy2(plugin_binary(), rootfs / "pkplugin")
    if busybox:
        (rootfs / "bin").mkdir(exist_ok=True)
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    (where / "config.json").write_text(json.dumps(config if config is not None else CONFIG))
    return where


def unique(prefix: str = "pkdr") -> str:
    """A name no other test (or engineer) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def raw_call(socket_path: Path, method: str, body: object = None, timeout: float = 5.0) -> Any:
    """POST /<method> to a plugin on a unix socket; return the decoded JSON answer."""
    payload = b"" if body is None else json.dumps(body).encode()
    request = (
        f"POST /{method} HTTP/1.1\r\nHost: plugin\r\n"
        "Accept: application/vnd.docker.plugins.v1.2+json\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        rest = _dechunk(rest)
    if status != 200:
        raise RuntimeError(f"{method}: HTTP {status}: {rest!r}")
    return json.loads(rest) if rest.strip() else None


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``predicate`` (fast, backing off) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def socket_answers(path: Path) -> bool:
    """Tell whether something accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def remove_docker_leftovers(client: Any, plugin_ids: list[str]) -> None:
    """Remove every container and image labelled with one of ``plugin_ids``."""
    for plugin_id in plugin_ids:
        label = f"pluginkit.plugin.id={plugin_id}"
        for container in client.api.containers(all=True, filters={"label": label}):
            if container["State"] == "running":
                # Podman's forced removal stops gracefully first: kill instead.
                with contextlib.suppress(docker.errors.APIError):
                    client.api.kill(container["Id"], signal="SIGKILL")
            client.api.remove_container(container["Id"], force=True)
        for image in client.api.images(filters={"label": label}):
            client.api.remove_image(image["Id"], force=True)
