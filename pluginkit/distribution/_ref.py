"""Registry references: Docker's grammar with a digest allowed, and Docker Hub's normalisation.

``vieux/sshfs`` is ``docker.io/vieux/sshfs:latest``, pulled from
``registry-1.docker.io``; ``foo`` is ``docker.io/library/foo:latest``;
``localhost:5000/team/p:1`` and ``host/p@sha256:…`` keep their registry.
"""

from __future__ import annotations

import json
import re
from typing import NoReturn

import attrs

from .._errors import InvalidReferenceError
from .._reference import (
    _NAME_TOTAL_LENGTH_MAX,
    _PLUGIN_ID_RE,
    _REFERENCE_RE,
    DEFAULT_DOMAIN,
    DEFAULT_TAG,
    _familiar,
    _split_domain,
)

__all__ = ["RegistryReference", "parse_registry_reference"]

HUB_HOST = "registry-1.docker.io"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)


@attrs.frozen
class RegistryReference:
    """A normalised registry reference.

    Attributes:
        domain: the registry as named (``docker.io``, ``localhost:5000``).
        path: the repository path (``library/foo``, ``team/p``).
        tag: the tag (``latest`` when neither a tag nor a digest was given;
            empty when only a digest was).
        digest: ``sha256:…`` or empty.
    """

    domain: str
    path: str
    tag: str = DEFAULT_TAG
    digest: str = ""

    @property
    def host(self) -> str:
        """The host:port to talk HTTP to (Docker Hub's is ``registry-1.docker.io``)."""
        return HUB_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def name(self) -> str:
        """The full repository name, ``domain/path``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Docker's familiar name (``vieux/sshfs``, ``foo``, ``localhost:5000/p``)."""
        return _familiar(self.name)

    @property
    def object(self) -> str:
        """What to ask the manifests endpoint for: the digest if any, else the tag."""
        return self.digest or self.tag

    def local_name(self) -> str:
        """Return the name a plugin installed from here gets: familiar name and tag."""
        return f"{self.familiar_name}:{self.tag or DEFAULT_TAG}"

    def with_tag(self, tag: str) -> RegistryReference:
        """Return this repository at another tag (no digest)."""
        return RegistryReference(self.domain, self.path, tag, "")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_registry_reference(ref: str) -> RegistryReference:
    """Parse ``ref`` as Docker does for ``docker plugin install``.

    Raises:
        InvalidReferenceError: ``ref`` does not follow Docker's grammar, is a
            64-hex id, or carries a digest other than a sha256 one.
    """
    if not isinstance(ref, str):
        raise InvalidReferenceError(f"failed to parse reference {ref!r}: expected a string")
    if _PLUGIN_ID_RE.fullmatch(ref):
        _fail(ref, f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(ref)
    repository = remainder.split("@", 1)[0].split(":", 1)[0]
    if repository.lower() != repository:
        _fail(ref, "invalid reference format: repository name must be lowercase")
    match = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        _fail(ref, "invalid reference format")
    name = match["name"]
    if len(name) > _NAME_TOTAL_LENGTH_MAX:
        _fail(ref, f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters")
    digest = match["digest"] or ""
    if digest and not _DIGEST_RE.fullmatch(digest):
        _fail(ref, "unsupported digest algorithm (only sha256 with 64 lower-case hex digits)")
    tag = match["tag"] or ("" if digest else DEFAULT_TAG)
    domain_part, _, path = name.partition("/")
    return RegistryReference(domain_part, path, tag, digest)


def _fail(ref: str, reason: str) -> NoReturn:
    raise InvalidReferenceError(
        f"failed to parse reference {json.dumps(ref, ensure_ascii=False)}: {reason}"
    )
