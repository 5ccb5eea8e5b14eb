"""Fetch a plugin from a registry: manifest, config (for privileges), then the layers."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

import attrs

from .._config import PluginConfig, parse_config
from .._errors import InstallLimitError, InvalidConfigError
from .._install_limits import Budget, InstallLimits
from ._blobs import Progress, ProgressEvent, VerifyingReader, no_progress, short
from ._errors import BlobError, LayerError, NotAPluginError, RegistryError, RegistryNotFoundError
from ._layer import apply_layer
from ._manifest import (
    ACCEPT,
    DOCKER_LAYER_GZIP,
    LAYER_TYPES,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    PLUGIN_CONFIG,
    Descriptor,
    Manifest,
    parse_manifest,
    pick_from_index,
)
from ._ref import RegistryReference
from ._transport import RegistrySession

__all__ = ["Fetched", "Puller", "blob_config"]


@attrs.frozen
class Fetched:
    """What a pull learnt before downloading layers."""

    reference: RegistryReference
    manifest_digest: str
    manifest: Manifest
    config: PluginConfig
    config_blob: bytes


def blob_config(blob: bytes, what: str) -> PluginConfig:
    """Parse a plugin config blob (Docker's config.json plus ``rootfs``)."""
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError) as exc:
        raise BlobError(f"{what} is not valid JSON: {exc}") from None
    try:
        return parse_config(data, source=what)
    except InvalidConfigError as exc:
        raise BlobError(f"{what} is not a valid plugin config: {exc}") from None


class Puller:
    """Pull one reference: :meth:`fetch_config` first (privileges), then :meth:`fetch_rootfs`."""

    def __init__(
        self,
        ref: RegistryReference,
        progress: Progress | None = None,
        limits: InstallLimits | None = None,
    ) -> None:
        self.ref = ref
        self.limits = limits or InstallLimits()
        self.progress = progress or no_progress
        self.session = RegistrySession(ref.host, ref.domain, ref.path)

    def close(self) -> None:
        """Close the registry connections."""
        self.session.close()

    def __enter__(self) -> Puller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        return f"{self.ref} (registry {self.ref.host})"

    def _get_manifest(self, obj: str) -> tuple[bytes, str, str]:
        response = self.session.request(
            "GET", f"/v2/{self.ref.path}/manifests/{obj}", headers={"Accept": ACCEPT}, stream=True
        )
        with response:
            if response.status_code == 404:
                raise RegistryNotFoundError(f"{self._where()}: not found")
            if response.status_code != 200:
                raise RegistryError(
                    f"registry {self.ref.host} answered {response.status_code} for the manifest "
                    f"of {self.ref}: {response.text[:300].strip()}"
                )
            body = response.raw.read(MAX_MANIFEST_SIZE + 1)
            if len(body) > MAX_MANIFEST_SIZE:
                raise BlobError(
                    f"manifest of {self.ref} is larger than the limit of {MAX_MANIFEST_SIZE} bytes"
                )
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if obj.startswith("sha256:") and digest != obj:
                raise BlobError(f"digest mismatch for manifest {obj} of {self.ref}: got {digest}")
            return body, response.headers.get("Content-Type", ""), digest

    def fetch_config(self) -> Fetched:
        """Resolve the reference to a plugin manifest and read its config.

        Raises:
            RegistryNotFoundError: unknown repository or tag.
            NotAPluginError: ``did not find plugin config for specified reference REF``.
            BlobError: bad JSON, digest mismatch.
        """
        self.progress(ProgressEvent("resolve", str(self.ref)))
        body, ctype, digest = self._get_manifest(self.ref.object)
        manifest = parse_manifest(body, ctype, str(self.ref))
        if manifest.is_index:
            chosen = pick_from_index(manifest, str(self.ref))
            body, ctype, digest = self._get_manifest(chosen.digest)
            manifest = parse_manifest(body, ctype, str(self.ref))
            if manifest.is_index:
                raise NotAPluginError(
                    f"did not find plugin config for specified reference {self.ref}"
                )
        config = manifest.config
        if config is None or config.media_type != PLUGIN_CONFIG:
            raise NotAPluginError(f"did not find plugin config for specified reference {self.ref}")
        for i, layer in enumerate(manifest.layers):
            if layer.media_type not in LAYER_TYPES:
                raise BlobError(
                    f"manifest of {self.ref}, layers[{i}]: unsupported layer type "
                    f"{layer.media_type!r}"
                )
        if config.size > MAX_CONFIG_SIZE:
            raise BlobError(
                f"plugin config {config.digest} of {self.ref} is larger than the limit of "
                f"{MAX_CONFIG_SIZE} bytes"
            )
        self.progress(ProgressEvent("config", short(config.digest)))
        blob = self._read_blob(config, f"plugin config {config.digest} of {self.ref}")
        parsed = blob_config(blob, f"plugin config {config.digest} of {self.ref}")
        return Fetched(self.ref, digest, manifest, parsed, blob)

    def _open_blob(self, desc: Descriptor) -> Any:
        response = self.session.request(
            "GET", f"/v2/{self.ref.path}/blobs/{desc.digest}", stream=True
        )
        if response.status_code != 200:
            status = response.status_code
            response.close()
            if status == 404:
                raise RegistryNotFoundError(f"blob {desc.digest} of {self._where()}: not found")
            raise RegistryError(
                f"registry {self.ref.host} answered {status} for blob {desc.digest} of {self.ref}"
            )
        return response

    def _read_blob(self, desc: Descriptor, what: str) -> bytes:
        with self._open_blob(desc) as response:
            reader = VerifyingReader(response.raw, desc.digest, desc.size, what)
            data = reader.read(desc.size + 1)
            while len(data) < desc.size:
                more = reader.read(desc.size + 1 - len(data))
                if not more:
                    break
                data += more
            reader.finish()
            return data

    def fetch_rootfs(self, fetched: Fetched, rootfs: Path) -> None:
        """Download and unpack every layer into ``rootfs`` (created), each verified as it streams.

        Raises:
            BlobError: digest mismatch, truncated or invalid layer.
            LayerError: an unsafe member or a rootfs past the size limit.
        """
        rootfs.mkdir(mode=0o755)
        budget = Budget(self.limits, str(self.ref), os.fspath(rootfs))
        for layer in fetched.manifest.layers:
            sid = short(layer.digest)
            what = f"layer {layer.digest} of {self.ref}"
            with self._open_blob(layer) as response:
                self.progress(ProgressEvent("download", sid, 0, layer.size))

                def on_bytes(n: int, sid: str = sid, total: int = layer.size) -> None:
                    self.progress(ProgressEvent("download", sid, n, total))

                reader = VerifyingReader(
                    response.raw, layer.digest, layer.size, what, on_bytes=on_bytes
                )
                unpack_layer(reader, layer.media_type, rootfs, what, budget)
            self.progress(ProgressEvent("downloaded", sid, layer.size, layer.size))


def unpack_layer(
    reader: VerifyingReader, media_type: str, rootfs: Path, what: str, budget: Budget
) -> None:
    """Unpack a verified-while-streaming layer; the digest is checked before any tar error."""
    compressed = media_type.endswith("gzip") or media_type == DOCKER_LAYER_GZIP
    try:
        apply_layer(reader, compressed, rootfs, what, budget)  # type: ignore[arg-type]
    except (LayerError, InstallLimitError):
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        try:
            reader.finish()
        except BlobError as blob_exc:
            raise blob_exc from None
        raise BlobError(f"{what} is not a valid layer: {exc}") from None
    reader.finish()
