"""Manager state across restarts: reload, live restore, the root lock, crash safety."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _manager_helpers import Env, wait_for, write_plugin_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluginkit import (
    ErrNotFound,
    InvalidReferenceError,
    Manager,
    RootInUseError,
)
from pluginkit.runtime.process import ProcessRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent

SETTABLE_ENV = [{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}]


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


def _restart(env: Env, m: Manager, **kwargs: object) -> Manager:
    m.shutdown()
    env.managers.remove(m)
    new: Manager = env.manager(**kwargs)
    return new


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}


# -- reload ---------------------------------------------------------------------


def test_state_survives_a_restart(env: Env) -> None:
    """A new manager sees the same plugins, ids, settings and enabled flags."""
    m = env.manager()
    a = m.create("a", env.plugin_dir("a"))
    b = m.create("b", env.plugin_dir("b", Env=SETTABLE_ENV))
    m.enable("a")
    m.set("b", ["DEBUG=1"])
    before = {p.name: m.inspect(p.name) for p in m.list()}
    m2 = _restart(env, m)
    after = {p.name: m2.inspect(p.name) for p in m2.list()}
    assert after == before
    assert m2.get("a").id == a.id
    assert m2.get("b").id == b.id
    assert m2.lookup_with_capability("a", "volumedriver").enabled is True


def test_enabled_plugins_are_started_again(env: Env) -> None:
    """Shutdown stops enabled plugins; the next manager starts them again."""
    m = env.manager()
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.shutdown()
    assert env.runtime.running() == []
    env.managers.remove(m)
    m2 = env.manager()
    assert env.runtime.running() == ["a:latest"]
    assert env.runtime.started_count("a") == 2
    assert m2.lookup_with_capability("a", "volumedriver").name == "a:latest"


def test_a_plugin_failing_at_reload_does_not_stop_the_manager(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """An enabled plugin that cannot start at reload is logged and retried, not fatal."""
    caplog.set_level(logging.ERROR, "pluginkit.manager")
    m = env.manager()
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.shutdown()
    env.managers.remove(m)
    env.runtime.exit_on_start("a", 1, "broken", times=1)
    m2 = env.manager()
    assert any("cannot start plugin a:latest" in r.getMessage() for r in caplog.records)
    wait_for(lambda: env.runtime.running() == ["a:latest"])
    assert m2.get("a").enabled is True


def test_an_unreadable_plugin_is_skipped(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A broken record is logged and skipped; the other plugins load (moby#33799)."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    m = env.manager()
    a = m.create("a", env.plugin_dir("a"))
    m.create("b", env.plugin_dir("b"))
    m.shutdown()
    env.managers.remove(m)
    record = env.root / "plugins" / str(a.id) / "plugin.json"
    data = json.loads(record.read_text())
    data["Config"]["IpcHost"] = "yes"
    record.write_text(json.dumps(data))
    m2 = env.manager()
    assert [p.name for p in m2.list()] == ["b:latest"]
    assert any(
        r.getMessage().startswith(f"error loading plugin {a.id}, skipping: ")
        and "IpcHost" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    "text",
    ["", '{"Id": "trunc', "[" * 100_000 + "]" * 100_000],
    ids=["empty", "truncated", "nested-too-deeply"],
)
def test_a_corrupt_record_file_is_skipped(
    env: Env, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """A record file truncated or garbled on disk is logged and skipped; the others load."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    m = env.manager()
    a = m.create("a", env.plugin_dir("a"))
    m.create("b", env.plugin_dir("b"))
    m.enable("b")
    m.shutdown()
    env.managers.remove(m)
    record = env.root / "plugins" / str(a.id) / "plugin.json"
    record.write_text(text)
    m2 = env.manager()
    assert [(p.name, p.enabled) for p in m2.list()] == [("b:latest", True)]
    assert env.runtime.running() == ["b:latest"]
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"error loading plugin record {record}, skipping: ")


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("Enabled", "false", "Enabled must be true or false, got 'false'"),
        ("Enabled", 1, "Enabled must be true or false, got 1"),
        ("PluginReference", ["x"], "PluginReference must be a string, got ['x']"),
        ("Created", 12, "Created must be a string, got 12"),
        ("EnableTimeout", True, "EnableTimeout must be a number > 0, got True"),
        ("EnableTimeout", -1, "EnableTimeout must be a number > 0, got -1"),
    ],
)
def test_a_record_with_a_field_of_the_wrong_type_is_skipped(
    env: Env, caplog: pytest.LogCaptureFixture, field: str, value: object, why: str
) -> None:
    """A record field of the wrong type skips that plugin with a log naming file and field."""
    caplog.set_level(logging.WARNING, "pluginkit.manager")
    m = env.manager()
    a = m.create("a", env.plugin_dir("a"))
    m.create("b", env.plugin_dir("b"))
    m.shutdown()
    env.managers.remove(m)
    record = env.root / "plugins" / str(a.id) / "plugin.json"
    data = json.loads(record.read_text())
    data[field] = value
    record.write_text(json.dumps(data))
    m2 = env.manager()
    assert [p.name for p in m2.list()] == ["b:latest"]
    assert env.runtime.running() == []
    assert [r.getMessage() for r in caplog.records] == [
        f"error loading plugin {a.id}, skipping: {record}: {why}"
    ]


def test_a_record_under_the_wrong_directory_is_skipped(env: Env) -> None:
    """A record whose Id is not its directory's name is not loaded."""
    m = env.manager()
    a = m.create("a", env.plugin_dir("a"))
    m.shutdown()
    env.managers.remove(m)
    os.rename(env.root / "plugins" / str(a.id), env.root / "plugins" / ("0" * 64))
    assert env.manager().list() == []


# -- live restore ---------------------------------------------------------------


def test_live_restore_keeps_plugins_running(env: Env) -> None:
    """With live_restore, shutdown leaves plugins running and the next manager re-attaches."""
    m = env.manager(live_restore=True)
    p = m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.shutdown()
    env.managers.remove(m)
    assert env.runtime.running() == ["a:latest"]
    m2 = env.manager(live_restore=True)
    assert env.runtime.started_count("a") == 1
    assert m2.lookup_with_capability("a", "volumedriver").id == p.id
    m2.disable("a")
    assert env.runtime.running() == []


def test_live_restored_plugins_are_supervised(env: Env) -> None:
    """A re-attached plugin that crashes is restarted by the new manager."""
    m = env.manager(live_restore=True)
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.shutdown()
    env.managers.remove(m)
    env.manager(live_restore=True)
    env.runtime.crash("a")
    wait_for(lambda: "restart" in env.actions())
    assert env.runtime.started_count("a") == 2


def test_without_live_restore_a_survivor_is_restarted_fresh(env: Env) -> None:
    """A plugin left running is stopped and started anew when live restore is off."""
    m = env.manager(live_restore=True)
    m.create("a", env.plugin_dir("a"))
    m.enable("a")
    m.shutdown()
    env.managers.remove(m)
    m2 = env.manager(live_restore=False)
    assert env.runtime.started_count("a") == 2
    assert env.runtime.running() == ["a:latest"]
    assert m2.lookup_with_capability("a", "volumedriver").name == "a:latest"


PROCESS_PLUGIN = """\
#!{python}
import os, signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], os.environ["PLUGINKIT_SOCKET"])
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
"""


def _process_plugin_dir(base: Path) -> Path:
    ctx = write_plugin_dir(base, entrypoint=("/bin/plugin",))
    script = ctx / "rootfs" / "bin" / "plugin"
    script.parent.mkdir(exist_ok=True)
    script.write_text(PROCESS_PLUGIN.format(python=sys.executable))
    script.chmod(0o755)
    return ctx


def _pid(env: Env, plugin_id: str | None) -> int:
    state = json.loads(
        (env.root / "plugins" / str(plugin_id) / "runtime" / "process.json").read_text()
    )
    pid: int = state["pid"]
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError, IndexError):  # gone, or reaped while read
        return False


def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def test_live_restore_with_real_processes(short_tmp: Path) -> None:
    """ProcessRuntime: the plugin process outlives the manager and is re-attached, same pid."""
    env = Env(short_tmp, ProcessRuntime())
    try:
        m = env.manager(live_restore=True)
        p = m.create("proc", _process_plugin_dir(short_tmp / "ctx"))
        m.enable("proc", timeout=20)
        pid = _pid(env, p.id)
        m.shutdown()
        env.managers.remove(m)
        assert _alive(pid)
        env.runtime = ProcessRuntime()
        m2 = env.manager(live_restore=True)
        q = m2.lookup_with_capability("proc", "volumedriver")
        assert _pid(env, q.id) == pid
        assert _accepts(q.addr.removeprefix("unix://"))
        m2.disable("proc")
        wait_for(lambda: not _alive(pid))
    finally:
        env.close()


def test_shutdown_stops_real_processes_without_live_restore(short_tmp: Path) -> None:
    """ProcessRuntime without live restore: shutdown stops the process; reload starts a new one."""
    env = Env(short_tmp, ProcessRuntime())
    try:
        m = env.manager()
        p = m.create("proc", _process_plugin_dir(short_tmp / "ctx"))
        m.enable("proc", timeout=20)
        pid = _pid(env, p.id)
        m.shutdown()
        env.managers.remove(m)
        assert not _alive(pid)
        env.runtime = ProcessRuntime()
        m2 = env.manager()
        new_pid = _pid(env, p.id)
        assert new_pid != pid
        assert _alive(new_pid)
        assert m2.lookup_with_capability("proc", "volumedriver").id == p.id
    finally:
        env.close()


def test_a_killed_plugin_process_is_restarted(short_tmp: Path) -> None:
    """ProcessRuntime: SIGKILL of the plugin process gives exit + restart and a new process."""
    from pluginkit import RestartPolicy

    env = Env(short_tmp, ProcessRuntime())
    try:
        m = env.manager(restart_policy=RestartPolicy(initial_delay=0.01))
        p = m.create("proc", _process_plugin_dir(short_tmp / "ctx"))
        m.enable("proc", timeout=20)
        pid = _pid(env, p.id)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "restart" in env.actions(), timeout=20)
        new_pid = _pid(env, p.id)
        assert new_pid != pid
        assert _alive(new_pid)
        assert env.actions() == ["create", "enable", "exit", "restart"]
        assert m.lookup_with_capability("proc", "volumedriver") is p
    finally:
        env.close()


PROCESS_MANAGER = """\
import sys
from pluginkit import Manager
from pluginkit.runtime.process import ProcessRuntime
m = Manager(sys.argv[1], runtime=ProcessRuntime(), run_root=sys.argv[2], legacy=None)
m.create("proc", sys.argv[3])
m.enable("proc", timeout=20)
print(m.get("proc").id, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("live_restore", [True, False])
def test_plugins_of_a_killed_manager_process(short_tmp: Path, live_restore: bool) -> None:
    """ProcessRuntime: a SIGKILLed manager's plugin is re-attached (live restore) or replaced."""
    ctx = _process_plugin_dir(short_tmp / "ctx")
    root, run_root = short_tmp / "root", short_tmp / "run"
    with subprocess.Popen(
        [sys.executable, "-c", PROCESS_MANAGER, str(root), str(run_root), str(ctx)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_subprocess_env(),
    ) as child:
        assert child.stdout is not None
        plugin_id = child.stdout.readline().decode().strip()
        child.kill()
    env = Env(short_tmp, ProcessRuntime())
    try:
        pid = _pid(env, plugin_id)
        assert _alive(pid)  # the plugin outlived its manager
        m = env.manager(live_restore=live_restore)
        p = m.lookup_with_capability("proc", "volumedriver")
        assert p.id == plugin_id
        assert _accepts(p.addr.removeprefix("unix://"))
        new_pid = _pid(env, plugin_id)
        assert (new_pid == pid) is live_restore
        assert _alive(new_pid)
        if not live_restore:
            wait_for(lambda: not _alive(pid))
        m.disable("proc")
        wait_for(lambda: not _alive(new_pid))
    finally:
        env.close()


# -- the root lock --------------------------------------------------------------


def test_a_second_manager_on_the_root_is_refused(env: Env) -> None:
    """A second live Manager on the same root fails, naming the holder's pid."""
    env.manager()
    with pytest.raises(RootInUseError) as info:
        env.manager()
    assert str(info.value) == f"plugin root {env.root} is in use by process {os.getpid()}"


HOLDER = """\
import sys
from pluginkit import Manager
from pluginkit.testing import FakeRuntime
m = Manager(sys.argv[1], runtime=FakeRuntime(), run_root=sys.argv[2], legacy=None)
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_manager_in_another_process_holds_the_root(env: Env) -> None:
    """A manager in another process blocks this one until that process dies (even by SIGKILL)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(env.root), str(env.run_root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_subprocess_env(),
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            with pytest.raises(RootInUseError) as info:
                env.manager()
            assert str(info.value) == f"plugin root {env.root} is in use by process {child.pid}"
        finally:
            child.kill()
    env.manager()


# -- crash safety ---------------------------------------------------------------

MUTATOR = """\
import random, sys, tarfile
from pathlib import Path
from _manager_helpers import write_plugin_dir
from pluginkit import Manager, PluginError
from pluginkit.testing import FakeRuntime

root, run_root, src = sys.argv[1], sys.argv[2], Path(sys.argv[3])
env = [{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}]
ctx = write_plugin_dir(src, Env=env)
archive = src.parent / "plugin.tar"
with tarfile.open(archive, "w") as tar:
    tar.add(ctx, arcname="plugin")
m = Manager(root, runtime=FakeRuntime(), run_root=run_root, legacy=None)
print("ready", flush=True)
rng = random.Random()
while True:
    name = f"p{rng.randrange(6)}"
    try:
        action = rng.choice(["create", "install", "set", "enable", "disable", "remove"])
        if action == "create":
            m.create(name, ctx)
        elif action == "install":
            m.install(archive, name=name)
        elif action == "set":
            m.set(name, [f"DEBUG={rng.randrange(1000)}"])
        elif action == "enable":
            m.enable(name)
        elif action == "disable":
            m.disable(name)
        else:
            m.remove(name, force=True)
    except PluginError:
        pass
"""


@pytest.mark.slow
def test_kill_9_at_random_instants_leaves_a_loadable_state(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A process mutating the root, SIGKILLed at random instants, never leaves a broken state."""
    caplog.set_level(logging.WARNING, "pluginkit")
    rng = random.Random(4)
    seen = 0
    for _ in range(10):
        with subprocess.Popen(
            [sys.executable, "-c", MUTATOR, str(env.root), str(env.run_root), str(env.tmp / "src")],
            stdout=subprocess.PIPE,
            env=_subprocess_env(),
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.15))  # a random instant of the mutation loop
            child.send_signal(signal.SIGKILL)
        m = Manager(env.root, runtime=env.runtime, run_root=env.run_root, legacy=None)
        try:
            dirs = sorted(os.listdir(env.root / "plugins"))
            assert dirs == sorted(str(p.id) for p in m.list())
            assert os.listdir(env.root / "tmp") == []
            for p in m.list():
                assert m.inspect(p.name)["Id"] == p.id
            seen += len(dirs)
        finally:
            m.shutdown()
    assert [r.getMessage() for r in caplog.records if r.name == "pluginkit.manager"] == []
    assert seen > 0  # the mutator really mutated


# -- paths and modes ------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            ["../x", "/etc/passwd", "a/../../b", "..", ".", "a/./b", "a//b", "x\x00y", "..%2f", "~"]
        ),
        st.from_regex(r"[a-z0-9./_-]{1,30}", fullmatch=True),
    )
)
def test_names_never_escape_the_root(env: Env, name: str) -> None:
    """Whatever the name, create/get/remove raise a clean error or stay inside the root."""
    if not env.managers:
        env.manager()
        env.plugin_dir()
    m = env.managers[0]
    before = sorted(os.listdir(env.tmp))
    try:
        p = m.create(name, env.tmp / "src" / "ctx")
    except InvalidReferenceError:
        pass
    else:
        assert m.get(name) is p
        assert (env.root / "plugins" / str(p.id)).is_dir()
        m.remove(name)
    for op in (m.get, m.remove, m.enable, m.disable):
        with pytest.raises((ErrNotFound, InvalidReferenceError)):
            op(name)
    assert sorted(os.listdir(env.tmp)) == before
    assert sorted(os.listdir(env.root)) == ["lock", "plugins", "tmp"]
    assert os.listdir(env.root / "plugins") == []


def _id_attacks() -> st.SearchStrategy[tuple[int, str, str]]:
    """(cut, before, after): the plugin's id cut at ``cut`` and wrapped in traversal text."""
    wrap = st.sampled_from(
        ["", "../", "/", "./", "..", "/..", "%2e%2e/", "\x00", "\n", " ", "-removing", "/rootfs"]
    )
    return st.tuples(st.integers(0, 64), wrap | st.text(max_size=6), wrap | st.text(max_size=6))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(attack=_id_attacks())
def test_ids_never_escape_the_root(env: Env, attack: tuple[int, str, str]) -> None:
    """An id wrapped in traversal text finds the plugin only when it is a prefix; never a path."""
    if not env.managers:
        m = env.manager()
        # A name longer than the wrapping text, so no example can spell it.
        m.create("victim-plugin-x", env.plugin_dir())
        m.enable("victim-plugin-x")
    m = env.managers[0]
    p = m.get("victim-plugin-x")
    assert p.id is not None
    cut, before, after = attack
    ref = before + p.id[:cut] + after
    listing = sorted(os.listdir(env.root / "plugins"))
    if ref and p.id.startswith(ref):
        assert m.get(ref) is p
        assert m.lookup_with_capability(ref, "volumedriver") is p
        return
    for op in (
        m.get,
        m.inspect,
        m.enable,
        m.disable,
        lambda r: m.set(r, ["DEBUG=1"]),
        lambda r: m.remove(r, force=True),
        lambda r: m.lookup_with_capability(r, "volumedriver"),
        lambda r: m.use(r, "volumedriver").__enter__(),
    ):
        with pytest.raises((ErrNotFound, InvalidReferenceError)):
            op(ref)
    assert sorted(os.listdir(env.root / "plugins")) == listing == [p.id]
    assert sorted(os.listdir(env.root)) == ["lock", "plugins", "tmp"]
    assert m.lookup_with_capability("victim-plugin-x", "volumedriver") is p
    assert p.refcount == 0


def test_files_are_0600_and_directories_0700(env: Env) -> None:
    """State files are 0600; the root, plugin and run directories are 0700."""
    m = env.manager()
    p = m.create("a", env.plugin_dir("a"))
    m.enable("a")
    plugin_dir = env.root / "plugins" / str(p.id)
    assert _mode(env.root) == 0o700
    assert _mode(env.root / "plugins") == 0o700
    assert _mode(plugin_dir) == 0o700
    assert _mode(plugin_dir / "plugin.json") == 0o600
    assert _mode(env.root / "lock") == 0o600
    assert _mode(env.run_root) == 0o700
    assert _mode(env.run_root / str(p.id)) == 0o700


def test_the_record_holds_docker_shaped_state(env: Env) -> None:
    """plugin.json keeps the name, id, flags, reference, creation time, config and settings."""
    m = env.manager()
    p = m.create("a", env.plugin_dir("a"))
    record = json.loads((env.root / "plugins" / str(p.id) / "plugin.json").read_text())
    assert sorted(record) == [
        "Config",
        "Created",
        "EnableTimeout",
        "Enabled",
        "Id",
        "Name",
        "PluginReference",
        "Settings",
        "Version",
    ]
    assert record["Name"] == "a:latest"
    assert record["Config"] == m.inspect("a")["Config"]


def test_stale_work_is_cleaned_at_start(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted removal and an abandoned staging dir are cleaned at start."""
    m = env.manager()
    p = m.create("a", env.plugin_dir("a"))
    m.shutdown()
    env.managers.remove(m)
    plugins = env.root / "plugins"
    os.rename(plugins / str(p.id), plugins / f"{p.id}-removing")
    (env.root / "tmp" / "stage-abc" / "rootfs").mkdir(parents=True)
    monkeypatch.chdir(env.tmp)
    m2 = env.manager()
    assert m2.list() == []
    assert os.listdir(plugins) == []
    assert os.listdir(env.root / "tmp") == []


def test_the_default_run_root_is_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without run_root, sockets go to a short directory: /run as root, else XDG or /tmp."""
    from pluginkit import _manager

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _manager._default_run_root() == Path("/run/pluginkit")
    assert _manager._default_root() == Path("/var/lib/pluginkit")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert _manager._default_run_root() == tmp_path / "pluginkit"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert _manager._default_run_root() == Path(f"/tmp/pluginkit-{os.getuid()}")
    assert _manager._default_root().name == "pluginkit"
