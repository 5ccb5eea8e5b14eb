"""Offline bundles: save() writes an OCI layout tar, load() installs one, skopeo reads it."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import ErrNotFound, InvalidReferenceError, PrivilegesNotGrantedError
from pluginkit.distribution import BlobError, NotAPluginError
from tests._manager_helpers import Env
from tests._registry import run_registry


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


def _saved(env: Env, **config: object) -> tuple[Path, str]:
    m = env.manager()
    src = env.plugin_dir(**config)
    (src / "rootfs" / "data").write_bytes(b"payload" * 1000)
    m.create("team/p:1", src)
    bundle = env.tmp / "p.tar"
    return bundle, m.save("team/p:1", bundle)


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


def _write(bundle: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(bundle, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_save_writes_an_oci_layout(env: Env) -> None:
    """The bundle holds oci-layout, index.json and the three blobs, with Docker's media types."""
    bundle, digest = _saved(env)
    members = _members(bundle)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"] == {
        "io.containerd.image.name": "team/p:1",
        "org.opencontainers.image.ref.name": "1",
    }
    manifest = json.loads(members[f"blobs/sha256/{digest[7:]}"])
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.plugin.v1+json"
    [layer] = manifest["layers"]
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert sorted(members) == sorted(
        [
            "oci-layout",
            "index.json",
            f"blobs/sha256/{digest[7:]}",
            "blobs/sha256/" + manifest["config"]["digest"][7:],
            "blobs/sha256/" + layer["digest"][7:],
        ]
    )
    assert [p.name for p in env.tmp.iterdir() if p.name.startswith(".p.tar")] == []


def test_save_is_reproducible(env: Env) -> None:
    """Saving an unchanged plugin twice gives the same manifest digest."""
    _, digest = _saved(env)
    assert env.managers[0].save("team/p:1", env.tmp / "again.tar") == digest


def test_load_round_trip(env: Env) -> None:
    """load() installs the plugin under the name in the bundle, disabled, with its rootfs."""
    bundle, digest = _saved(env)
    other = env.manager(root=env.tmp / "r2")
    plugin = other.load(bundle)
    assert plugin.name == "team/p:1"
    assert not plugin.enabled
    assert other.inspect("team/p:1")["ManifestDigest"] == digest
    rootfs = env.tmp / "r2" / "plugins" / plugin.id / "rootfs"
    assert (rootfs / "data").read_bytes() == b"payload" * 1000
    assert other.load(bundle, name="renamed").name == "renamed:latest"


def test_load_asks_for_privileges(env: Env) -> None:
    """A bundle's plugin needing privileges is refused without grant, nothing left behind."""
    bundle, _ = _saved(env, Network={"Type": "host"})
    other = env.manager(root=env.tmp / "r2")
    with pytest.raises(PrivilegesNotGrantedError):
        other.load(bundle)
    assert os.listdir(env.tmp / "r2" / "plugins") == []
    assert other.load(bundle, grant=True).name == "team/p:1"


def test_load_detects_a_tampered_layer(env: Env) -> None:
    """A layer whose bytes changed fails with a digest mismatch naming the blob and the file."""
    bundle, digest = _saved(env)
    members = _members(bundle)
    manifest = json.loads(members[f"blobs/sha256/{digest[7:]}"])
    layer = manifest["layers"][0]["digest"]
    data = bytearray(members[f"blobs/sha256/{layer[7:]}"])
    data[len(data) // 2] ^= 0xFF
    members[f"blobs/sha256/{layer[7:]}"] = bytes(data)
    _write(bundle, members)
    other = env.manager(root=env.tmp / "r2")
    with pytest.raises(BlobError) as info:
        other.load(bundle)
    assert str(info.value).startswith(f"digest mismatch for layer {layer} in {bundle}: got sha256:")
    assert os.listdir(env.tmp / "r2" / "plugins") == []
    assert os.listdir(env.tmp / "r2" / "tmp") == []


def test_load_refuses_unexpected_members(env: Env) -> None:
    """Anything but oci-layout, index.json and blobs is refused before reading."""
    bundle, _ = _saved(env)
    members = _members(bundle)
    members["../evil"] = b"x"
    _write(bundle, members)
    with pytest.raises(BlobError) as info:
        env.manager(root=env.tmp / "r2").load(bundle)
    assert str(info.value) == (
        f"unexpected member '../evil' in {bundle}: an OCI layout holds only oci-layout, "
        "index.json and blobs/sha256/<digest> files"
    )


def test_load_needs_a_name_when_the_bundle_has_none(env: Env) -> None:
    """Without the name annotation, load() asks for name=."""
    bundle, _ = _saved(env)
    members = _members(bundle)
    index = json.loads(members["index.json"])
    del index["manifests"][0]["annotations"]
    members["index.json"] = json.dumps(index).encode()
    _write(bundle, members)
    with pytest.raises(InvalidReferenceError, match="does not say the plugin's name: pass name="):
        env.manager(root=env.tmp / "r2").load(bundle)
    assert env.manager(root=env.tmp / "r3").load(bundle, name="x").name == "x:latest"


def test_load_of_a_container_image_bundle(env: Env) -> None:
    """A bundle whose config is not a plugin's gives Docker's wording."""
    bundle, digest = _saved(env)
    members = _members(bundle)
    key = f"blobs/sha256/{digest[7:]}"
    manifest = json.loads(members[key])
    manifest["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    import hashlib

    body = json.dumps(manifest).encode()
    new = "sha256:" + hashlib.sha256(body).hexdigest()
    del members[key]
    members[f"blobs/sha256/{new[7:]}"] = body
    index = json.loads(members["index.json"])
    index["manifests"][0].update(digest=new, size=len(body))
    members["index.json"] = json.dumps(index).encode()
    _write(bundle, members)
    with pytest.raises(NotAPluginError) as info:
        env.manager(root=env.tmp / "r2").load(bundle)
    assert str(info.value) == f"did not find plugin config for specified reference {bundle}"


def test_save_of_an_unknown_plugin_writes_nothing(env: Env) -> None:
    """save() of a name that is not installed raises and leaves no file."""
    with pytest.raises(ErrNotFound):
        env.manager().save("nothing", env.tmp / "n.tar")
    assert not (env.tmp / "n.tar").exists()


@pytest.mark.registry
def test_skopeo_copies_a_saved_bundle(env: Env, tmp_path: Path) -> None:
    """skopeo copy oci-archive:FILE docker://… works, and the copy installs with the same digest."""
    if shutil.which("skopeo") is None:
        if os.environ.get("PLUGINKIT_REQUIRE_REGISTRY") == "1":
            pytest.fail("PLUGINKIT_REQUIRE_REGISTRY=1 but skopeo is not installed")
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    bundle, digest = _saved(env)
    with run_registry(tmp_path / "registry") as host:
        done = subprocess.run(
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"oci-archive:{bundle}",
                f"docker://{host}/sk/p:1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        other = env.manager(root=env.tmp / "r2")
        plugin = other.install(f"{host}/sk/p:1")
        assert other.inspect(plugin.name)["ManifestDigest"] == digest


def test_the_compressed_layer_is_kept_until_the_rootfs_changes(env: Env) -> None:
    """save() compresses once; an unchanged rootfs reuses the layer, a changed one rebuilds it."""
    _, digest = _saved(env)
    m = env.managers[0]
    plugin_dir = env.root / "plugins" / m.get("team/p:1").id
    blob = plugin_dir / "layer.tar.gz"
    first = blob.stat().st_ino
    assert m.save("team/p:1", env.tmp / "again.tar") == digest
    assert blob.stat().st_ino == first  # reused, not rewritten
    (plugin_dir / "rootfs" / "data").write_bytes(b"changed")
    assert m.save("team/p:1", env.tmp / "changed.tar") != digest
    assert blob.stat().st_ino != first
    assert os.listdir(env.root / "tmp") == []
