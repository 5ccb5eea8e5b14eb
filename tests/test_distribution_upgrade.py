"""Upgrade in place from a real registry: id and settings kept, enabled plugins swapped live."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PrivilegesNotGrantedError
from pluginkit.distribution import RegistryError
from pluginkit.runtime import ProcessRuntime
from tests._manager_helpers import Env
from tests._registry import run_registry

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def penv(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp, runtime=ProcessRuntime())
    try:
        yield e
    finally:
        e.close()


def _example(where: Path, description: str) -> Path:
    from pluginkit.examples.localvolume import plugin_dir

    shutil.copytree(plugin_dir(), where)
    config = json.loads((where / "config.json").read_text())
    config["Description"] = description
    (where / "config.json").write_text(json.dumps(config))
    return where


def _publisher(env: Env) -> Any:
    if not hasattr(env, "publisher"):
        env.publisher = env.manager(root=env.tmp / "publisher")  # type: ignore[attr-defined]
    return env.publisher  # type: ignore[attr-defined]


def _publish(env: Env, host: str, repo: str, versions: dict[str, Path]) -> None:
    m = _publisher(env)
    for tag, src in versions.items():
        m.create(f"{host}/{repo}:{tag}", src)
        m.push(f"{host}/{repo}:{tag}")


def test_upgrade_of_a_disabled_plugin_keeps_id_and_settings(registry: str, env: Env) -> None:
    """Config and rootfs come from the new version; the id and the values the user set stay.

    An unchanged default (LEVEL) and a value users cannot set (FIXED) take the
    new version's defaults.
    """
    v1 = env.plugin_dir(
        "v1",
        Env=[
            {"Name": "KEEP", "Settable": ["value"], "Value": "default"},
            {"Name": "GONE", "Settable": ["value"], "Value": "x"},
            {"Name": "LEVEL", "Settable": ["value"], "Value": "0"},
            {"Name": "FIXED", "Settable": [], "Value": "1"},
        ],
    )
    v2 = env.plugin_dir(
        "v2",
        Description="version two",
        Env=[
            {"Name": "KEEP", "Settable": ["value"], "Value": "new-default"},
            {"Name": "ADDED", "Settable": ["value"], "Value": "a"},
            {"Name": "LEVEL", "Settable": ["value"], "Value": "1"},
            {"Name": "FIXED", "Settable": [], "Value": "2"},
        ],
    )
    (v2 / "rootfs" / "v2-only").write_text("2")
    _publish(env, registry, "team/up", {"1": v1, "2": v2})
    m = env.manager()
    plugin = m.install(f"{registry}/team/up:1", name="up")
    m.set("up", ["KEEP=mine"])
    upgraded = m.upgrade("up", f"{registry}/team/up:2")
    assert upgraded.id == plugin.id
    assert upgraded.name == "up:latest"
    info = m.inspect("up")
    assert info["Config"]["Description"] == "version two"
    assert info["Settings"]["Env"] == ["KEEP=mine", "ADDED=a", "LEVEL=1", "FIXED=2"]
    assert info["PluginReference"] == f"{registry}/team/up:2"
    rootfs = env.root / "plugins" / plugin.id / "rootfs"
    assert (rootfs / "v2-only").read_text() == "2"
    assert [p.name for p in (env.root / "tmp").iterdir()] == []
    m.shutdown()
    again = env.manager()  # a restart reads the upgraded record
    assert again.inspect("up")["Settings"]["Env"] == ["KEEP=mine", "ADDED=a", "LEVEL=1", "FIXED=2"]
    assert again.get("up").id == plugin.id


def test_upgrade_without_ref_uses_the_plugin_reference(registry: str, env: Env) -> None:
    """upgrade(name) re-pulls the reference the plugin was installed from."""
    v1 = env.plugin_dir("a1")
    _publish(env, registry, "team/same", {"1": v1})
    m = env.manager()
    m.install(f"{registry}/team/same:1", name="same")
    pub = _publisher(env)
    pub.create("newer", env.plugin_dir("a2", Description="newer"))
    pub.push("newer", f"{registry}/team/same:1")
    m.upgrade("same")
    assert m.inspect("same")["Config"]["Description"] == "newer"


def test_upgrade_asks_for_the_new_privileges(registry: str, env: Env) -> None:
    """New privileges need a grant; without it nothing changes."""
    _publish(
        env,
        registry,
        "team/priv",
        {"1": env.plugin_dir("p1"), "2": env.plugin_dir("p2", Network={"Type": "host"})},
    )
    m = env.manager()
    m.install(f"{registry}/team/priv:1", name="priv")
    with pytest.raises(PrivilegesNotGrantedError):
        m.upgrade("priv", f"{registry}/team/priv:2")
    assert m.inspect("priv")["PluginReference"] == f"{registry}/team/priv:1"
    m.upgrade("priv", f"{registry}/team/priv:2", grant=True)
    assert m.inspect("priv")["Config"]["Network"]["Type"] == "host"


def test_upgrade_of_a_plugin_not_from_a_registry_needs_a_ref(env: Env) -> None:
    """A plugin created from a directory has no reference to upgrade from."""
    m = env.manager()
    m.install(env.plugin_dir("local"), name="local")
    with pytest.raises(RegistryError, match="was not installed from a registry"):
        m.upgrade("local")


def test_upgrade_of_an_enabled_plugin(registry: str, penv: Env) -> None:
    """A running plugin is stopped, swapped and started: it answers as the new version."""
    _publish(
        penv,
        registry,
        "team/live",
        {"1": _example(penv.tmp / "e1", "one"), "2": _example(penv.tmp / "e2", "two")},
    )
    m = penv.manager()
    m.install(f"{registry}/team/live:1", name="live", grant=True)
    m.set("live", [f"LOCALVOLUME_ROOT={penv.tmp / 'vols'}"])
    m.enable("live")
    m.get("live").client.call("VolumeDriver.Create", {"Name": "v1", "Opts": {}})
    m.upgrade("live", f"{registry}/team/live:2", grant=True)
    plugin = m.get("live")
    assert plugin.enabled
    assert plugin.config.description == "two"
    listed = plugin.client.call("VolumeDriver.List", {})
    assert [v["Name"] for v in listed["Volumes"]] == ["v1"]


def test_failed_upgrade_keeps_the_old_version_running(registry: str, penv: Env) -> None:
    """A new version that cannot start is swapped back; the old one runs again."""
    broken = penv.tmp / "broken"
    (broken / "rootfs").mkdir(parents=True)
    (broken / "config.json").write_text(
        json.dumps(
            {
                "Description": "dies at once",
                "Entrypoint": ["sh", "-c", "echo cannot start >&2; exit 3"],
                "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "b.sock"},
            }
        )
    )
    _publish(penv, registry, "team/fail", {"1": _example(penv.tmp / "f1", "good"), "2": broken})
    m = penv.manager()
    m.install(f"{registry}/team/fail:1", name="fail", grant=True)
    m.set("fail", [f"LOCALVOLUME_ROOT={penv.tmp / 'vols'}"])
    m.enable("fail")
    with pytest.raises(RegistryError) as info:
        m.upgrade("fail", f"{registry}/team/fail:2", grant=True)
    assert str(info.value).startswith("upgrade of fail:latest failed, the old version runs again: ")
    plugin = m.get("fail")
    assert plugin.enabled
    assert plugin.config.description == "good"
    assert plugin.client.call("VolumeDriver.List", {})["Volumes"] == []
    assert m.inspect("fail")["PluginReference"] == f"{registry}/team/fail:1"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("pluginkit.distribution._pull.apply_layer", "one"),  # killed while downloading
        ("pluginkit.distribution._upgrade._install_entry", "two"),  # killed right after the swap
    ],
    ids=["during-download", "after-swap"],
)
def test_kill_during_upgrade_leaves_one_whole_version(
    registry: str, env: Env, patch: str, expected: str
) -> None:
    """kill -9 at any point leaves the old or the new version whole, and tmp/ cleaned."""
    import os
    import subprocess
    import sys

    repo = f"team/killup{expected}"
    v1 = env.plugin_dir(f"k1{expected}", Description="one")
    v2 = env.plugin_dir(f"k2{expected}", Description="two")
    (v2 / "rootfs" / "big").write_bytes(os.urandom(1_000_000))
    _publish(env, registry, repo, {"1": v1, "2": v2})
    root = env.tmp / "killroot"
    m = env.manager(root=root)
    plugin = m.install(f"{registry}/{repo}:1", name="k")
    m.shutdown()
    module, _, attr = patch.rpartition(".")
    code = (
        "import importlib, time, pluginkit\n"
        "from pluginkit.testing import FakeRuntime\n"
        f"mod = importlib.import_module({module!r})\n"
        "def stuck(*a, **k):\n"
        "    print('stuck', flush=True); time.sleep(60)\n"
        f"setattr(mod, {attr!r}, stuck)\n"
        f"m = pluginkit.Manager({str(root)!r}, runtime=FakeRuntime(), legacy=None,"
        f" run_root={str(env.tmp / 'killrun')!r})\n"
        f"m.upgrade('k', {f'{registry}/{repo}:2'!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"stuck\n"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    again = env.manager(root=root)
    found = again.get("k")
    assert found.id == plugin.id
    assert found.config.description == expected
    assert sorted(os.listdir(root / "tmp")) == []
    assert sorted(os.listdir(root / "plugins")) == [plugin.id]
    rootfs = root / "plugins" / plugin.id / "rootfs"
    assert (rootfs / "big").exists() == (expected == "two")


VERSIONED_PLUGIN = """
import os
from pluginkit.sdk import PluginServer

server = PluginServer(["VolumeDriver"])

@server.handler("Version")
def version(request):
    return {"Version": os.environ["VERSION"]}

server.serve()
"""


def _versioned(where: Path, version: str, *, handoff: bool = True) -> Path:
    """An SDK plugin (run by the host's python3) answering ``Version`` with ``version``."""
    (where / "rootfs").mkdir(parents=True)
    (where / "rootfs" / "plugin.py").write_text(VERSIONED_PLUGIN)
    env = [{"Name": "VERSION", "Description": "", "Settable": [], "Value": version}]
    if handoff:
        env.append(
            {"Name": "PLUGINKIT_SOCKET_HANDOFF", "Description": "", "Settable": [], "Value": "1"}
        )
    config = {
        "Description": f"version {version}",
        "Entrypoint": ["python3", "plugin.py"],
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "v.sock"},
        "Env": env,
    }
    (where / "config.json").write_text(json.dumps(config))
    return where


def _calls_during_upgrade(
    m: Any, name: str, ref: str, *, last: str = "2"
) -> tuple[list[str], list[str], Exception | None]:
    """Call ``Version`` without retries during the upgrade, until ``last``.

    Returns the answers, the failed calls and the upgrade's error.
    """
    from pluginkit import Client

    plugin = m.get(name)
    client = Client(plugin.addr, retry_timeout=0, timeout=30)
    answers: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def loop() -> None:
        give_up = 0.0
        while not (done.is_set() and answers and answers[-1] == last):
            if done.is_set():
                give_up = give_up or time.monotonic() + 10
                if time.monotonic() > give_up:
                    return
            try:
                answers.append(client.call("Version", {})["Version"])
            except Exception as exc:  # every failure is recorded
                failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.005)

    thread = threading.Thread(target=loop)
    thread.start()
    error: Exception | None = None
    try:
        while not answers:
            time.sleep(0.01)
        m.upgrade(name, ref, grant=True)
    except Exception as exc:
        error = exc
    finally:
        done.set()
        thread.join(60)
        client.close()
    return answers, failures, error


def test_upgrade_hands_the_socket_over_so_no_call_fails(registry: str, penv: Env) -> None:
    """An opted-in SDK plugin is upgraded under load: no call fails, answers go from 1 to 2."""
    _publish(
        penv,
        registry,
        "team/handoff",
        {"1": _versioned(penv.tmp / "h1", "1"), "2": _versioned(penv.tmp / "h2", "2")},
    )
    m = penv.manager()
    m.install(f"{registry}/team/handoff:1", name="handoff", grant=True)
    m.enable("handoff")
    answers, failures, error = _calls_during_upgrade(m, "handoff", f"{registry}/team/handoff:2")
    assert error is None
    assert failures == []
    switch = answers.index("2")
    assert switch > 0
    assert set(answers[:switch]) == {"1"}
    assert set(answers[switch:]) == {"2"}
    plugin = m.get("handoff")
    assert plugin.enabled
    assert plugin.config.description == "version 2"
    # The new version serves on the handed-over socket; disable removes it as usual.
    socket_path = Path(plugin.addr[len("unix://") :])
    assert socket_path.exists()
    m.disable("handoff")
    assert not socket_path.exists()
    m.enable("handoff")
    assert plugin.client.call("Version", {}) == {"Version": "2"}


def test_upgrade_without_opt_in_stops_swaps_and_starts(registry: str, penv: Env) -> None:
    """A plugin that does not opt in is stopped first: calls without retry fail in the gap."""
    _publish(
        penv,
        registry,
        "team/plain",
        {
            "1": _versioned(penv.tmp / "p1", "1", handoff=False),
            "2": _versioned(penv.tmp / "p2", "2", handoff=False),
        },
    )
    m = penv.manager()
    m.install(f"{registry}/team/plain:1", name="plain", grant=True)
    m.enable("plain")
    answers, failures, error = _calls_during_upgrade(m, "plain", f"{registry}/team/plain:2")
    assert error is None
    assert failures
    assert answers[0] == "1"
    assert answers[-1] == "2"


def test_failed_handoff_upgrade_gives_the_socket_back_to_the_old_version(
    registry: str, penv: Env
) -> None:
    """A new version that dies is swapped back; the old one serves the same socket: no failure."""
    bad = _versioned(penv.tmp / "b2", "2")
    (bad / "rootfs" / "plugin.py").write_text("raise SystemExit('version 2 cannot start')\n")
    _publish(penv, registry, "team/back", {"1": _versioned(penv.tmp / "b1", "1"), "2": bad})
    m = penv.manager()
    m.install(f"{registry}/team/back:1", name="back", grant=True)
    m.enable("back")
    answers, failures, error = _calls_during_upgrade(m, "back", f"{registry}/team/back:2", last="1")
    assert isinstance(error, RegistryError)
    assert str(error).startswith("upgrade of back:latest failed, the old version runs again: ")
    assert failures == []
    assert set(answers) == {"1"}
    plugin = m.get("back")
    assert plugin.enabled
    assert plugin.config.description == "version 1"
    assert plugin.client.call("Version", {}) == {"Version": "1"}
