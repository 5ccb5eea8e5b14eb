"""Helpers for the daemon tests: a host-process plugin, a daemon subprocess, a raw HTTP call."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


PLUGIN = """#!{python}
import json, os, signal, socket, sys
sys.stdout.reconfigure(line_buffering=True)
for i in range(int(os.environ.get("LINES", "0"))):
    print(f"line {{i}}")
print("listening", flush=True)
print("ready on stderr", file=sys.stderr, flush=True)
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], "p.sock")
try:
    os.unlink(path)
except OSError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(64)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    conn, _ = server.accept()
    try:
        request = conn.recv(65536).decode(errors="replace")
        method = request.split(" ", 2)[1].lstrip("/") if " " in request else ""
        if method and method != "Plugin.Activate":  # not the daemon's health probes
            print(f"called {{method}}", flush=True)
        body = json.dumps({{"Implements": ["VolumeDriver"], "Pid": os.getpid()}}).encode()
        head = "HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
        head += f"Content-Length: {{len(body)}}\\r\\nConnection: close\\r\\n\\r\\n"
        conn.sendall(head.encode() + body)
    except OSError:
        pass
    finally:
        conn.close()
"""

CONFIG: dict[str, Any] = {
    "Description": "daemon test plugin",
    "Documentation": "https://example.invalid/daemon",
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/plugin"],
    "WorkDir": "",
    "Network": {"Type": "host"},
    "Linux": {"Capabilities": [], "AllowAllDevices": False, "Devices": []},
    "PropagatedMount": "",
    "IpcHost": False,
    "PidHost": False,
    "Mounts": [],
    "Env": [
        {"Name": "DEBUG", "Description": "debug level", "Settable": ["value"], "Value": "0"},
        {"Name": "LINES", "Description": "lines to print", "Settable": ["value"], "Value": "0"},
    ],
    "Args": {"Name": "args", "Description": "extra args", "Settable": ["value"], "Value": []},
}


def make_plugin_dir(where: Path) -> Path:
    """Write a plugin directory whose entrypoint is a host Python script."""
    (where / "rootfs").mkdir(parents=True, exist_ok=True)
    script = where / "rootfs" / "plugin"
    script.write_text(PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    (where / "config.json").write_text(json.dumps(CONFIG))
    return where


def cli_env() -> dict[str, str]:
    """The environment of a ``python -m pluginkit`` of this checkout, process runtime."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PLUGINKIT_RUNTIME": "process"}
    for key in ("PLUGINKIT_ROOT", "PLUGINKIT_HOST", "NOTIFY_SOCKET", "DOCKER_HOST"):
        env.pop(key, None)
    return env


class DaemonProcess:
    """``pluginkit daemon`` in a subprocess on a temporary root."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.run_root = tmp / "r"
        self.socket = self.run_root / "pluginkit.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "daemon.log"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        options: Sequence[str] = (),
    ) -> None:
        """Start it: ``extra`` are global options (before ``daemon``), ``options`` the daemon's."""
        command = self._cli_command(*extra, "daemon", *options)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command, env=env or cli_env(), stdout=log, stderr=log, start_new_session=True
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log.read_text()}")
            try:
                status, _, body = http(self.socket, "GET", "/_ping")
                if status == 200 and body == b"OK":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"daemon not ready: {self.log.read_text()}")

    def _cli_command(self, *args: str) -> list[str]:
        command = [sys.executable, "-m", "pluginkit", "--root", str(self.root)]
        return [*command, "--run-root", str(self.run_root), *args]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cli_command(*args),
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=timeout,
            check=False,
        )

    def cli_background(self, *args: str) -> subprocess.Popen[str]:
        """Start a CLI command that keeps running (``events``), its stdout piped as text."""
        return subprocess.Popen(
            self._cli_command(*args), env=cli_env(), stdout=subprocess.PIPE, text=True
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code


def http(
    sock_path: Path,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a unix socket (Connection: close); chunked bodies decoded."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    try:
        sock.connect(str(sock_path))
        lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    if "chunked" in parsed.get("transfer-encoding", ""):
        rest = dechunk(rest)
    return int(status_line.split()[1]), parsed, rest


def dechunk(data: bytes) -> bytes:
    """Decode a chunked body."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def kill_leftovers(root: Path) -> list[int]:
    """SIGKILL the processes whose command line names ``root`` (plugins a test started).

    A safety net after the plugins were disabled through a manager: it returns
    the pids it had to kill, so that a caller can tell.
    """
    marker = str(root).encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def stop_plugins(d: DaemonProcess) -> None:
    """Disable every enabled plugin of the daemon's root (they outlive it: live restore)."""
    from pluginkit import Manager
    from pluginkit.runtime import ProcessRuntime

    runtime = ProcessRuntime()
    with Manager(d.root, run_root=d.run_root, runtime=runtime, legacy=None) as manager:
        for plugin in manager.list(enabled=True):
            manager.disable(plugin.name, force=True)
    runtime.close()


@contextlib.contextmanager
def running_daemon(tmp: Path, *options: str) -> Iterator[DaemonProcess]:
    """A started daemon on ``tmp`` (with ``options``); then it and its plugins are stopped."""
    d = DaemonProcess(tmp)
    d.start(options=options)
    try:
        yield d
    finally:
        d.stop()
        stop_plugins(d)
        kill_leftovers(d.root)
