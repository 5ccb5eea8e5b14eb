"""Which registry credentials the fleet hands to its agents (a Swarm secret's content)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import docker.auth
import pytest

from pluginkit.fleet import AgentSpec, FleetPlugin, FleetSpec
from pluginkit.fleet._credentials import agent_docker_config


def spec(*references: str) -> FleetSpec:
    plugins = {f"p{i}": FleetPlugin(f"p{i}", ref) for i, ref in enumerate(references)}
    return FleetSpec(AgentSpec("reg:5000/agent:1"), plugins)


def config(tmp_path: Path, data: dict[str, object]) -> docker.auth.AuthConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return docker.auth.load_config(str(path))


def test_only_the_fleets_registries_are_sent(tmp_path: Path) -> None:
    """Entries for registries the plugins use go; others stay on the caller's machine."""
    secret = base64.b64encode(b"alice:s3cret").decode()
    other = base64.b64encode(b"bob:nope").decode()
    auth = config(
        tmp_path,
        {"auths": {"reg.example:5000": {"auth": secret}, "elsewhere:443": {"auth": other}}},
    )
    data = agent_docker_config(spec("reg.example:5000/team/vol:1"), docker_config=auth)
    assert data is not None
    assert json.loads(data) == {"auths": {"reg.example:5000": {"auth": secret}}}


def test_docker_hub_goes_under_docker_s_own_key(tmp_path: Path) -> None:
    secret = base64.b64encode(b"alice:s3cret").decode()
    auth = config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": secret}}})
    data = agent_docker_config(spec("vieux/sshfs:1.2"), docker_config=auth)
    assert data is not None
    assert json.loads(data) == {"auths": {"https://index.docker.io/v1/": {"auth": secret}}}


def test_identity_tokens_are_kept(tmp_path: Path) -> None:
    auth = config(
        tmp_path, {"auths": {"reg.example:5000": {"auth": "", "identitytoken": "tok-123"}}}
    )
    data = agent_docker_config(spec("reg.example:5000/vol"), docker_config=auth)
    assert data is not None
    assert json.loads(data)["auths"]["reg.example:5000"]["identitytoken"] == "tok-123"


@pytest.mark.parametrize("data", [{}, {"auths": {"elsewhere:443": {"auth": "eDp5"}}}])
def test_nothing_is_sent_without_credentials(tmp_path: Path, data: dict[str, object]) -> None:
    assert (
        agent_docker_config(spec("reg.example:5000/vol"), docker_config=config(tmp_path, data))
        is None
    )
