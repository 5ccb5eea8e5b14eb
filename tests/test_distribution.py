"""Install and push plugins through a real registry (Debian's docker-registry, plain HTTP)."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import (
    InstallLimitError,
    InstallLimits,
    InvalidConfigError,
    PluginExistsError,
    PrivilegesNotGrantedError,
)
from pluginkit.distribution import (
    BlobError,
    LayerError,
    NotAPluginError,
    RegistryNotFoundError,
    RegistryUnreachableError,
)
from tests._manager_helpers import Env
from tests._registry import blob_path, free_port, push_image, run_registry

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain-HTTP registry on localhost: (host:port, storage dir)."""
    work = tmp_path_factory.mktemp("registry")
    with run_registry(work) as host:
        yield host, work / "storage"


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


def _leftovers(env: Env) -> tuple[list[str], list[str]]:
    return sorted(os.listdir(env.root / "plugins")), sorted(os.listdir(env.root / "tmp"))


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o755
    return info, data


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


CONFIG: dict[str, Any] = {
    "Description": "crafted",
    "Documentation": "",
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/plugin"],
    "Network": {"Type": ""},
    "Linux": {"Capabilities": []},
}


def _crafted(host: str, repo: str, layer: bytes, config: bytes | None = None) -> str:
    cfg = config if config is not None else json.dumps(CONFIG).encode()
    push_image(host, repo, "1", cfg, [layer])
    return f"{host}/{repo}:1"


def test_push_then_install_round_trip(registry: tuple[str, Path], env: Env) -> None:
    """A pushed plugin installs under its familiar name with its rootfs, reference and digest."""
    host, _ = registry
    m = env.manager()
    src = env.plugin_dir(Env=[{"Name": "DEBUG", "Settable": ["value"], "Value": "0"}])
    (src / "rootfs" / "sub").mkdir()
    (src / "rootfs" / "sub" / "data").write_bytes(b"x" * 5000)
    os.symlink("/plugin", src / "rootfs" / "link")
    m.create(f"{host}/team/p:1", src)
    digest = m.push(f"{host}/team/p:1")
    assert digest.startswith("sha256:")
    other = env.manager(root=env.tmp / "root2")
    plugin = other.install(f"{host}/team/p:1", name="copy", grant=True)
    assert plugin.name == "copy:latest"
    assert not plugin.enabled
    info = other.inspect("copy")
    assert info["PluginReference"] == f"{host}/team/p:1"
    assert info["ManifestDigest"] == digest
    assert info["Settings"]["Env"] == ["DEBUG=0"]
    rootfs = env.tmp / "root2" / "plugins" / plugin.id / "rootfs"
    assert (rootfs / "sub" / "data").read_bytes() == b"x" * 5000
    assert os.readlink(rootfs / "link") == "/plugin"
    assert (rootfs / "plugin").read_text() == "#!/bin/sh\n"
    assert os.listdir(env.tmp / "root2" / "tmp") == []


def test_install_default_name_is_familiar_name_and_tag(
    registry: tuple[str, Path], env: Env
) -> None:
    """Without name=, the plugin is named like Docker names it: host/path:tag."""
    host, _ = registry
    m = env.manager()
    m.create(f"{host}/team/named", env.plugin_dir())
    m.push(f"{host}/team/named")
    m.remove(f"{host}/team/named")
    plugin = m.install(f"{host}/team/named")
    assert plugin.name == f"{host}/team/named:latest"
    with pytest.raises(PluginExistsError):
        m.install(f"{host}/team/named")


def test_push_again_uploads_nothing_new(registry: tuple[str, Path], env: Env) -> None:
    """An unchanged plugin pushed twice gives the same manifest; blobs are not re-sent."""
    host, _ = registry
    m = env.manager()
    m.create("again", env.plugin_dir())
    first = m.push("again", f"{host}/team/again:1")
    second = m.push("again", f"{host}/team/again:2")
    assert first == second


def test_privileges_of_a_reference(registry: tuple[str, Path], env: Env) -> None:
    """privileges() reads manifest and config from the registry; install asks for them."""
    host, _ = registry
    m = env.manager()
    m.create(f"{host}/team/priv", env.plugin_dir(Network={"Type": "host"}))
    m.push(f"{host}/team/priv")
    other = env.manager(root=env.tmp / "r2")
    privs = other.privileges(f"{host}/team/priv")
    assert [(p.name, p.value) for p in privs] == [("network", ("host",))]
    with pytest.raises(PrivilegesNotGrantedError):
        other.install(f"{host}/team/priv")
    assert _leftovers_at(env.tmp / "r2") == ([], [])


def _leftovers_at(root: Path) -> tuple[list[str], list[str]]:
    return sorted(os.listdir(root / "plugins")), sorted(os.listdir(root / "tmp"))


def test_existing_path_wins_over_reference(
    registry: tuple[str, Path], env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory named like a reference is installed from disk, not from a registry."""
    m = env.manager()
    monkeypatch.chdir(tmp_path)
    env.plugin_dir("team")
    Path("team").symlink_to(env.tmp / "src" / "team")
    plugin = m.install("team", name="fromdisk")
    assert m.inspect(plugin.name)["PluginReference"] == "team"


def test_unknown_repository_says_not_found(registry: tuple[str, Path], env: Env) -> None:
    """An unknown repository names the reference and the registry."""
    host, _ = registry
    with pytest.raises(RegistryNotFoundError) as info:
        env.manager().install(f"{host}/nobody/nothing:1")
    assert str(info.value) == f"{host}/nobody/nothing:1 (registry {host}): not found"


def test_unknown_tag_says_not_found(registry: tuple[str, Path], env: Env) -> None:
    """An unknown tag of a known repository is 'not found' too."""
    host, _ = registry
    m = env.manager()
    m.create(f"{host}/team/tagged:1", env.plugin_dir())
    m.push(f"{host}/team/tagged:1")
    with pytest.raises(RegistryNotFoundError) as info:
        m.install(f"{host}/team/tagged:2")
    assert str(info.value) == f"{host}/team/tagged:2 (registry {host}): not found"


def test_closed_port_says_connection_refused(env: Env) -> None:
    """A registry that is down: 'cannot reach registry HOST: connection refused'."""
    port = free_port()
    with pytest.raises(RegistryUnreachableError) as info:
        env.manager().install(f"localhost:{port}/p:1")
    assert str(info.value) == f"cannot reach registry localhost:{port}: connection refused"
    assert _leftovers(env) == ([], [])


def test_image_that_is_not_a_plugin(registry: tuple[str, Path], env: Env) -> None:
    """A container image gives Docker's 'did not find plugin config' error."""
    host, _ = registry
    push_image(
        host,
        "team/image",
        "1",
        b'{"rootfs": {"type": "layers", "diff_ids": []}}',
        [],
        config_type="application/vnd.docker.container.image.v1+json",
    )
    with pytest.raises(NotAPluginError) as info:
        env.manager().install(f"{host}/team/image:1")
    assert str(info.value) == (
        f"did not find plugin config for specified reference {host}/team/image:1"
    )


def test_oci_manifest_and_plain_tar_layer(registry: tuple[str, Path], env: Env) -> None:
    """OCI manifests with uncompressed OCI layers install (as moby pulls them)."""
    host, _ = registry
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info, data = _file("plugin", b"oci")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    push_image(
        host,
        "team/oci",
        "1",
        json.dumps(CONFIG).encode(),
        [raw.getvalue()],
        layer_type="application/vnd.oci.image.layer.v1.tar",
        manifest_type="application/vnd.oci.image.manifest.v1+json",
    )
    plugin = env.manager().install(f"{host}/team/oci:1")
    assert (env.root / "plugins" / plugin.id / "rootfs" / "plugin").read_bytes() == b"oci"


def test_digest_mismatch_names_the_blob(registry: tuple[str, Path], env: Env) -> None:
    """A layer whose bytes do not match its digest fails the install, naming the blob."""
    host, storage = registry
    layer = _tar_gz([_file("plugin", b"genuine")])
    ref = _crafted(host, "team/tampered", layer)
    import hashlib

    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    tampered = bytearray(layer)
    tampered[len(layer) // 2] ^= 0xFF
    blob_path(storage, digest).write_bytes(bytes(tampered))
    with pytest.raises(BlobError) as info:
        env.manager().install(ref)
    assert str(info.value).startswith(f"digest mismatch for layer {digest} of {ref}: got sha256:")
    assert _leftovers(env) == ([], [])


def test_truncated_blob(registry: tuple[str, Path], env: Env) -> None:
    """A blob shorter than its descriptor says is reported as truncated."""
    host, storage = registry
    layer = _tar_gz([_file("plugin", os.urandom(4000))])
    ref = _crafted(host, "team/truncated", layer)
    import hashlib

    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    blob_path(storage, digest).write_bytes(layer[:100])
    with pytest.raises(BlobError) as info:
        env.manager().install(ref)
    assert str(info.value) == (
        f"layer {digest} of {ref} is truncated: got 100 of {len(layer)} bytes"
    )
    assert _leftovers(env) == ([], [])


def test_config_that_is_not_json(registry: tuple[str, Path], env: Env) -> None:
    """A config blob that is not JSON is a BlobError naming it."""
    host, _ = registry
    ref = _crafted(host, "team/badjson", _tar_gz([_file("plugin", b"x")]), config=b"{nope")
    import hashlib

    digest = "sha256:" + hashlib.sha256(b"{nope").hexdigest()
    with pytest.raises(BlobError) as info:
        env.manager().install(ref)
    assert str(info.value).startswith(f"plugin config {digest} of {ref} is not valid JSON: ")


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (
            [_file("../evil", b"x")],
            "unsafe member '../evil' in {layer}: absolute path or '..' component",
        ),
        (
            [_file("/etc/evil", b"x")],
            "unsafe member '/etc/evil' in {layer}: absolute path or '..' component",
        ),
        (
            [_symlink("up", "../../.."), _file("up/evil", b"x")],
            "unsafe member 'up' in {layer}: symlink to '../../..' points outside the rootfs",
        ),
        (
            [_symlink("abs", "/"), _file("abs/evil", b"x")],
            "unsafe member 'abs/evil' in {layer}: it would be written through a symlink",
        ),
        (
            [_symlink("abs", "/"), _file("abs/pluginkit-test-new-dir/evil", b"x")],
            "unsafe member 'abs/pluginkit-test-new-dir/evil' in {layer}: it would be written "
            "through a symlink",
        ),
    ],
    ids=["dotdot", "absolute", "symlink-out", "through-symlink", "no-dir-made-outside"],
)
def test_escaping_layers_are_refused(
    registry: tuple[str, Path], env: Env, members: list[Any], why: str
) -> None:
    """Layers that would write outside the rootfs fail with LayerError; nothing is left."""
    host, _ = registry
    layer = _tar_gz(members)
    repo = f"team/escape{abs(hash(why)) % 100000}"
    ref = _crafted(host, repo, layer)
    import hashlib

    what = f"layer sha256:{hashlib.sha256(layer).hexdigest()} of {ref}"
    with pytest.raises(LayerError) as info:
        env.manager().install(ref)
    assert str(info.value) == why.format(layer=what)
    assert _leftovers(env) == ([], [])
    assert not os.path.exists("/pluginkit-test-new-dir")


def test_size_limit(registry: tuple[str, Path], env: Env) -> None:
    """A layer that unpacks past InstallLimits.max_bytes fails (a gzip bomb stops early)."""
    host, _ = registry
    layer = _tar_gz([_file("plugin", b"\0" * 200_000)])
    ref = _crafted(host, "team/bomb", layer)
    import hashlib

    with pytest.raises(InstallLimitError) as info:
        env.manager(install_limits=InstallLimits(max_bytes=100_000)).install(ref)
    assert str(info.value) == (
        f"layer sha256:{hashlib.sha256(layer).hexdigest()} of {ref} unpacks to more than "
        "100000 bytes (InstallLimits.max_bytes)"
    )
    assert _leftovers(env) == ([], [])


def test_whiteouts_remove_earlier_files(registry: tuple[str, Path], env: Env) -> None:
    """A later layer's .wh. entries delete what an earlier layer put there."""
    host, _ = registry
    first = _tar_gz([_file("plugin", b"1"), _file("gone", b"x"), _file("dir/a", b"a")])
    second = _tar_gz([_file(".wh.gone", b""), _file("dir/.wh..wh..opq", b""), _file("dir/b", b"b")])
    push_image(host, "team/layers", "1", json.dumps(CONFIG).encode(), [first, second])
    plugin = env.manager().install(f"{host}/team/layers:1")
    rootfs = env.root / "plugins" / plugin.id / "rootfs"
    assert sorted(p.name for p in rootfs.iterdir()) == ["dir", "plugin"]
    assert sorted(p.name for p in (rootfs / "dir").iterdir()) == ["b"]


def test_install_by_digest(registry: tuple[str, Path], env: Env) -> None:
    """host/p@sha256:… installs exactly that manifest."""
    host, _ = registry
    m = env.manager()
    m.create(f"{host}/team/bydigest:1", env.plugin_dir())
    digest = m.push(f"{host}/team/bydigest:1")
    plugin = env.manager(root=env.tmp / "r3").install(f"{host}/team/bydigest@{digest}")
    assert plugin.name == f"{host}/team/bydigest:latest"


def test_kill_during_install_leaves_nothing(registry: tuple[str, Path], env: Env) -> None:
    """A process killed mid-install leaves the plugin absent and tmp/ cleaned at the next start."""
    import subprocess
    import sys
    import time

    host, _ = registry
    layer = _tar_gz([_file("plugin", os.urandom(3_000_000))])
    ref = _crafted(host, "team/killed", layer)
    root = env.tmp / "killroot"
    code = (
        "import sys, pluginkit\n"
        "from pluginkit.testing import FakeRuntime\n"
        "import pluginkit.distribution._layer as L\n"
        "orig = L.apply_layer\n"
        "def slow(*a, **k):\n"
        "    print('unpacking', flush=True); import time; time.sleep(30)\n"
        "L.apply_layer = slow\n"
        "import pluginkit.distribution._pull as P; P.apply_layer = slow\n"
        f"m = pluginkit.Manager({str(root)!r}, runtime=FakeRuntime(), legacy=None)\n"
        f"m.install({ref!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env={**os.environ}
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"unpacking\n"
    assert os.listdir(root / "tmp") != []
    proc.kill()
    proc.wait()
    proc.stdout.close()
    time.sleep(0.05)
    m = env.manager(root=root)
    assert m.list() == []
    assert _leftovers_at(root) == ([], [])


def test_bad_reference_source_keeps_the_path_error(env: Env) -> None:
    """A source that is neither an existing path nor a reference says it does not exist."""
    with pytest.raises(InvalidConfigError, match=r"^plugin source Nope/x does not exist$"):
        env.manager().install("./Nope/x")


def test_socket_free_port_is_closed() -> None:
    """free_port gives a port nothing listens on (the closed-port test relies on it)."""
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    "index_type",
    [
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ],
)
def test_manifest_list_picks_this_platform(
    registry: tuple[str, Path], env: Env, index_type: str
) -> None:
    """A manifest list / OCI index resolves to the linux entry of this machine's architecture."""
    import platform

    import requests

    host, _ = registry
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    other = "s390x" if arch != "s390x" else "amd64"
    mine = push_image(
        host,
        "team/multi",
        "mine",
        json.dumps(CONFIG).encode(),
        [_tar_gz([_file("plugin", b"mine")])],
    )
    theirs = push_image(
        host,
        "team/multi",
        "theirs",
        json.dumps(CONFIG).encode(),
        [_tar_gz([_file("plugin", b"theirs")])],
    )
    manifests = []
    for digest, plat in ((theirs, other), (mine, arch)):
        r = requests.get(
            f"http://{host}/v2/team/multi/manifests/{digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=30,
        )
        manifests.append(
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": digest,
                "size": len(r.content),
                "platform": {"os": "linux", "architecture": plat},
            }
        )
    body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": manifests})
    r = requests.put(
        f"http://{host}/v2/team/multi/manifests/list",
        data=body,
        headers={"Content-Type": index_type},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    plugin = env.manager().install(f"{host}/team/multi:list")
    assert (env.root / "plugins" / plugin.id / "rootfs" / "plugin").read_bytes() == b"mine"
    assert env.managers[0].inspect(plugin.name)["ManifestDigest"] == mine


def test_a_word_that_is_neither_a_path_nor_reachable(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare word goes to Docker Hub; when that fails the error says it is not a path either."""
    port = free_port()
    # Docker Hub made unreachable through a proxy that refuses connections.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    with pytest.raises(RegistryUnreachableError) as info:
        env.manager().install("nosuchplugin")
    assert str(info.value) == (
        "cannot reach registry registry-1.docker.io: connection refused "
        "(and nosuchplugin is not a file or directory)"
    )
