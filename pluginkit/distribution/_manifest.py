"""Manifests and indexes: Docker schema 2, manifest lists, OCI manifests and indexes.

A plugin image as ``docker plugin push`` writes it::

    manifest  application/vnd.docker.distribution.manifest.v2+json
    config    application/vnd.docker.plugin.v1+json   (the plugin's config.json,
              plus "rootfs": {"type": "layers", "diff_ids": [...]})
    layers    application/vnd.docker.image.rootfs.diff.tar.gzip

Moby's quirk: ``rootfs.diff_ids`` holds the digests of the *compressed*
layers (the blob digests), not of the uncompressed tars as images do; the
engine looks its layers up by them. pluginkit writes the same and, reading,
accepts either form.
"""

from __future__ import annotations

import json
import platform
from typing import Any

import attrs

from ._errors import BlobError, NotAPluginError

__all__ = [
    "ACCEPT",
    "PLUGIN_CONFIG",
    "Descriptor",
    "Manifest",
    "build_manifest",
    "parse_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_TYPES = frozenset(
    {
        DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    }
)
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])

MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20


@attrs.frozen
class Descriptor:
    """A content descriptor: media type, digest and size (and a platform in an index)."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (``mediaType``, ``digest``, ``size``)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@attrs.frozen
class Manifest:
    """A parsed manifest (``config`` and ``layers``) or index (``manifests``)."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        """Whether this is a manifest list or OCI index."""
        return self.media_type in INDEX_TYPES


def _descriptor(data: Any, where: str) -> Descriptor:
    if not isinstance(data, dict):
        raise BlobError(f"{where}: expected an object, got {type(data).__name__}")
    media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise BlobError(f"{where}: bad digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BlobError(f"{where}: bad size {size!r}")
    plat = data.get("platform")
    return Descriptor(str(media_type or ""), digest, size, plat if isinstance(plat, dict) else None)


def parse_manifest(body: bytes, content_type: str, ref: str) -> Manifest:
    """Parse a manifest or index fetched for ``ref``.

    Raises:
        BlobError: not JSON, or not a manifest.
        NotAPluginError: a schema 1 manifest or anything else that cannot
            hold a plugin config.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BlobError(f"manifest of {ref} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BlobError(f"manifest of {ref} is not a JSON object")
    media_type = data.get("mediaType") or content_type.split(";")[0].strip()
    if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
        if "manifests" in data:
            media_type = OCI_INDEX
        elif "config" in data:
            media_type = OCI_MANIFEST
        else:
            raise NotAPluginError(f"did not find plugin config for specified reference {ref}")
    if media_type in INDEX_TYPES:
        items = data.get("manifests")
        if not isinstance(items, list):
            raise BlobError(f"index of {ref} has no manifests list")
        return Manifest(
            media_type,
            None,
            (),
            tuple(_descriptor(m, f"index of {ref}, manifests[{i}]") for i, m in enumerate(items)),
        )
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise BlobError(f"manifest of {ref} has no layers list")
    return Manifest(
        media_type,
        _descriptor(data.get("config"), f"manifest of {ref}, config"),
        tuple(_descriptor(x, f"manifest of {ref}, layers[{i}]") for i, x in enumerate(layers)),
        (),
    )


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


def pick_from_index(index: Manifest, ref: str) -> Descriptor:
    """Choose the entry of an index for this machine (``linux``/host arch), or its only entry."""
    manifests = [m for m in index.manifests if m.media_type in MANIFEST_TYPES or not m.media_type]
    if not manifests:
        raise NotAPluginError(f"did not find plugin config for specified reference {ref}")
    arch = _host_arch()
    for m in manifests:
        plat = m.platform or {}
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return m
    for m in manifests:
        if not m.platform:
            return m
    if len(manifests) == 1:
        return manifests[0]
    raise NotAPluginError(
        f"did not find plugin config for specified reference {ref}: no manifest for linux/{arch}"
    )


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """Return the schema 2 manifest ``docker plugin push`` writes (same key order)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "config": config.to_json(),
            "layers": [x.to_json() for x in layers],
            "mediaType": DOCKER_MANIFEST,
        },
        separators=(",", ":"),
    ).encode()
