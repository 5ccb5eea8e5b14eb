"""Registry credentials for the agents: the caller's, for the registries the fleet uses.

The agents install plugins from registries that may want a login. ``fleet
apply`` reads, the way Docker's CLI does (``~/.docker/config.json`` or
``$DOCKER_CONFIG``, with ``auths``, ``credsStore`` and ``credHelpers``), the
credentials for each registry named by a plugin reference, and hands them to
the agents as a Swarm *secret*: a minimal ``config.json`` mounted at
``/run/secrets/docker/config.json`` with ``DOCKER_CONFIG`` pointing there, so
the agents' registry client reads it as any Docker client would. Only those
registries' entries are sent, and never through anything but Swarm's
encrypted secret store. Nothing is sent when there are none.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ._spec import FleetSpec

__all__ = ["SECRET_DIR", "agent_docker_config"]

SECRET_DIR = "docker"
"""Where the secret lands under ``/run/secrets`` (the agent's ``DOCKER_CONFIG``)."""


def agent_docker_config(spec: FleetSpec, *, docker_config: Any = None) -> bytes | None:
    """Return the ``config.json`` the agents need for ``spec``'s registries, or ``None``.

    Args:
        spec: The fleet spec; its plugin references name the registries.
        docker_config: A ``docker.auth.AuthConfig`` (default: the caller's,
            loaded as the Docker CLI loads it).
    """
    import docker.auth

    from ..distribution import parse_registry_reference

    config = docker_config if docker_config is not None else docker.auth.load_config()
    auths: dict[str, dict[str, str]] = {}
    for plugin in spec.plugins.values():
        registry = parse_registry_reference(plugin.reference).domain
        found = docker.auth.resolve_authconfig(config, registry)
        if not found:
            continue
        # docker-py spells a login username/password, a token IdentityToken.
        entry: dict[str, str] = {}
        token = found.get("IdentityToken") or found.get("identitytoken")
        if token:
            entry["identitytoken"] = str(token)
        user = found.get("username", found.get("Username"))
        password = found.get("password", found.get("Password"))
        if user and password is not None:
            entry["auth"] = base64.b64encode(f"{user}:{password}".encode()).decode()
        if entry:
            # Docker Hub's entry goes under the key Docker's clients use.
            auths[docker.auth.INDEX_URL if registry == "docker.io" else registry] = entry
    if not auths:
        return None
    return json.dumps({"auths": auths}, sort_keys=True).encode()
