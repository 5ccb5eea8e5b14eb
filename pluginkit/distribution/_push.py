"""Upload a plugin in exactly ``docker plugin push``'s format.

The rootfs becomes one gzip layer written reproducibly (sorted members,
owner 0:0, the files' own mtimes, no gzip timestamp), so pushing an unchanged
plugin again uploads nothing: blobs the registry already holds are skipped
after a ``HEAD``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from .._config import PluginConfig, Rootfs, dump_config
from ._blobs import Progress, ProgressEvent, no_progress, short
from ._errors import RegistryError
from ._manifest import DOCKER_LAYER_GZIP, DOCKER_MANIFEST, PLUGIN_CONFIG, Descriptor, build_manifest
from ._ref import RegistryReference
from ._transport import RegistrySession

__all__ = ["Pusher", "config_blob", "write_layer"]

_CHUNK = 1 << 20


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def _walk(rootfs: Path) -> Iterator[tuple[str, str]]:
    """Yield (archive name, path) for every entry under ``rootfs``, sorted, parents first."""
    stack = [""]
    while stack:
        rel = stack.pop()
        here = os.path.join(rootfs, rel) if rel else os.fspath(rootfs)
        names = sorted(os.listdir(here))
        subdirs = []
        for name in names:
            arc = f"{rel}/{name}" if rel else name
            path = os.path.join(here, name)
            yield arc, path
            if stat.S_ISDIR(os.lstat(path).st_mode):
                subdirs.append(arc)
        stack.extend(reversed(subdirs))


def write_layer(rootfs: Path, dest: Path, compresslevel: int = 6) -> Descriptor:
    """Write ``rootfs`` as a gzip tar layer to ``dest``; return its descriptor."""
    with open(dest, "wb") as raw:
        hashing = _HashingWriter(raw)
        with (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=hashing, compresslevel=compresslevel, mtime=0
            ) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK) as tar,
        ):
            seen: dict[tuple[int, int], str] = {}
            for arc, path in _walk(rootfs):
                info = tar.gettarinfo(path, arcname=arc)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    st = os.lstat(path)
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            info.type = tarfile.LNKTYPE
                            info.linkname = seen[key]
                            info.size = 0
                            tar.addfile(info)
                            continue
                        seen[key] = arc
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
                else:
                    raise RegistryError(f"cannot push {path}: not a file, directory or symlink")
        raw.flush()
        os.fsync(raw.fileno())
    return Descriptor(DOCKER_LAYER_GZIP, "sha256:" + hashing.hash.hexdigest(), hashing.size)


def config_blob(config: PluginConfig, layers: list[Descriptor]) -> bytes:
    """Return the config blob: the config with ``rootfs.diff_ids`` = the layer digests."""
    with_rootfs = attrs.evolve(
        config, rootfs=Rootfs(type="layers", diff_ids=tuple(x.digest for x in layers))
    )
    return json.dumps(dump_config(with_rootfs), separators=(",", ":")).encode()


class Pusher:
    """Push blobs and a manifest to one repository."""

    def __init__(self, ref: RegistryReference, progress: Progress | None = None) -> None:
        self.ref = ref
        self.progress = progress or no_progress
        self.session = RegistrySession(ref.host, ref.domain, ref.path, push=True)

    def close(self) -> None:
        """Close the registry connections."""
        self.session.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, response: Any) -> RegistryError:
        text = response.text[:300].strip()
        return RegistryError(
            f"registry {self.ref.host} refused {what} for {self.ref}: {response.status_code} {text}"
        )

    def has_blob(self, digest: str) -> bool:
        """Tell whether the repository already holds ``digest``."""
        with self.session.request("HEAD", f"/v2/{self.ref.path}/blobs/{digest}") as response:
            return response.status_code == 200

    def upload(self, desc: Descriptor, data: bytes | Path) -> None:
        """Upload one blob unless the registry has it (monolithic POST + PUT)."""
        sid = short(desc.digest)
        if self.has_blob(desc.digest):
            self.progress(ProgressEvent("exists", sid, desc.size, desc.size))
            return
        with self.session.request("POST", f"/v2/{self.ref.path}/blobs/uploads/") as response:
            if response.status_code != 202 or "Location" not in response.headers:
                raise self._fail(f"the upload of blob {desc.digest}", response)
            location = response.headers["Location"]
        if "://" not in location:
            location = self.session._base + location
        self.progress(ProgressEvent("upload", sid, 0, desc.size))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        params = {"digest": desc.digest}
        if isinstance(data, Path):
            with open(data, "rb") as body:
                response = self.session.request(
                    "PUT", location, headers=headers, data=body, params=params
                )
        else:
            response = self.session.request(
                "PUT", location, headers=headers, data=data, params=params
            )
        with response:
            if response.status_code not in (201, 204):
                raise self._fail(f"blob {desc.digest}", response)
        self.progress(ProgressEvent("uploaded", sid, desc.size, desc.size))

    def put_manifest(self, body: bytes, media_type: str = DOCKER_MANIFEST) -> str:
        """Upload the manifest under the reference's tag; return its digest."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with self.session.request(
            "PUT",
            f"/v2/{self.ref.path}/manifests/{self.ref.tag or digest}",
            headers={"Content-Type": media_type},
            data=body,
        ) as response:
            if response.status_code not in (201, 202, 204):
                raise self._fail("the manifest", response)
        self.progress(ProgressEvent("manifest", digest))
        return digest

    def push_plugin(self, config: PluginConfig, layers: list[tuple[Descriptor, Path]]) -> str:
        """Upload layers, config and manifest; return the manifest digest."""
        descs = [d for d, _ in layers]
        blob = config_blob(config, descs)
        cdesc = Descriptor(PLUGIN_CONFIG, "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
        for desc, path in layers:
            self.upload(desc, path)
        self.upload(cdesc, blob)
        return self.put_manifest(build_manifest(cdesc, descs))
