"""Registry credentials and tokens, the way Docker finds and uses them.

Credentials come from Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``,
else ``~/.docker/config.json``): ``auths``, ``credsStore`` and ``credHelpers``,
read by the docker SDK's own :mod:`docker.auth` code, credential helpers
included. A registry's ``401`` challenge decides the scheme:

* ``Basic`` - the credentials go with every request;
* ``Bearer realm=…,service=…,scope=…`` - a token is fetched from the realm:
  with credentials by the POST oauth2 form Docker's resolver uses
  (``grant_type=password`` or ``refresh_token`` for an identity token),
  falling back to a GET with basic auth when the server has no POST
  endpoint (404/405); anonymously by a GET.
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs

__all__ = ["Challenge", "Credentials", "config_path", "find_credentials", "parse_challenge"]

_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@attrs.frozen
class Credentials:
    """A user name and password, or an identity (refresh) token."""

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    identity_token: str = attrs.field(default="", repr=False)


@attrs.frozen
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="…",service="…"`` (or ``Basic realm=…``); None when empty."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace(
            '\\"', '"'
        )
        for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def config_path() -> str:
    """Where Docker's client configuration is read from (whether or not it exists)."""
    from docker.utils.config import find_config_file

    found = find_config_file()
    if found:
        return str(found)
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def find_credentials(domain: str) -> Credentials | None:
    """Credentials for a registry (``docker.io`` for Docker Hub) from Docker's config, or None.

    A credential helper that fails is treated as "no credentials" (the
    registry's 401 then says where they are read from).
    """
    import docker.auth
    import docker.errors

    try:
        config = docker.auth.load_config()
        found: dict[str, Any] | None = docker.auth.resolve_authconfig(config, registry=domain)
    except (docker.errors.DockerException, OSError, ValueError):
        return None
    if not found:
        return None
    username = str(found.get("Username") or found.get("username") or "")
    password = str(found.get("Password") or found.get("password") or "")
    token = str(found.get("IdentityToken") or found.get("identitytoken") or "")
    if not (username or token):
        return None
    return Credentials(username, password, token)
