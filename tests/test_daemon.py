"""``pluginkit daemon``: Docker's plugin API over a unix socket, driven by real clients.

The daemon runs as a subprocess (``python -m pluginkit ... daemon``) on the
process runtime; its plugins are host Python scripts. Docker's own CLI
(``/usr/bin/docker``, the 20.10 client, and the newer one when installed),
docker-py and raw HTTP drive it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from _daemon_helpers import (
    DaemonProcess,
    cli_env,
    http,
    make_plugin_dir,
    running_daemon,
)
from _docker_py import leaks_dropped

DOCKER = "/usr/bin/docker"
DOCKER_NEW = "/usr/local/bin/docker"


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    with running_daemon(short_tmp) as d:
        yield d


@pytest.fixture
def plugin_dir(short_tmp: Path) -> Path:
    return make_plugin_dir(short_tmp / "ctx")


def docker_cli(
    d: DaemonProcess, *args: str, binary: str = DOCKER, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.tmp / "dockercfg")}
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def api(d: DaemonProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    status, _, raw = http(d.socket, method, path, data)
    return status, (json.loads(raw) if raw.strip() else None)


def plugin_pid(d: DaemonProcess, name: str) -> int:
    from pluginkit import Client

    info = api(d, "GET", f"/pluginkit/v1/lookup?name={name}&capability=volumedriver")[1]
    with Client(info["Addr"], retry_timeout=0) as client:
        return int(client.call("Plugin.Activate")["Pid"])


# -- Docker's CLI ---------------------------------------------------------------------


@pytest.mark.dockercli
def test_docker_cli_drives_the_plugin_lifecycle(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """docker plugin create/ls/enable/inspect/set/disable/rm work and print Docker's texts."""
    assert docker_cli(daemon, "plugin", "create", "dp", str(plugin_dir)).stdout == "dp\n"
    ls = docker_cli(daemon, "plugin", "ls").stdout.splitlines()
    assert ls[0].split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    assert ls[1].split()[1:] == ["dp:latest", "daemon", "test", "plugin", "false"]
    assert docker_cli(daemon, "plugin", "enable", "dp").stdout == "dp\n"
    inspected = json.loads(docker_cli(daemon, "plugin", "inspect", "dp").stdout)
    assert inspected[0]["Name"] == "dp:latest"
    assert inspected[0]["Enabled"] is True
    refused = docker_cli(daemon, "plugin", "set", "dp", "DEBUG=1")
    assert refused.returncode == 1
    assert refused.stderr == (
        "Error response from daemon: cannot set on an active plugin, "
        "disable plugin before setting\n"
    )
    assert docker_cli(daemon, "plugin", "disable", "dp").stdout == "dp\n"
    assert docker_cli(daemon, "plugin", "set", "dp", "DEBUG=1").returncode == 0
    env = json.loads(docker_cli(daemon, "plugin", "inspect", "dp").stdout)[0]["Settings"]["Env"]
    assert env == ["DEBUG=1", "LINES=0"]
    assert docker_cli(daemon, "plugin", "rm", "dp").stdout == "dp\n"
    missing = docker_cli(daemon, "plugin", "inspect", "dp")
    assert (missing.stdout, missing.stderr) == ("[]\n", "Error: No such plugin: dp\n")


@pytest.mark.dockercli
def test_docker_events_shows_plugin_events(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """docker events --filter type=plugin prints each change in Docker's line format."""
    start = time.time()
    docker_cli(daemon, "plugin", "create", "ev", str(plugin_dir))
    docker_cli(daemon, "plugin", "enable", "ev")
    docker_cli(daemon, "plugin", "disable", "ev")
    docker_cli(daemon, "plugin", "rm", "ev")
    out = docker_cli(
        daemon,
        "events",
        "--filter",
        "type=plugin",
        "--since",
        f"{start - 1:.0f}",
        "--until",
        f"{time.time() + 1:.0f}",
    ).stdout.splitlines()
    actions = [line.split()[2] for line in out]
    # The health check's "health_status: healthy" may come between enable and disable.
    actions = [a for a in actions if a != "health_status:"]
    assert actions == ["create", "enable", "disable", "remove"]
    stamp, kind, _, plugin_id, attrs = out[0].split(" ", 4)
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-01-02T03:04:05.123456789Z")
    assert kind == "plugin"
    assert len(plugin_id) == 64
    assert attrs == "(name=ev:latest)"
    only = docker_cli(
        daemon, "events", "--since", f"{start - 1:.0f}", "--until", f"{time.time():.0f}",
        "--filter", "event=enable",
    ).stdout.splitlines()  # fmt: skip
    assert [line.split()[2] for line in only] == ["enable"]


@pytest.mark.dockercli
@pytest.mark.skipif(
    not os.access(DOCKER_NEW, os.X_OK), reason=f"no newer Docker CLI at {DOCKER_NEW}"
)
def test_a_newer_docker_cli_negotiates_the_api_version(daemon: DaemonProcess) -> None:
    """A Docker 28 client downgrades to the daemon's API version 1.41."""
    version = docker_cli(daemon, "version", binary=DOCKER_NEW).stdout
    assert "API version:       1.41 (downgraded from" in version
    assert docker_cli(daemon, "plugin", "ls", binary=DOCKER_NEW).returncode == 0


# -- docker-py ----------------------------------------------------------------------------


def test_docker_py_manages_plugins(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """docker.DockerClient(base_url=...).plugins create/get/enable/configure/remove."""
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        plugin = client.plugins.create("py", str(plugin_dir))
        assert plugin.name == "py:latest"
        assert plugin.enabled is False
        plugin.enable()
        plugin.reload()
        assert plugin.enabled is True
        assert [p.name for p in client.plugins.list()] == ["py:latest"]
        plugin.disable()
        plugin.configure({"DEBUG": "2"})
        plugin.reload()
        assert plugin.settings["Env"] == ["DEBUG=2", "LINES=0"]
        plugin.remove()
        with pytest.raises(docker.errors.NotFound, match='plugin "py" not found'):
            client.plugins.get("py")
    finally:
        client.close()


# -- dockerd's status codes and bodies --------------------------------------------------------


def test_errors_have_dockerds_status_and_message(daemon: DaemonProcess) -> None:
    """Versions, unknown paths, filters, bodies: dockerd's codes and texts."""
    assert api(daemon, "GET", "/v1.99/plugins") == (
        400,
        {"message": "client version 1.99 is too new. Maximum supported API version is 1.41"},
    )
    assert api(daemon, "GET", "/v1.11/plugins")[0] == 400
    assert api(daemon, "GET", "/nope") == (404, {"message": "page not found"})
    assert api(daemon, "PUT", "/plugins") == (404, {"message": "page not found"})
    assert api(daemon, "POST", "/v1.41/plugins/x/json") == (404, {"message": "page not found"})
    assert api(daemon, "GET", "/plugins/nope/json") == (
        404,
        {"message": 'plugin "nope" not found'},
    )
    foo = "/plugins?filters=%7B%22foo%22%3A%7B%22x%22%3Atrue%7D%7D"
    assert api(daemon, "GET", foo) == (400, {"message": "Invalid filter 'foo'"})
    maybe = "/plugins?filters=%7B%22enabled%22%3A%7B%22maybe%22%3Atrue%7D%7D"
    assert api(daemon, "GET", maybe) == (400, {"message": "Invalid filter 'enabled=[maybe]'"})
    assert api(daemon, "GET", "/plugins?filters=bad") == (
        500,
        {"message": "invalid character 'b' looking for beginning of value"},
    )
    assert api(daemon, "POST", "/plugins/nope/enable") == (
        500,
        {"message": 'strconv.Atoi: parsing "": invalid syntax'},
    )
    assert api(daemon, "POST", "/plugins/nope/set") == (
        400,
        {"message": "got EOF while reading request body"},
    )
    assert api(daemon, "POST", "/plugins/nope/set", []) == (
        404,
        {"message": 'plugin "nope" not found'},
    )
    assert api(daemon, "DELETE", "/plugins/nope") == (404, {"message": 'plugin "nope" not found'})
    assert api(daemon, "POST", "/plugins/pull?remote=localhost:1/x") == (
        500,
        {"message": "failed to parse privileges: EOF"},
    )
    refused = api(daemon, "POST", "/plugins/pull?remote=localhost:1/x", [])
    assert refused == (500, {"message": "cannot reach registry localhost:1: connection refused"})
    status, headers, body = http(daemon.socket, "GET", "/_ping")
    assert (status, body, headers["api-version"]) == (200, b"OK", "1.41")


def test_a_bad_client_does_not_disturb_the_others(daemon: DaemonProcess) -> None:
    """Garbage, an oversized body and a silent client leave other requests answered."""
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(daemon.socket))
    silent.sendall(b"GET /plugins HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    garbage = socket.socket(socket.AF_UNIX)
    garbage.connect(str(daemon.socket))
    garbage.sendall(b"\x00\x01 not http at all\r\n\r\n")
    answer = b""
    while chunk := garbage.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"message":"Bad request version (\'all\')"}\n')
    garbage.close()
    big = socket.socket(socket.AF_UNIX)
    big.connect(str(daemon.socket))
    head = "POST /plugins/nope/set HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n"
    big.sendall(head.encode() + b'["DEBUG=' + b"x" * 1024)
    answer = b""
    while chunk := big.recv(65536):  # answered at once, then closed
        answer += chunk
    big.close()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b'{"message":"request body too large (more than 1048576 bytes)"}\n')
    assert api(daemon, "GET", "/plugins") == (200, [])
    silent.close()


def test_keep_alive_survives_an_error_with_an_unread_body(daemon: DaemonProcess) -> None:
    """A request refused before its body is read does not poison the next one."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(daemon.socket))
    body = b'["A=1"]'
    first = f"POST /v1.99/plugins/x/set HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    second = "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    sock.sendall(first.encode() + body + second.encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 400" in data
    assert data.endswith(b"OK")


# -- the pluginkit command through the daemon ----------------------------------------------------


def test_cli_uses_the_daemon_and_says_so(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """With a daemon on the root, every command goes through it (--debug says which)."""
    assert daemon.cli("create", "c", str(plugin_dir)).stdout == "c\n"
    assert daemon.cli("enable", "c").stdout == "c\n"
    listed = daemon.cli("--debug", "ls")
    assert f"using the daemon at unix://{daemon.socket}" in listed.stderr
    row = listed.stdout.splitlines()[1].split()
    # HEALTH: the daemon checks health by default; the first probe may not have answered yet.
    assert row[1:6] == ["c:latest", "daemon", "test", "plugin", "true"]
    assert row[6:] in (["starting"], ["healthy"])
    called = daemon.cli("call", "c", "VolumeDriver.List")
    assert json.loads(called.stdout)["Implements"] == ["VolumeDriver"]
    refused = daemon.cli("rm", "c")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: plugin c:latest is enabled")
    assert daemon.cli("rm", "-f", "c").stdout == "c\n"


def test_cli_without_a_daemon_runs_in_process(short_tmp: Path) -> None:
    """No daemon: the in-process manager, said in --debug; logs and events need one."""
    d = DaemonProcess(short_tmp)
    out = d.cli("--debug", "ls")
    assert out.returncode == 0
    assert f"no daemon answers at {d.socket}: using an in-process manager" in out.stderr
    logs = d.cli("logs", "x")
    assert (logs.returncode, logs.stderr) == (
        1,
        "Error: 'pluginkit logs' needs a running daemon (start one with 'pluginkit daemon')\n",
    )


def test_cli_ignores_a_daemon_of_another_root(daemon: DaemonProcess, short_tmp: Path) -> None:
    """--root naming another root than the daemon's: in-process, not the daemon."""
    other = short_tmp / "other-root"
    out = subprocess.run(
        [*_pk(daemon, root=other), "--debug", "ls"], capture_output=True, text=True,
        env=cli_env(), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"holds {daemon.root}, not {other}" in out.stderr


def _pk(d: DaemonProcess, root: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "pluginkit", "--root", str(root), "--run-root", str(d.run_root)]


def test_logs_tail_follow_and_streams(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """logs --tail N: the last lines; stderr lines on stderr; -t adds timestamps; -f follows."""
    daemon.cli("create", "lg", str(plugin_dir))
    daemon.cli("set", "lg", "LINES=10000")
    daemon.cli("enable", "lg")
    deadline = time.monotonic() + 30
    while "listening" not in daemon.cli("logs", "--tail", "2", "lg").stdout:
        assert time.monotonic() < deadline, daemon.cli("logs", "lg")
        time.sleep(0.1)
    tail = daemon.cli("logs", "--tail", "5", "lg")
    # The two streams are read separately: where the stderr line falls among
    # the last stdout lines depends on which file was read first.
    out_lines, err_lines = tail.stdout.splitlines(), tail.stderr.splitlines()
    assert err_lines in ([], ["ready on stderr"])
    assert len(out_lines) + len(err_lines) == 5
    last = ["line 9996", "line 9997", "line 9998", "line 9999", "listening"]
    assert out_lines == last[-len(out_lines) :]
    stamped = daemon.cli("logs", "-t", "lg")
    assert stamped.stderr.endswith("Z ready on stderr\n")
    assert len(stamped.stderr) == len("2026-01-02T03:04:05.123456789Z ready on stderr\n")
    everything = daemon.cli("logs", "lg").stdout.splitlines()
    assert everything[0] == "line 0"
    assert len(everything) == 10001
    follower = subprocess.Popen(
        [*_pk(daemon, daemon.root), "logs", "-f", "--tail", "0", "lg"],
        stdout=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        time.sleep(1.0)
        daemon.cli("call", "lg", "VolumeDriver.Get", "{}")
        assert follower.stdout is not None
        assert follower.stdout.readline() == "called VolumeDriver.Get\n"
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        assert follower.stdout is not None
        follower.stdout.close()
    since = daemon.cli("logs", "--since", "0s", "lg")
    assert since.stdout == ""


def test_pluginkit_events_filters_and_formats(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """pluginkit events prints Docker's line format and applies --filter."""
    daemon.cli("create", "e1", str(plugin_dir))
    daemon.cli("create", "e2", str(plugin_dir))
    out = daemon.cli("events", "--since", "1h", "--until", "0s", "--filter", "plugin=e2")
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    _, kind, action, plugin_id, attrs = lines[0].split(" ")
    assert (kind, action, len(plugin_id), attrs) == ("plugin", "create", 64, "(name=e2:latest)")
    as_json = daemon.cli("events", "--since", "1h", "--until", "0s", "--format", "json")
    first = json.loads(as_json.stdout.splitlines()[0])
    assert first["Type"] == "plugin"
    assert first["Actor"]["Attributes"] == {"name": "e1:latest"}


# -- supervision, restarts, crashes ----------------------------------------------------------------


def test_a_crashed_plugin_comes_back_without_any_command(
    daemon: DaemonProcess, plugin_dir: Path
) -> None:
    """kill -9 of a plugin: the daemon restarts it (restart policy), it answers again."""
    daemon.cli("create", "cr", str(plugin_dir))
    daemon.cli("enable", "cr")
    pid = plugin_pid(daemon, "cr")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = killed + 20
    while True:
        try:
            new_pid = plugin_pid(daemon, "cr")
            if new_pid != pid:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "the plugin did not come back"
        time.sleep(0.01)
    elapsed = time.monotonic() - killed
    assert elapsed < 10.0
    actions = [
        line.split()[2]
        for line in daemon.cli("events", "--since", "1h", "--until", "0s").stdout.splitlines()
    ]
    # health_status events (the daemon checks health by default) are not at issue here.
    assert [a for a in actions if a != "health_status:"][-2:] == ["exit", "restart"]


def test_sigterm_leaves_plugins_running_and_a_new_daemon_adopts_them(
    daemon: DaemonProcess, plugin_dir: Path
) -> None:
    """SIGTERM: exit 0, the plugin keeps running; the next daemon re-attaches to it."""
    daemon.cli("create", "lr", str(plugin_dir))
    daemon.cli("enable", "lr")
    pid = plugin_pid(daemon, "lr")
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    os.kill(pid, 0)  # still running
    daemon.start()
    assert plugin_pid(daemon, "lr") == pid


@pytest.mark.slow
def test_kill_9_at_random_instants_loses_nothing(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """kill -9 during create/enable/disable/set: every restart loads, plugins are adopted."""
    rng = random.Random(15)
    daemon.cli("create", "keep", str(plugin_dir))
    daemon.cli("enable", "keep")
    kept_pid = plugin_pid(daemon, "keep")
    for round_ in range(6):
        stop = threading.Event()

        def churn(n: int = round_, stop: threading.Event = stop) -> None:
            client = docker.APIClient(base_url=daemon.host, version="1.41", timeout=10)
            i = 0
            try:
                while not stop.is_set():
                    name = f"ch{n}-{i}"
                    try:
                        client.create_plugin(name, str(plugin_dir))
                        client.configure_plugin(name, {"DEBUG": "1"})
                        client.enable_plugin(name)
                        client.disable_plugin(name)
                        client.remove_plugin(name)
                    except Exception:
                        return
                    i += 1
            finally:
                client.close()  # an unclosed socket is an error under -W error

        worker = threading.Thread(target=churn)
        worker.start()
        time.sleep(rng.uniform(0.05, 1.5))
        assert daemon.proc is not None
        with leaks_dropped():  # the churn's request that meets the dead daemon
            daemon.proc.kill()
            daemon.proc.wait()
            daemon.proc = None
            stop.set()
            worker.join(timeout=30)
        daemon.start()
        plugins = api(daemon, "GET", "/plugins")[1]
        names = {p["Name"]: p for p in plugins}
        assert names["keep:latest"]["Enabled"] is True
        assert plugin_pid(daemon, "keep") == kept_pid
        for plugin in plugins:  # every survivor can be inspected and removed
            if plugin["Name"] != "keep:latest":
                assert api(daemon, "DELETE", f"/plugins/{plugin['Id']}?force=1")[0] == 200


def test_eight_concurrent_clients_get_consistent_answers(
    daemon: DaemonProcess, plugin_dir: Path
) -> None:
    """8 clients at once: listing while others enable/disable; every answer is whole."""
    for i in range(4):
        daemon.cli("create", f"cc{i}", str(plugin_dir))
    stable = api(daemon, "GET", "/plugins/cc0/json")[1]
    errors: list[str] = []

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # reported, not lost in a thread
            errors.append(f"{fn.__name__}{args}: {type(exc).__name__}: {exc}")

    def reader() -> None:
        client = docker.APIClient(base_url=daemon.host, version="1.41", timeout=120)
        for _ in range(30):
            plugins = client.plugins()
            if sorted(p["Name"] for p in plugins) != [f"cc{i}:latest" for i in range(4)]:
                errors.append(f"bad list {plugins}")
            if client.inspect_plugin("cc0") != stable:
                errors.append("cc0 changed")
        client.close()

    def toggler(name: str) -> None:
        client = docker.APIClient(base_url=daemon.host, version="1.41", timeout=120)
        for _ in range(5):
            client.enable_plugin(name)
            if not client.inspect_plugin(name)["Enabled"]:
                errors.append(f"{name} not enabled after enable")
            client.disable_plugin(name)
        client.close()

    threads = [threading.Thread(target=guarded, args=(reader,)) for _ in range(5)]
    threads += [threading.Thread(target=guarded, args=(toggler, f"cc{i}")) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []


# -- systemd, socket mode, TCP+TLS -------------------------------------------------------------


def test_sd_notify_ready_and_stopping(short_tmp: Path) -> None:
    """With NOTIFY_SOCKET set, READY=1 after listening and STOPPING=1 on SIGTERM."""
    notify_path = short_tmp / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    d = DaemonProcess(short_tmp)
    try:
        d.start(env={**cli_env(), "NOTIFY_SOCKET": str(notify_path)}, wait=False)
        ready = notify.recv(1024).decode()
        assert ready.startswith("READY=1\nMAINPID=")
        assert http(d.socket, "GET", "/_ping")[2] == b"OK"
        assert oct(d.socket.stat().st_mode & 0o777) == "0o660"
        d.stop()
        assert notify.recv(1024) == b"STOPPING=1"
    finally:
        d.stop()
        notify.close()


def test_tcp_needs_tls(short_tmp: Path) -> None:
    """-H tcp:// without --tlsverify is refused; nothing listens."""
    d = DaemonProcess(short_tmp)
    d.start("-H", "tcp://127.0.0.1:0", wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=60) == 1
    assert "refusing to listen on tcp://127.0.0.1:0 without TLS" in d.log.read_text()


def _ping_without_client_certificate(port: int, ca: str) -> None:
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", port))
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        if not conn.recv(100):
            raise ConnectionError("closed without an answer")


def _certs(where: Path) -> dict[str, str]:
    where.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=pk-ca")  # fmt: skip
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
            "-subj", f"/CN={'localhost' if who == 'server' else 'client'}")  # fmt: skip
        ext = where / f"{who}.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if who == "server" else
            "extendedKeyUsage=clientAuth\n"
        )  # fmt: skip
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "1",
            "-extfile", f"{who}.ext")  # fmt: skip
    names = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    return {k: str(where / k) for k in names}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tcp_with_tls_requires_a_client_certificate(short_tmp: Path) -> None:
    """--tlsverify: a client with a CA-signed certificate is served, one without is refused."""
    import ssl

    certs = _certs(short_tmp / "certs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = DaemonProcess(short_tmp)
    tls = ["--tlsverify", "--tlscacert", certs["ca.pem"], "--tlscert", certs["server.pem"],
           "--tlskey", certs["server.key"]]  # fmt: skip
    d.start(*tls, "-H", f"tcp://127.0.0.1:{port}", wait=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        client_tls = ["--tlsverify", "--tlscacert", certs["ca.pem"], "--tlscert",
                      certs["client.pem"], "--tlskey", certs["client.key"]]  # fmt: skip
        out = d.cli("-H", f"tcp://127.0.0.1:{port}", *client_tls, "ls")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _ping_without_client_certificate(port, certs["ca.pem"])
        plain = d.cli("-H", f"tcp://127.0.0.1:{port}", "ls")
        assert plain.returncode == 1
        assert "the daemon requires TLS" in plain.stderr
    finally:
        d.stop()


def test_the_systemd_unit_is_shipped_and_notifies() -> None:
    """The package ships a unit: Type=notify, only the daemon is killed on stop."""
    import configparser

    import pluginkit.daemon

    unit = Path(pluginkit.daemon.__file__).parent / "pluginkit.service"
    parser = configparser.ConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify"
    assert service["KillMode"] == "process"
    assert service["ExecStart"].endswith("pluginkit daemon")
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_install_and_privileges_go_through_the_daemon(
    daemon: DaemonProcess, plugin_dir: Path
) -> None:
    """install/privileges of a local directory work while the daemon holds the root."""
    privileges = daemon.cli("privileges", str(plugin_dir))
    assert (privileges.returncode, privileges.stdout) == (0, " - network: [host]\n")
    refused = daemon.cli("install", str(plugin_dir), "--alias", "inst")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f'Error: plugin "{plugin_dir}" requests privileges and there is no terminal '
        f"to ask; review them with 'pluginkit privileges {plugin_dir}' "
        "and pass --grant-all-permissions"
    )
    grant = "--grant-all-permissions"
    out = daemon.cli("install", str(plugin_dir), "--alias", "inst", grant, "DEBUG=3")
    assert (out.returncode, out.stdout) == (0, f"Installed plugin {plugin_dir}\n")
    record = json.loads(daemon.cli("inspect", "inst").stdout)[0]
    assert record["Enabled"] is True
    assert record["Settings"]["Env"] == ["DEBUG=3", "LINES=0"]
    bad = daemon.cli("install", str(plugin_dir), "--alias", "inst2", grant, "NOPE=1")
    assert bad.returncode == 1
    assert daemon.cli("inspect", "inst2").returncode == 1  # removed again


def test_call_of_a_legacy_plugin_needs_no_engine(short_tmp: Path) -> None:
    """No daemon and no Docker engine: call still finds a legacy plugin."""
    import sys

    from pluginkit.sdk import PluginServer

    sockets = short_tmp / "sockets"
    sockets.mkdir()
    server = PluginServer(implements=["VolumeDriver"])
    server.add_handler("VolumeDriver.List", lambda request: {"Volumes": []})
    server.start(str(sockets / "old.sock"))
    try:
        env = {**cli_env(), "PLUGINKIT_RUNTIME": "docker", "DOCKER_HOST": "unix:///nonexistent"}
        command = [sys.executable, "-m", "pluginkit", "--root", str(short_tmp / "root"),
                   "--run-root", str(short_tmp / "r"), "--debug", "call", "--socket-dir",
                   str(sockets), "--spec-dir", str(short_tmp),
                   "old", "VolumeDriver.List"]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"Volumes": []}
        assert "cannot reach the Docker engine" in out.stderr  # said in --debug
        assert "looking up legacy plugins only" in out.stderr
    finally:
        server.stop()


def test_connections_past_the_limit_get_503_and_others_still_work(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedded Daemon: idle connections use up the slots; the next gets 503, then room."""
    from pluginkit.daemon import Daemon, _server
    from pluginkit.runtime import ProcessRuntime

    monkeypatch.setattr(_server, "MAX_CONNECTIONS", 2)
    runtime = ProcessRuntime()
    daemon = Daemon(short_tmp / "root", run_root=short_tmp / "r", runtime=runtime, legacy=None)
    with daemon:
        path = short_tmp / "r" / "pluginkit.sock"
        assert daemon.addresses == [f"unix://{path}"]
        idle = []
        for _ in range(2):
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(path))
            idle.append(conn)
        time.sleep(0.2)
        status, _, body = http(path, "GET", "/_ping")
        assert (status, json.loads(body)) == (
            503,
            {"message": "too many connections to the pluginkit daemon"},
        )
        idle.pop().close()
        deadline = time.monotonic() + 10
        while http(path, "GET", "/_ping")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for conn in idle:
            conn.close()
    runtime.close()
    assert not path.exists()


def test_one_daemon_per_root(daemon: DaemonProcess, short_tmp: Path) -> None:
    """A second daemon on the same root fails, naming the process that holds it."""
    second = DaemonProcess(short_tmp)
    second.log = short_tmp / "second.log"
    second.run_root = short_tmp / "r2"
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=60) == 1
    assert daemon.proc is not None
    assert f"process {daemon.proc.pid}" in second.log.read_text()
    assert http(daemon.socket, "GET", "/_ping")[2] == b"OK"


def test_the_cli_path_to_the_daemon_stays_light(daemon: DaemonProcess, plugin_dir: Path) -> None:
    """ls through the daemon imports none of the manager, attrs, cattrs, docker, logging..."""
    import sys

    daemon.cli("create", "light", str(plugin_dir))
    heavy = [
        "attr", "cattrs", "docker", "requests", "pluginkit._manager", "pluginkit._client",
        "pluginkit._config", "pluginkit.distribution", "pluginkit.runtime", "http.client",
        "logging",
    ]  # fmt: skip
    code = (
        "import sys\n"
        "from pluginkit.cli import main\n"
        f"status = main(['--root', {str(daemon.root)!r}, '--run-root', {str(daemon.run_root)!r},"
        " 'ls', '-q'])\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=False
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 1
    assert out.stderr == "[]\n"


def _wakeups(thread: threading.Thread) -> int:
    """How many times ``thread`` has gone to sleep and been woken (voluntary switches)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def test_an_idle_daemon_sleeps_and_stops_at_once(short_tmp: Path) -> None:
    """The listeners' threads sleep until a connection comes, and stop() wakes them: with
    socketserver's polling loop each woke twice a second, and a stop waited for each in
    turn (0.95 s with two listeners)."""
    from pluginkit.daemon import Daemon
    from pluginkit.testing import FakeRuntime

    runtime = FakeRuntime()
    sockets = [short_tmp / "a.sock", short_tmp / "b.sock"]
    daemon = Daemon(
        short_tmp / "root",
        run_root=short_tmp / "r",
        runtime=runtime,
        hosts=[f"unix://{path}" for path in sockets],
        legacy=None,
    )
    daemon.start()
    try:
        for path in sockets:
            assert http(path, "GET", "/_ping")[0] == 200
        time.sleep(0.2)  # the handler threads of those pings are gone
        before = [_wakeups(thread) for thread in daemon._threads]
        time.sleep(2.0)
        assert [_wakeups(thread) for thread in daemon._threads] == before
        assert http(sockets[1], "GET", "/_ping")[0] == 200  # still serving
    finally:
        stopper = threading.Thread(target=daemon.stop)
        stopper.start()
        stopper.join(30)
        runtime.shutdown()
    assert not stopper.is_alive()
    assert not any(thread.is_alive() for thread in daemon._threads)
    assert not any(path.exists() for path in sockets)


def test_stop_after_a_failed_start_returns(short_tmp: Path) -> None:
    """start() fails at its second listener (its directory is a file) after making the
    first: a stop() then returns, where waiting for a listener loop that never ran hung."""
    from pluginkit.daemon import Daemon
    from pluginkit.testing import FakeRuntime

    (short_tmp / "file").write_text("")
    runtime = FakeRuntime()
    daemon = Daemon(
        short_tmp / "root",
        run_root=short_tmp / "r",
        runtime=runtime,
        hosts=[f"unix://{short_tmp / 'a.sock'}", f"unix://{short_tmp / 'file' / 'b.sock'}"],
        legacy=None,
    )
    try:
        with pytest.raises(FileExistsError) as info:
            daemon.start()
        assert info.value.filename == str(short_tmp / "file")
        stopper = threading.Thread(target=daemon.stop, daemon=True)
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive()
        assert not (short_tmp / "a.sock").exists()
    finally:
        runtime.shutdown()
