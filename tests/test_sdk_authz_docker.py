"""A second, private dockerd started with --authorization-plugin asks a pluginkit AuthzPlugin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.sdk import AuthzPlugin, PluginServer, authz
from tests._dockerd import private_dockerd as private_engine

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
    name, _ = plugin
    with private_engine(short_tmp, f"--authorization-plugin={name}") as client:
        yield client


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


class Failing(AuthzPlugin):
    """Answers every request but ``/_ping`` (the start-up probe) with an error."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow

    def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
        if request.request_uri.endswith("/_ping"):
            return authz.AuthzResponse(allow=True)
        return authz.AuthzResponse(allow=self.allow, msg="ignored", err="policy store unreachable")


@pytest.mark.parametrize("allow", [True, False])
def test_engine_refuses_when_the_verdict_has_err(
    allow: bool, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verdict with err reaches the engine as an error (HTTP 500): refused, message kept."""
    import docker

    monkeypatch.delenv("PLUGINKIT_SOCKET_DIR", raising=False)
    monkeypatch.delenv("PLUGINKIT_SOCKET", raising=False)
    name = f"pk-authz-{secrets.token_hex(4)}"
    server = Failing(allow).server(name=name)
    server.start()
    try:
        with (
            private_engine(short_tmp, f"--authorization-plugin={name}") as engine,
            pytest.raises(docker.errors.APIError) as info,
        ):
            engine.version()
    finally:
        server.stop()
        (SOCKET_DIR / f"{name}.sock").unlink(missing_ok=True)
    assert info.value.status_code == 500
    assert info.value.explanation == (
        f"plugin {name} failed with error: AuthZPlugin.AuthZReq: policy store unreachable"
    )
