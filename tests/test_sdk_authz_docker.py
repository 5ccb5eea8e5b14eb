"""A second, private dockerd started with --authorization-plugin asks a pluginkit AuthzPlugin."""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.sdk import AuthzPlugin, PluginServer, authz
from tests._sdk_helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SOCKET_DIR = Path("/run/docker/plugins")


class DenyInfo(AuthzPlugin):
    """Allows everything but GET /info, and records what the engine asked."""

    def __init__(self) -> None:
        self.requests: list[authz.AuthzRequest] = []
        self.responses: list[authz.AuthzRequest] = []

    def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        self.requests.append(request)
        if request.request_method == "GET" and request.request_uri.endswith("/info"):
            return authz.AuthzResponse(allow=False, msg="info is secret")
        return authz.AuthzResponse(allow=True)

    def authz_response(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        self.responses.append(request)
        return authz.AuthzResponse(allow=True)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, DenyInfo]]:
    monkeypatch.delenv("PLUGINKIT_SOCKET_DIR", raising=False)
    monkeypatch.delenv("PLUGINKIT_SOCKET", raising=False)
    name = f"pk-authz-{secrets.token_hex(4)}"
    driver = DenyInfo()
    server: PluginServer = driver.server(name=name)
    server.start()
    try:
        yield name, driver
    finally:
        server.stop()
        (SOCKET_DIR / f"{name}.sock").unlink(missing_ok=True)


@pytest.fixture
def private_dockerd(plugin: tuple[str, DenyInfo], short_tmp: Path) -> Iterator[Any]:
    import docker

    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("dockerd is not installed")
    name, _ = plugin
    sock = short_tmp / "d.sock"
    log = (short_tmp / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            dockerd,
            f"--authorization-plugin={name}",
            f"--host=unix://{sock}",
            f"--data-root={short_tmp / 'data'}",
            f"--exec-root={short_tmp / 'x'}",
            f"--pidfile={short_tmp / 'd.pid'}",
            "--storage-driver=vfs",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = None
    try:
        client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=60)

        def up() -> bool:
            if proc.poll() is not None:
                return True
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(5)
                probe.connect(str(sock))
                probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return probe.recv(64).startswith(b"HTTP/1.0 200")
            except OSError:
                return False
            finally:
                probe.close()

        wait_for(up, timeout=90)
        if proc.poll() is not None:
            log.flush()
            pytest.fail(
                "the private dockerd exited:\n" + (short_tmp / "dockerd.log").read_text()[-3000:]
            )
        yield client
    finally:
        if client is not None:
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _unmount_under(short_tmp)
        shutil.rmtree(short_tmp / "data", ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Undo mounts dockerd left under ``root`` (it bind-mounts its data root onto itself)."""
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4]
            if point == str(root) or point.startswith(f"{root}/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def test_engine_asks_authz_plugin(private_dockerd: Any, plugin: tuple[str, DenyInfo]) -> None:
    """The engine asks AuthZReq/AuthZRes; a denial reaches the API user with the plugin's text."""
    import docker

    name, driver = plugin
    assert private_dockerd.version()["Version"]
    with pytest.raises(docker.errors.APIError) as info:
        private_dockerd.info()
    assert info.value.status_code == 403
    assert f"authorization denied by plugin {name}: info is secret" in str(info.value)
    uris = [(r.request_method, r.request_uri) for r in driver.requests]
    assert any(m == "GET" and u.endswith("/version") for m, u in uris)
    assert any(m == "GET" and u.endswith("/info") for m, u in uris)
    assert any(
        r.request_uri.endswith("/version") and r.response_status_code == 200
        for r in driver.responses
    )
