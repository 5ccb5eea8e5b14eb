"""The localvolume example plugin: driver behaviour, the runnable module, the plugin directory."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit.examples.localvolume import LocalVolumeDriver, plugin_dir
from tests._sdk_helpers import RawClient, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def plugin(short_tmp: Path) -> Iterator[RawClient]:
    server = LocalVolumeDriver(short_tmp / "vols").server()
    server.start(short_tmp / "lv.sock")
    try:
        with RawClient(short_tmp / "lv.sock") as client:
            yield client
    finally:
        server.stop()


def test_create_makes_data_dir(plugin: RawClient, short_tmp: Path) -> None:
    """Create makes <root>/NAME/_data and Path reports it."""
    assert plugin.call("VolumeDriver.Create", {"Name": "v1", "Opts": None}).json() == {}
    assert (short_tmp / "vols" / "v1" / "_data").is_dir()
    assert plugin.call("VolumeDriver.Path", {"Name": "v1"}).json() == {
        "Mountpoint": str(short_tmp / "vols" / "v1" / "_data")
    }


def test_create_records_options_atomically(plugin: RawClient, short_tmp: Path) -> None:
    """Create writes opts.json (0600, options and creation time) and leaves no temp file."""
    plugin.call("VolumeDriver.Create", {"Name": "v1", "Opts": {"size": "1G"}})
    volume_dir = short_tmp / "vols" / "v1"
    assert sorted(p.name for p in volume_dir.iterdir()) == ["_data", "opts.json"]
    meta = volume_dir / "opts.json"
    assert stat.S_IMODE(meta.stat().st_mode) == 0o600
    record = json.loads(meta.read_text())
    assert (sorted(record), record["Opts"]) == (["CreatedAt", "Opts"], {"size": "1G"})


def test_create_is_idempotent(plugin: RawClient) -> None:
    """Creating an existing volume succeeds and keeps its data."""
    plugin.call("VolumeDriver.Create", {"Name": "v1"})
    assert plugin.call("VolumeDriver.Create", {"Name": "v1"}).status == 200


def test_invalid_name_rejected(plugin: RawClient) -> None:
    """A name that could escape the root is refused with Docker's rule in the message."""
    reply = plugin.call("VolumeDriver.Create", {"Name": "../x"})
    assert (reply.status, reply.json()) == (
        500,
        {"Err": 'invalid volume name "../x": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'},
    )


@pytest.mark.parametrize("name", ["/abs", "/", "..", ".", "a/../b", "a/b", "a\x00b", "-x", ""])
@pytest.mark.parametrize(
    "method",
    ["VolumeDriver.Create", "VolumeDriver.Remove", "VolumeDriver.Mount", "VolumeDriver.Path"],
)
def test_names_that_could_escape_the_root_are_refused(
    plugin: RawClient, short_tmp: Path, method: str, name: str
) -> None:
    """Absolute, dotted, slashed, NUL-bearing or empty names are refused by every endpoint."""
    reply = plugin.call(method, {"Name": name, "ID": "c1"})
    assert (reply.status, reply.json()) == (
        500,
        {"Err": f'invalid volume name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'},
    )
    assert list((short_tmp / "vols").glob("**/*")) == []


def test_same_id_mounted_twice_needs_two_unmounts(plugin: RawClient) -> None:
    """Docker mounts a container's volume again under the same ID (docker cp): count each."""
    plugin.call("VolumeDriver.Create", {"Name": "v1"})
    plugin.call("VolumeDriver.Mount", {"Name": "v1", "ID": "c1"})
    plugin.call("VolumeDriver.Mount", {"Name": "v1", "ID": "c1"})
    plugin.call("VolumeDriver.Unmount", {"Name": "v1", "ID": "c1"})
    assert plugin.call("VolumeDriver.Get", {"Name": "v1"}).json()["Volume"]["Status"] == {
        "Mounts": 1
    }
    reply = plugin.call("VolumeDriver.Remove", {"Name": "v1"})
    assert (reply.status, reply.json()) == (500, {"Err": "volume v1 is in use"})
    plugin.call("VolumeDriver.Unmount", {"Name": "v1", "ID": "c1"})
    assert plugin.call("VolumeDriver.Remove", {"Name": "v1"}).json() == {}


def test_list_skips_what_is_not_a_volume(plugin: RawClient, short_tmp: Path) -> None:
    """Stray directories under the root (bad names, no _data) do not break List."""
    plugin.call("VolumeDriver.Create", {"Name": "good"})
    (short_tmp / "vols" / ".trash" / "_data").mkdir(parents=True)
    (short_tmp / "vols" / "with space" / "_data").mkdir(parents=True)
    (short_tmp / "vols" / "nodata").mkdir()
    reply = plugin.call("VolumeDriver.List")
    assert reply.status == 200
    assert [v["Name"] for v in reply.json()["Volumes"]] == ["good"]


def test_unknown_volume_error(plugin: RawClient) -> None:
    """Calls on a volume that does not exist answer Err "no such volume"."""
    reply = plugin.call("VolumeDriver.Mount", {"Name": "nope", "ID": "c1"})
    assert (reply.status, reply.json()) == (500, {"Err": "no such volume: nope"})


def test_mounts_are_counted(plugin: RawClient, short_tmp: Path) -> None:
    """Two mounts need two unmounts before the volume can be removed."""
    plugin.call("VolumeDriver.Create", {"Name": "v1"})
    data = str(short_tmp / "vols" / "v1" / "_data")
    assert plugin.call("VolumeDriver.Mount", {"Name": "v1", "ID": "c1"}).json() == {
        "Mountpoint": data
    }
    plugin.call("VolumeDriver.Mount", {"Name": "v1", "ID": "c2"})
    plugin.call("VolumeDriver.Unmount", {"Name": "v1", "ID": "c1"})
    reply = plugin.call("VolumeDriver.Remove", {"Name": "v1"})
    assert (reply.status, reply.json()) == (500, {"Err": "volume v1 is in use"})
    plugin.call("VolumeDriver.Unmount", {"Name": "v1", "ID": "c2"})
    assert plugin.call("VolumeDriver.Remove", {"Name": "v1"}).json() == {}
    assert not (short_tmp / "vols" / "v1").exists()


def test_get_and_list(plugin: RawClient, short_tmp: Path) -> None:
    """Get and List describe volumes with Mountpoint, CreatedAt and the mount count."""
    plugin.call("VolumeDriver.Create", {"Name": "b"})
    plugin.call("VolumeDriver.Create", {"Name": "a"})
    got = plugin.call("VolumeDriver.Get", {"Name": "a"}).json()["Volume"]
    assert (got["Name"], got["Mountpoint"], got["Status"]) == (
        "a",
        str(short_tmp / "vols" / "a" / "_data"),
        {"Mounts": 0},
    )
    assert got["CreatedAt"].endswith("+00:00")
    listed = plugin.call("VolumeDriver.List").json()["Volumes"]
    assert [v["Name"] for v in listed] == ["a", "b"]


def test_capabilities_local(plugin: RawClient) -> None:
    """The driver is local-scoped."""
    assert plugin.call("VolumeDriver.Capabilities").json() == {"Capabilities": {"Scope": "local"}}


def test_root_from_env(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    """LOCALVOLUME_ROOT chooses the root when none is passed."""
    monkeypatch.setenv("LOCALVOLUME_ROOT", str(short_tmp / "envroot"))
    assert LocalVolumeDriver().root == short_tmp / "envroot"


def test_plugin_dir_config() -> None:
    """The shipped plugin directory has Docker's config.json for a volume driver and a rootfs."""
    directory = plugin_dir()
    config = json.loads((directory / "config.json").read_text())
    assert config["Interface"] == {
        "Types": ["docker.volumedriver/1.0"],
        "Socket": "localvolume.sock",
    }
    assert config["Entrypoint"] == ["python3", "-m", "pluginkit.examples.localvolume"]
    assert [e["Name"] for e in config["Env"]] == ["LOCALVOLUME_ROOT"]
    assert config["Env"][0]["Settable"] == ["value"]
    assert (directory / "rootfs").is_dir()
    assert (directory / "rootfs" / "README.md").is_file()


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def test_module_prints_plugin_dir() -> None:
    """python3 -m pluginkit.examples.localvolume --plugin-dir prints the plugin directory."""
    out = subprocess.run(
        [sys.executable, "-m", "pluginkit.examples.localvolume", "--plugin-dir"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == f"{plugin_dir()}\n"


def test_module_serves_at_runtime_socket_and_stops_on_sigterm(short_tmp: Path) -> None:
    """Run as a process with the runtime's env vars, it serves there and exits 0 on SIGTERM."""
    sock = short_tmp / "run" / "localvolume.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluginkit.examples.localvolume"],
        env=_env(
            PLUGINKIT_SOCKET_DIR=str(sock.parent),
            PLUGINKIT_SOCKET="localvolume.sock",
            LOCALVOLUME_ROOT=str(short_tmp / "vols"),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=30)
        with RawClient(sock) as client:
            assert client.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}
            assert client.call("VolumeDriver.Create", {"Name": "v"}).status == 200
        assert (short_tmp / "vols" / "v" / "_data").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_process_runtime_runs_the_shipped_plugin_dir(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProcessRuntime runs the plugin directory's entrypoint; it serves the runtime's socket."""
    from pluginkit.runtime import ProcessRuntime, RuntimeSpec

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # so that the plugin imports this checkout
    config = json.loads((plugin_dir() / "config.json").read_text())
    spec = RuntimeSpec(
        id="a" * 64,
        name="localvolume:latest",
        rootfs=plugin_dir() / "rootfs",
        entrypoint=tuple(config["Entrypoint"]),
        env=(f"LOCALVOLUME_ROOT={short_tmp / 'vols'}",),
        socket_dir=short_tmp / "run",
        socket=config["Interface"]["Socket"],
        state_dir=short_tmp / "state",
    )
    exits: list[object] = []
    runtime = ProcessRuntime(grace=10)
    try:
        runtime.start(spec, exits.append)
        sock = short_tmp / "run" / "localvolume.sock"
        wait_for(lambda: sock.exists() or bool(exits), timeout=30)
        with RawClient(sock) as client:
            assert client.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}
            client.call("VolumeDriver.Create", {"Name": "fromruntime"})
        assert (short_tmp / "vols" / "fromruntime" / "_data").is_dir()
        runtime.stop(spec.id)
        wait_for(lambda: bool(exits), timeout=30)
        assert getattr(exits[0], "exit_code", None) == 0
        assert not sock.exists()
    finally:
        runtime.close()


def test_plugin_dir_config_parses_as_docker_config() -> None:
    """The shipped config.json passes pluginkit's config.json validation (volumedriver, socket)."""
    from pluginkit._config import parse_config

    config = parse_config(json.loads((plugin_dir() / "config.json").read_text()))
    assert [(t.capability, t.version) for t in config.interface.types] == [("volumedriver", "1.0")]
    assert config.interface.socket == "localvolume.sock"


def test_default_root_is_per_user_unless_root(monkeypatch, tmp_path):
    """Without LOCALVOLUME_ROOT: root uses DEFAULT_ROOT, other users their data dir."""
    from pluginkit.examples import localvolume

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert localvolume.default_root() == Path("/var/lib/pluginkit/localvolume")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert localvolume.default_root() == tmp_path / "data" / "pluginkit" / "localvolume"
    monkeypatch.delenv("LOCALVOLUME_ROOT", raising=False)
    assert localvolume.LocalVolumeDriver().root == tmp_path / "data" / "pluginkit" / "localvolume"
