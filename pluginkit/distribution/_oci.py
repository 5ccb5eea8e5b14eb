"""Offline bundles: a plugin as an OCI image layout in a tar (``save``), and back (``load``).

The archive holds exactly what a registry would: ``oci-layout``,
``index.json`` (one manifest, annotated with the plugin's full reference in
``io.containerd.image.name`` and its tag in ``org.opencontainers.image.ref.name``)
and ``blobs/sha256/…`` with the schema 2 manifest, the
``application/vnd.docker.plugin.v1+json`` config and the gzip layer that
``push`` would upload. Independent tools read it
(``skopeo copy oci-archive:FILE docker://HOST/REPO:TAG``).

``load`` checks every blob against its digest while it streams, refuses
members other than those three kinds, and installs through the manager's
staging directory like ``install``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._config import compute_privileges
from .._errors import InvalidConfigError, InvalidReferenceError
from .._install_limits import Budget
from .._reference import normalize_name
from ._blobs import Progress, ProgressEvent, VerifyingReader, no_progress, short
from ._errors import BlobError, NotAPluginError
from ._layercache import plugin_layer
from ._manifest import (
    INDEX_TYPES,
    LAYER_TYPES,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    PLUGIN_CONFIG,
    Descriptor,
    build_manifest,
    parse_manifest,
)
from ._pull import blob_config, unpack_layer
from ._push import config_blob

if TYPE_CHECKING:
    from .._install import Grant
    from .._manager import Manager
    from .._plugin import Plugin

__all__ = ["load", "save"]

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, _BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


def save(manager: Manager, name: str, file: str | os.PathLike[str]) -> str:
    """Write plugin ``name`` to ``file`` as an OCI layout tar; return the manifest digest.

    The file appears complete or not at all (written beside it, then renamed).
    """
    entry = manager._resolve(name)
    target = Path(file)
    manager._check_open()
    staging = manager._store.new_staging()
    try:
        layer, layer_path = plugin_layer(manager, entry.id, staging)
        config = config_blob(entry.config, [layer])
        cdesc = Descriptor(
            PLUGIN_CONFIG, "sha256:" + hashlib.sha256(config).hexdigest(), len(config)
        )
        manifest = build_manifest(cdesc, [layer])
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        tag = entry.name.rpartition(":")[2]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST_TYPE,
                    "digest": mdigest,
                    "size": len(manifest),
                    "annotations": {NAME_ANNOTATION: entry.name, REF_ANNOTATION: tag},
                }
            ],
        }
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or Path(".")
        )
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                    _add_bytes(tar, "index.json", json.dumps(index).encode())
                    for digest, data in ((mdigest, manifest), (cdesc.digest, config)):
                        _add_bytes(tar, f"blobs/sha256/{digest[7:]}", data)
                    info = tarfile.TarInfo(f"blobs/sha256/{layer.digest[7:]}")
                    info.size = layer.size
                    info.mode = 0o644
                    with open(layer_path, "rb") as blob:
                        tar.addfile(info, blob)
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return mdigest
    finally:
        manager._store.discard_staging(staging)


class _Bundle:
    """Random access to the blobs of an OCI layout tar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise BlobError(f"{path} is not an OCI image layout archive: {exc}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            self._index()
        except BaseException:
            self.tar.close()
            raise

    def _index(self) -> None:
        path = self.path
        for member in self.tar.getmembers():
            name = member.name.removeprefix("./")
            if name in ("", ".", "blobs", "blobs/sha256") and member.isdir():
                continue
            ok = name in ("oci-layout", "index.json") or (
                name.startswith("blobs/sha256/") and len(name) == 13 + 64
            )
            if not ok or not member.isreg():
                raise BlobError(
                    f"unexpected member {member.name!r} in {path}: an OCI layout holds only "
                    "oci-layout, index.json and blobs/sha256/<digest> files"
                )
            self.members[name] = member

    def close(self) -> None:
        self.tar.close()

    def open(self, digest: str) -> IO[bytes]:
        member = self.members.get(f"blobs/sha256/{digest.partition(':')[2]}")
        if member is None:
            raise BlobError(f"blob {digest} is missing from {self.path}")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def read_json(self, name: str, limit: int) -> Any:
        member = self.members.get(name)
        if member is None:
            raise BlobError(f"{self.path} has no {name}: not an OCI image layout archive")
        if member.size > limit:
            raise BlobError(f"{name} in {self.path} is larger than {limit} bytes")
        f = self.tar.extractfile(member)
        assert f is not None
        try:
            return json.loads(f.read())
        except (ValueError, RecursionError) as exc:
            raise BlobError(f"{name} in {self.path} is not valid JSON: {exc}") from None

    def read_blob(self, desc: Descriptor, what: str, limit: int) -> bytes:
        if desc.size > limit:
            raise BlobError(f"{what} is larger than the limit of {limit} bytes")
        reader = VerifyingReader(self.open(desc.digest), desc.digest, desc.size, what)
        data = reader.read(desc.size + 1)
        reader.finish()
        return data


def load(
    manager: Manager,
    file: str | os.PathLike[str],
    *,
    name: str | None,
    grant: Grant,
    progress: Progress | None = None,
) -> Plugin:
    """Install the plugin an OCI layout tar holds (see :meth:`Manager.load`)."""
    from .._install import check_grant

    report = progress or no_progress
    path = Path(file)
    if not path.is_file():
        raise InvalidConfigError(f"bundle {path} does not exist", path=os.fspath(path))
    bundle = _Bundle(path)
    try:
        where = str(path)
        index = parse_manifest(
            json.dumps(bundle.read_json("index.json", MAX_MANIFEST_SIZE)).encode(), OCI_INDEX, where
        )
        if not index.is_index or not index.manifests:
            raise NotAPluginError(f"did not find plugin config for specified reference {where}")
        chosen = index.manifests[0]
        annotations = _annotations(bundle, chosen.digest)
        body = bundle.read_blob(chosen, f"manifest {chosen.digest} in {where}", MAX_MANIFEST_SIZE)
        manifest = parse_manifest(body, chosen.media_type, where)
        if manifest.media_type in INDEX_TYPES or manifest.config is None:
            raise NotAPluginError(f"did not find plugin config for specified reference {where}")
        if manifest.config.media_type != PLUGIN_CONFIG:
            raise NotAPluginError(f"did not find plugin config for specified reference {where}")
        for layer in manifest.layers:
            if layer.media_type not in LAYER_TYPES:
                raise BlobError(f"{where}: unsupported layer type {layer.media_type!r}")
        cwhat = f"plugin config {manifest.config.digest} in {where}"
        config = blob_config(bundle.read_blob(manifest.config, cwhat, MAX_CONFIG_SIZE), cwhat)
        reference = annotations.get(NAME_ANNOTATION, "")
        if name is not None:
            full = normalize_name(name)
        elif reference:
            full = normalize_name(reference)
        else:
            raise InvalidReferenceError(
                f"{where} does not say the plugin's name: pass name= (--alias on the command line)"
            )
        manager._check_name_free(full)
        check_grant(compute_privileges(config), grant)

        def fill(dst: Path) -> None:
            rootfs = dst / "rootfs"
            rootfs.mkdir(mode=0o755)
            budget = Budget(manager.install_limits, where, os.fspath(rootfs))
            for layer in manifest.layers:
                what = f"layer {layer.digest} in {where}"
                report(ProgressEvent("download", short(layer.digest), 0, layer.size))
                reader = VerifyingReader(bundle.open(layer.digest), layer.digest, layer.size, what)
                unpack_layer(reader, layer.media_type, rootfs, what, budget)
                report(ProgressEvent("downloaded", short(layer.digest), layer.size, layer.size))
            with open(dst / "distribution.json", "w", encoding="utf-8") as f:
                json.dump({"ManifestDigest": chosen.digest}, f)
                f.flush()
                os.fsync(f.fileno())

        entry = manager._add(full, config, reference=reference or full, fill=fill)
    finally:
        bundle.close()
    manager._prepare(entry)
    manager._emit(entry, "install")
    return entry.plugin


def _annotations(bundle: _Bundle, digest: str) -> dict[str, str]:
    data = bundle.read_json("index.json", MAX_MANIFEST_SIZE)
    for item in data.get("manifests", []) if isinstance(data, dict) else []:
        if isinstance(item, dict) and item.get("digest") == digest:
            found = item.get("annotations")
            if isinstance(found, dict):
                return {str(k): str(v) for k, v in found.items()}
    return {}
