"""Stable addresses: a name-derived socket path that outlives ids, and Podman's drop-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import Client, Manager
from pluginkit._stable import stable_socket_path
from pluginkit.podman import DROP_IN_NAME, podman_name, register, render
from pluginkit.testing import FakeRuntime, write_plugin_dir


@pytest.fixture
def fake() -> Iterator[FakeRuntime]:
    runtime = FakeRuntime()
    yield runtime
    runtime.shutdown()


@pytest.fixture
def manager(tmp_path: Path, short_tmp: Path, fake: FakeRuntime) -> Iterator[Manager]:
    with Manager(tmp_path / "root", runtime=fake, run_root=short_tmp / "run", legacy=None) as m:
        yield m


def plugin_dir(where: Path, types: tuple[str, ...] = ("docker.volumedriver/1.0",)) -> Path:
    return write_plugin_dir(where, types=types, socket="p.sock")


def test_enabled_plugin_is_reached_at_its_stable_address(
    manager: Manager, fake: FakeRuntime, tmp_path: Path
) -> None:
    """stable_address names <run_root>/by-name/<name>.sock, which reaches the plugin."""
    fake.set_handlers("acme/vol:1.0", {"VolumeDriver.List": lambda _: {"Volumes": []}})
    manager.create("acme/vol:1.0", plugin_dir(tmp_path / "ctx"))
    plugin = manager.get("acme/vol:1.0")
    assert plugin.stable_address is None  # disabled
    manager.enable("acme/vol:1.0")
    expected = f"{manager.run_root}/by-name/acme+vol:1.0.sock"
    assert plugin.stable_address == f"unix://{expected}"
    assert os.readlink(expected) == f"{manager.run_root}/{plugin.id}/p.sock"
    with Client(plugin.stable_address) as client:
        assert client.call("VolumeDriver.List") == {"Volumes": []}


def test_stable_address_survives_remove_and_recreate(manager: Manager, tmp_path: Path) -> None:
    """A plugin removed and created again under the same name has a new id, the same address."""
    context = plugin_dir(tmp_path / "ctx")
    manager.create("vol", context)
    manager.enable("vol")
    first = manager.get("vol")
    address, first_id = first.stable_address, first.id
    manager.remove("vol", force=True)
    assert not os.path.lexists(stable_socket_path(manager.run_root, "vol:latest"))
    manager.create("vol", context)
    manager.enable("vol")
    second = manager.get("vol")
    assert second.id != first_id
    assert second.stable_address == address
    assert os.readlink(str(address).removeprefix("unix://")) == (
        f"{manager.run_root}/{second.id}/p.sock"
    )


def test_disable_removes_the_link(manager: Manager, tmp_path: Path) -> None:
    """A disabled plugin has no stable address and leaves no link behind."""
    manager.create("vol", plugin_dir(tmp_path / "ctx"))
    manager.enable("vol")
    path = stable_socket_path(manager.run_root, "vol:latest")
    assert os.path.islink(path)
    manager.disable("vol")
    assert manager.get("vol").stable_address is None
    assert not os.path.lexists(path)


def test_crash_keeps_the_link(manager: Manager, fake: FakeRuntime, tmp_path: Path) -> None:
    """A crashed plugin is restarted behind the same stable address."""
    from pluginkit.testing import wait_running

    fake.set_handlers("vol", {"VolumeDriver.List": lambda _: {"Volumes": []}})
    manager.create("vol", plugin_dir(tmp_path / "ctx"))
    manager.enable("vol")
    path = stable_socket_path(manager.run_root, "vol:latest")
    fake.crash("vol")
    assert os.path.islink(path)
    wait_running(manager, "vol")
    with Client(f"unix://{path}") as client:
        assert client.call("VolumeDriver.List") == {"Volumes": []}


def test_a_name_too_long_for_a_socket_is_hashed(tmp_path: Path) -> None:
    """A name whose path would pass the unix socket limit gets a name-derived hash instead."""
    name = "registry.example.com:5000/" + "a" * 120 + ":1.0"
    path = stable_socket_path("/run/pluginkit", name)
    assert path == stable_socket_path("/run/pluginkit", name)  # derived, so stable
    assert path.startswith("/run/pluginkit/by-name/")
    assert len(os.path.basename(path)) == len("0123456789abcdef0123456789abcdef.sock")
    assert path != stable_socket_path("/run/pluginkit", name.replace(":1.0", ":2.0"))


def test_slashes_cannot_make_two_names_share_a_path() -> None:
    """'/' becomes '+', which Docker names never contain: a/b and a_b stay apart."""
    paths = {stable_socket_path("/r", n) for n in ("a/b:latest", "a_b:latest", "a-b:latest")}
    assert paths == {
        "/r/by-name/a+b:latest.sock",
        "/r/by-name/a_b:latest.sock",
        "/r/by-name/a-b:latest.sock",
    }


# -- Podman's containers.conf drop-in --------------------------------------------


def test_register_writes_enabled_volume_plugins_only(manager: Manager, tmp_path: Path) -> None:
    """Enabled volume plugins get an entry; disabled ones and other types do not."""
    manager.create("acme/vol:2.0", plugin_dir(tmp_path / "a"))
    manager.create("vol", plugin_dir(tmp_path / "b"))
    manager.create("off", plugin_dir(tmp_path / "c"))
    manager.create("net", plugin_dir(tmp_path / "d", ("docker.networkdriver/1.0",)))
    for name in ("acme/vol:2.0", "vol", "net"):
        manager.enable(name)
    drop_ins = tmp_path / "containers.conf.d"
    path = register(manager, drop_ins)
    assert path == drop_ins / DROP_IN_NAME
    run_root = manager.run_root
    assert path.read_text() == (
        "# Written by pluginkit (pluginkit podman-register): Podman's names for the\n"
        "# managed volume plugins that are enabled, and their stable sockets.\n"
        "# Rewritten on every registration: do not edit.\n"
        "[engine.volume_plugins]\n"
        f'"acme/vol:2.0" = "{run_root}/by-name/acme+vol:2.0.sock"\n'
        f'"vol" = "{run_root}/by-name/vol:latest.sock"\n'
    )
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_register_drops_plugins_that_are_gone(manager: Manager, tmp_path: Path) -> None:
    """A refresh drops disabled and removed plugins; with none left the file goes."""
    manager.create("one", plugin_dir(tmp_path / "a"))
    manager.create("two", plugin_dir(tmp_path / "b"))
    manager.enable("one")
    manager.enable("two")
    drop_ins = tmp_path / "d"
    register(manager, drop_ins)
    manager.disable("one")
    path = register(manager, drop_ins)
    assert '"one"' not in path.read_text()
    assert '"two"' in path.read_text()
    manager.remove("two", force=True)
    assert register(manager, drop_ins) == path
    assert not path.exists()
    assert list(drop_ins.iterdir()) == []  # no temporary file either


def test_render_escapes_names_and_paths() -> None:
    """Keys and values are TOML basic strings (quotes and backslashes escaped)."""
    assert render({'we"ird': "/p\\x.sock"}).splitlines()[-1] == '"we\\"ird" = "/p\\\\x.sock"'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vol:latest", "vol"),
        ("acme/vol:2.0", "acme/vol:2.0"),
        ("localhost:5000/v", "localhost:5000/v"),
    ],
)
def test_podman_name_drops_only_the_default_tag(name: str, expected: str) -> None:
    assert podman_name(name) == expected


def test_link_is_made_replaced_and_removed_only_when_ours(tmp_path: Path) -> None:
    """link_stable makes the directory, replaces another target; unlink keeps another's link."""
    from pluginkit._stable import link_stable, unlink_stable

    path = str(tmp_path / "by-name" / "p:latest.sock")
    link_stable(path, "/run/a.sock")
    assert os.readlink(path) == "/run/a.sock"
    link_stable(path, "/run/a.sock")  # unchanged: nothing to do
    link_stable(path, "/run/b.sock")
    assert os.readlink(path) == "/run/b.sock"
    assert sorted(os.listdir(tmp_path / "by-name")) == ["p:latest.sock"]  # no temporary left
    unlink_stable(path, "/run/a.sock")  # not ours any more: kept
    assert os.readlink(path) == "/run/b.sock"
    unlink_stable(path, "/run/b.sock")
    assert not (tmp_path / "by-name").exists()
