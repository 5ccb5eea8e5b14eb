"""Plugin names: Docker's reference grammar, familiar form and default tag.

A managed plugin is stored under the name Docker would store it under:
``FamiliarString(TagNameOnly(ParseNormalizedNamed(x)))``. So ``vieux/sshfs``
becomes ``vieux/sshfs:latest``, ``docker.io/library/foo`` becomes
``foo:latest`` and ``localhost:5000/p`` becomes ``localhost:5000/p:latest``.

The grammar (from Docker's ``distribution/reference``):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host-component ( "." host-component )* [ ":" port ]
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

Path components are lower case and can neither be empty nor start or end
with a separator, so a valid name never contains ``..``, an empty component,
a leading ``/``, a NUL or any other byte that could take a path somewhere
unexpected. Local plugin names may not carry a digest (Docker's
``canonical references are not permitted``).

Every failure raises :class:`~pluginkit.InvalidReferenceError` whose message
starts with ``failed to parse reference "<input>":`` followed by Docker's own
reason (``invalid reference format``,
``invalid reference format: repository name must be lowercase``,
``canonical references are not permitted``, ...).
"""

from __future__ import annotations

import functools
import json
import re
from typing import NoReturn

import attrs

from ._errors import InvalidReferenceError

__all__ = ["Reference", "is_plugin_id", "normalize_name", "parse_reference"]

DEFAULT_TAG = "latest"
DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_PREFIX = "library/"
_NAME_TOTAL_LENGTH_MAX = 255

# Docker's regular expressions, spelled out once. re.ASCII keeps \w to
# [A-Za-z0-9_] as in Go (Python's \w would accept any Unicode letter).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(
    rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII
)
_PLUGIN_ID_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)


@attrs.frozen
class Reference:
    """A parsed plugin name in Docker's familiar form, always with a tag.

    Attributes:
        name: the familiar repository name (``vieux/sshfs``, ``foo``,
            ``localhost:5000/p``), without the tag.
        tag: the tag, ``latest`` when the input had none.
    """

    name: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def parse_reference(ref: str) -> Reference:
    """Parse a plugin name the way Docker names plugins.

    Args:
        ref: a reference such as ``vieux/sshfs``, ``foo:1.0`` or
            ``docker.io/library/foo``.

    Returns:
        The familiar name and its tag (``latest`` when none was given).

    Raises:
        InvalidReferenceError: ``ref`` does not follow Docker's grammar, is a
            64-hex id, is longer than Docker allows, or carries a digest.
    """
    if not isinstance(ref, str):
        raise InvalidReferenceError(
            f"failed to parse reference {ref!r}: expected a string, got {type(ref).__name__}"
        )
    return _parse(ref)


# Lookups normalize the same few names over and over: remember the answers
# (a Reference is immutable; failures are not cached and are parsed again).
@functools.lru_cache(maxsize=4096)
def _parse(ref: str) -> Reference:
    if _PLUGIN_ID_RE.fullmatch(ref):
        _fail(
            ref,
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings",
        )
    domain, remainder = _split_domain(ref)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        _fail(ref, "invalid reference format: repository name must be lowercase")

    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.fullmatch(full)
    if match is None:
        if not ref:
            _fail(ref, "repository name must have at least one component")
        _fail(ref, "invalid reference format")
    name = match["name"]
    if len(name) > _NAME_TOTAL_LENGTH_MAX:
        _fail(ref, f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters")
    if match["digest"] is not None:
        _fail(ref, "canonical references are not permitted")
    return Reference(name=_familiar(name), tag=match["tag"] or DEFAULT_TAG)


def normalize_name(ref: str) -> str:
    """Return the name Docker stores a plugin under: familiar form plus tag.

    ``vieux/sshfs`` gives ``vieux/sshfs:latest``; ``docker.io/library/foo:1``
    gives ``foo:1``.

    Raises:
        InvalidReferenceError: as :func:`parse_reference`.
    """
    return str(parse_reference(ref))


def is_plugin_id(s: str) -> bool:
    """Tell whether ``s`` is a full plugin id: exactly 64 lower-case hex digits."""
    return isinstance(s, str) and _PLUGIN_ID_RE.fullmatch(s) is not None


def _split_domain(ref: str) -> tuple[str, str]:
    """Docker's ``splitDockerDomain``: the registry host, if any, and the rest."""
    head, slash, rest = ref.partition("/")
    if not slash or ("." not in head and ":" not in head and head != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, ref
    else:
        domain, remainder = head, rest
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _familiar(name: str) -> str:
    """Docker's ``FamiliarName``: drop ``docker.io/`` and a lone ``library/``."""
    domain, _, path = name.partition("/")
    if domain != DEFAULT_DOMAIN:
        return name
    if path.startswith(_OFFICIAL_REPO_PREFIX) and "/" not in path[len(_OFFICIAL_REPO_PREFIX) :]:
        return path[len(_OFFICIAL_REPO_PREFIX) :]
    return path


def _fail(ref: str, reason: str) -> NoReturn:
    # json.dumps quotes like Go's %q for the cases that matter (escapes
    # control characters, keeps the text readable).
    raise InvalidReferenceError(
        f"failed to parse reference {json.dumps(ref, ensure_ascii=False)}: {reason}"
    )
