"""ProcessRuntime against real plugin processes (small Python scripts)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pluginkit import RuntimeStartError
from pluginkit.runtime import PluginExit, Runtime, RuntimeSpec, process
from pluginkit.runtime.process import ProcessRuntime, _parse_stat, _read_stat
from tests._runtime_helpers import Exits

REPO_ROOT = Path(__file__).resolve().parent.parent

# The plugin used by these tests. MODE (from the spec's env) picks what it does.
PLUGIN = """\
#!{python}
import json, os, signal, socket, sys, time

mode = os.environ.get("MODE", "serve")
print("hello on stdout", flush=True)
print("hello on stderr", file=sys.stderr, flush=True)
if mode == "env":
    print(json.dumps({{"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv}}), flush=True)
if mode == "crash":
    for i in range(30):
        print(f"problem {{i}}", file=sys.stderr)
    sys.exit(3)
if mode == "chatty":
    for i in range(400):
        print(f"line {{i:04d}} " + "x" * 90, flush=True)
    print("last line", flush=True)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "loud-exit":
    def loud_exit(*_):
        # Far more than a FIFO holds: this blocks until the runtime reads.
        for i in range(3000):
            print(f"bye {{i:04d}} " + "y" * 100, flush=True)
        print("last words", file=sys.stderr, flush=True)
        os._exit(5)
    signal.signal(signal.SIGTERM, loud_exit)
if mode == "partial":
    sys.stdout.write("no newline at the end")
    sys.stdout.flush()
    sys.exit(0)
if mode == "inherit":
    server = socket.socket(fileno=3)
    listening = server.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    listen_env = {{k: os.environ.get(k) for k in ("LISTEN_FDS", "LISTEN_PID")}}
    dump = {{"env": listen_env, "pid": os.getpid(), "listening": listening}}
    print(json.dumps(dump), flush=True)
    while True:
        conn, _ = server.accept()
        conn.close()
path = os.path.join(os.environ["PLUGINKIT_SOCKET_DIR"], os.environ["PLUGINKIT_SOCKET"])
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
while True:
    conn, _ = server.accept()
    conn.close()
"""


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def make_spec(
    base: Path,
    *,
    name: str = "demo:latest",
    mode: str = "serve",
    entrypoint: tuple[str, ...] = ("/bin/plugin",),
    args: tuple[str, ...] = (),
    env: tuple[str, ...] = (),
    workdir: str = "/",
) -> RuntimeSpec:
    rootfs = base / "rootfs"
    script = rootfs / "bin" / "plugin"
    if not script.exists():
        script.parent.mkdir(parents=True)
        script.write_text(PLUGIN.format(python=sys.executable))
        script.chmod(0o755)
    return RuntimeSpec(
        id=hashlib.sha256(name.encode()).hexdigest(),
        name=name,
        rootfs=rootfs,
        entrypoint=entrypoint,
        args=args,
        env=(f"MODE={mode}", *env),
        workdir=workdir,
        socket_dir=base / "run",
        socket="p.sock",
        state_dir=base / "state",
    )


def pid_of(spec: RuntimeSpec) -> int:
    pid = json.loads((spec.state_dir / "process.json").read_text())["pid"]
    assert isinstance(pid, int)
    return pid


def alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped while read
        return False
    return data[data.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def listening(spec: RuntimeSpec) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(spec.socket_path))
        except OSError:
            return False
    return True


def plugin_records(caplog: pytest.LogCaptureFixture, stream: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "pluginkit.plugin" and r.__dict__["stream"] == stream
    ]


def messages(caplog: pytest.LogCaptureFixture, stream: str) -> list[str]:
    return [r.getMessage() for r in plugin_records(caplog, stream)]


@pytest.fixture
def runtime() -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(grace=5.0)
    yield rt
    kill_all(rt)


def kill_all(rt: ProcessRuntime) -> None:
    """Stop every plugin a runtime still supervises, then close it."""
    if not rt._closed:
        for plugin_id in list(rt._procs):
            rt.stop(plugin_id, grace=0)
        rt.close()


@pytest.fixture
def spec(short_tmp: Path) -> RuntimeSpec:
    return make_spec(short_tmp)


# -- starting -------------------------------------------------------------------


def test_is_a_runtime(runtime: ProcessRuntime) -> None:
    """ProcessRuntime satisfies the Runtime protocol."""
    assert isinstance(runtime, Runtime)


def test_start_runs_the_plugin_until_it_listens(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """A started plugin runs, creates its socket and is reported running."""
    runtime.start(spec, Exits())
    wait_until(lambda: listening(spec), "the plugin's socket")
    assert runtime.is_running(spec.id)
    assert alive(pid_of(spec))


def test_environment_cwd_and_argv(
    runtime: ProcessRuntime,
    short_tmp: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plugin gets the minimal env, its settings, PLUGINKIT_* variables, workdir and args."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    monkeypatch.setenv("PYTHONPATH", "/some/where")
    monkeypatch.setenv("NOT_PASSED", "1")
    spec = make_spec(
        short_tmp, mode="env", args=("--one", "two"), env=("DEBUG=1", "EMPTY="), workdir="/data"
    )
    (spec.rootfs / "data").mkdir()
    runtime.start(spec, Exits())
    wait_until(lambda: any(m.startswith("{") for m in messages(caplog, "stdout")), "env dump")
    dump = json.loads(next(m for m in messages(caplog, "stdout") if m.startswith("{")))
    env = dump["env"]
    env.pop("LC_CTYPE", None)  # Python may set it itself (PEP 538)
    assert env == {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": "/some/where",
        "MODE": "env",
        "DEBUG": "1",
        "EMPTY": "",
        "PLUGINKIT_SOCKET_DIR": str(spec.socket_dir),
        "PLUGINKIT_SOCKET": "p.sock",
        "PLUGINKIT_PLUGIN_ID": spec.id,
        "PLUGINKIT_PLUGIN_NAME": "demo:latest",
    }
    assert dump["cwd"] == str(spec.rootfs / "data")
    assert dump["argv"] == [str(spec.rootfs / "bin" / "plugin"), "--one", "two"]


def test_cwd_falls_back_to_rootfs(
    runtime: ProcessRuntime, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A workdir missing from the rootfs makes the rootfs itself the working directory."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    spec = make_spec(short_tmp, mode="env", workdir="/missing")
    runtime.start(spec, Exits())
    wait_until(lambda: any(m.startswith("{") for m in messages(caplog, "stdout")), "env dump")
    dump = json.loads(next(m for m in messages(caplog, "stdout") if m.startswith("{")))
    assert dump["cwd"] == str(spec.rootfs)


def test_settings_env_overrides_path(
    runtime: ProcessRuntime, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PATH in the plugin's settings replaces the default one."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    spec = make_spec(short_tmp, mode="env", env=("PATH=/opt/bin",))
    runtime.start(spec, Exits())
    wait_until(lambda: any(m.startswith("{") for m in messages(caplog, "stdout")), "env dump")
    dump = json.loads(next(m for m in messages(caplog, "stdout") if m.startswith("{")))
    assert dump["env"]["PATH"] == "/opt/bin"


def test_entrypoint_found_on_path(short_tmp: Path) -> None:
    """An entrypoint that is not in the rootfs is looked up on the runtime's PATH."""
    bindir = short_tmp / "hostbin"
    bindir.mkdir()
    (bindir / "my-plugin").write_text(PLUGIN.format(python=sys.executable))
    (bindir / "my-plugin").chmod(0o755)
    rt = ProcessRuntime(path=f"{bindir}:/usr/bin:/bin")
    try:
        spec = make_spec(short_tmp, entrypoint=("my-plugin",))
        rt.start(spec, Exits())
        wait_until(lambda: listening(spec), "the plugin's socket")
        assert json.loads((spec.state_dir / "process.json").read_text())["argv"] == [
            str(bindir / "my-plugin")
        ]
    finally:
        kill_all(rt)


def test_host_interpreter_as_entrypoint(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A bare host program (the Python interpreter) runs with the entrypoint's arguments."""
    spec = make_spec(
        short_tmp, entrypoint=(Path(sys.executable).name, str(short_tmp / "rootfs/bin/plugin"))
    )
    rt = ProcessRuntime(path=str(Path(sys.executable).parent))
    try:
        rt.start(spec, Exits())
        wait_until(lambda: listening(spec), "the plugin's socket")
    finally:
        kill_all(rt)


def test_missing_entrypoint(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """An entrypoint found neither in the rootfs nor on PATH is a RuntimeStartError naming it."""
    spec = make_spec(spec.state_dir.parent, entrypoint=("no-such-plugin-binary",))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == (
        f'plugin demo:latest: entrypoint "no-such-plugin-binary" not found in {spec.rootfs} '
        "nor on PATH"
    )
    assert not runtime.is_running(spec.id)


def test_missing_absolute_entrypoint(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A missing absolute entrypoint names the rootfs and the host."""
    spec = make_spec(short_tmp, entrypoint=("/bin/nope",))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == (
        f'plugin demo:latest: entrypoint "/bin/nope" not found in {spec.rootfs} nor on the host'
    )


def test_not_executable_entrypoint(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """An entrypoint in the rootfs without the execute bit is refused by name."""
    spec = make_spec(short_tmp)
    (spec.rootfs / "bin" / "plugin").chmod(0o644)
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == (
        f'plugin demo:latest: entrypoint "/bin/plugin" ({spec.rootfs}/bin/plugin) is not executable'
    )


def test_empty_entrypoint(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A plugin without an entrypoint cannot start."""
    spec = make_spec(short_tmp, entrypoint=())
    with pytest.raises(RuntimeStartError, match=r"^plugin demo:latest has no entrypoint$"):
        runtime.start(spec, Exits())


def test_exec_failure(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A program the kernel cannot execute is a RuntimeStartError with the OS's reason."""
    spec = make_spec(short_tmp)
    (spec.rootfs / "bin" / "plugin").write_text("no shebang here\n")
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == (
        f"cannot start plugin demo:latest: {spec.rootfs}/bin/plugin: Exec format error"
    )


def test_missing_interpreter(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A script whose #! interpreter is missing says so."""
    spec = make_spec(short_tmp)
    (spec.rootfs / "bin" / "plugin").write_text("#!/no/such/interpreter\n")
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == (
        f"cannot start plugin demo:latest: {spec.rootfs}/bin/plugin: "
        "its interpreter was not found (No such file or directory)"
    )


def test_bad_env_entry(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """An env entry without '=' is refused by name."""
    spec = make_spec(short_tmp, env=("JUSTKEY",))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, Exits())
    assert str(info.value) == "plugin demo:latest: env entry 'JUSTKEY' is not KEY=VALUE"


def test_start_twice(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """Starting a plugin that runs already is an error."""
    runtime.start(spec, Exits())
    with pytest.raises(RuntimeStartError, match=r"^plugin demo:latest is already running$"):
        runtime.start(spec, Exits())


def test_stale_socket_removed_at_start(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """A socket left by a dead plugin is removed before the plugin starts again."""
    spec.socket_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(spec.socket_path))
    stale.close()
    runtime.start(spec, Exits())
    wait_until(lambda: listening(spec), "the plugin's socket")


def test_a_start_clears_temp_files_of_an_interrupted_state_write(
    runtime: ProcessRuntime, spec: RuntimeSpec
) -> None:
    """A temp file left by a kill during an earlier process.json write is gone after a start."""
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    (spec.state_dir / ".process.json.k1lled.tmp").write_text("{")
    runtime.start(spec, Exits())
    assert sorted(p.name for p in spec.state_dir.iterdir()) == [
        "process.json",
        "stderr.log",
        "stderr.pipe",
        "stdout.log",
        "stdout.pipe",
    ]


def test_state_file(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """process.json records pid, start time, boot id and argv, mode 0600."""
    runtime.start(spec, Exits())
    path = spec.state_dir / "process.json"
    record = json.loads(path.read_text())
    stat_fields = Path(f"/proc/{record['pid']}/stat").read_bytes().rsplit(b")", 1)[1].split()
    assert record == {
        "version": 1,
        "pid": record["pid"],
        "start_time": int(stat_fields[19]),
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "argv": [str(spec.rootfs / "bin" / "plugin")],
        "cgroup": record["cgroup"],
    }
    if runtime.containment == "cgroup":
        procs = Path(record["cgroup"], "cgroup.procs").read_text().split()
        assert procs == [str(record["pid"])]
    else:
        assert record["cgroup"] is None
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.getpgid(record["pid"]) == record["pid"]
    assert os.getsid(record["pid"]) == record["pid"]


# -- logs -----------------------------------------------------------------------


def test_output_lines_reach_the_logger(
    runtime: ProcessRuntime, spec: RuntimeSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines that say no level are logged at INFO (both streams), with plugin and stream."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    runtime.start(spec, Exits())
    wait_until(lambda: plugin_records(caplog, "stdout"), "stdout line")
    wait_until(lambda: plugin_records(caplog, "stderr"), "stderr line")
    [out] = plugin_records(caplog, "stdout")
    [err] = plugin_records(caplog, "stderr")
    assert (out.getMessage(), out.levelno, out.__dict__["plugin"], out.__dict__["plugin_name"]) == (
        "hello on stdout",
        logging.INFO,
        spec.id,
        "demo:latest",
    )
    assert (err.getMessage(), err.levelno, err.__dict__["plugin"]) == (
        "hello on stderr",
        logging.INFO,
        spec.id,
    )


def test_log_levels_are_configurable(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    """stdout_level and stderr_level choose the levels of forwarded lines."""
    caplog.set_level(logging.DEBUG, logger="pluginkit.plugin")
    rt = ProcessRuntime(stdout_level=logging.DEBUG, stderr_level=logging.ERROR)
    try:
        rt.start(make_spec(short_tmp), Exits())
        wait_until(lambda: plugin_records(caplog, "stdout"), "stdout line")
        wait_until(lambda: plugin_records(caplog, "stderr"), "stderr line")
        assert plugin_records(caplog, "stdout")[0].levelno == logging.DEBUG
        assert plugin_records(caplog, "stderr")[0].levelno == logging.ERROR
    finally:
        kill_all(rt)


def test_last_partial_line_is_logged_at_exit(
    runtime: ProcessRuntime, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Output without a final newline is still logged when the plugin exits."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    exits = Exits()
    runtime.start(make_spec(short_tmp, mode="partial"), exits)
    assert exits.wait().exit_code == 0
    assert messages(caplog, "stdout") == ["hello on stdout", "no newline at the end"]


def test_log_files_stay_bounded(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A log file is truncated once read past max_log_bytes; the lines still reach the logger."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    rt = ProcessRuntime(max_log_bytes=4096)
    try:
        spec = make_spec(short_tmp, mode="chatty")
        rt.start(spec, Exits())
        wait_until(lambda: "last line" in messages(caplog, "stdout"), "the last line")
        log = spec.state_dir / "stdout.log"
        wait_until(lambda: log.stat().st_size < 4096, "the truncation")
        assert len(messages(caplog, "stdout")) > 100
    finally:
        kill_all(rt)


def test_log_files_truncated_at_start(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """The previous run's log files are emptied when the plugin starts again."""
    spec.state_dir.mkdir(parents=True)
    (spec.state_dir / "stdout.log").write_text("old run\n" * 1000)
    runtime.start(spec, Exits())
    wait_until(lambda: listening(spec), "the plugin's socket")
    assert (spec.state_dir / "stdout.log").read_text() == "hello on stdout\n"


# -- exits ----------------------------------------------------------------------


def test_crash_reports_exit_code_and_stderr_tail(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A plugin that dies is reported once, with its exit code and its last 20 stderr lines."""
    exits = Exits()
    spec = make_spec(short_tmp, mode="crash")
    runtime.start(spec, exits)
    exit_ = exits.wait()
    assert exit_ == PluginExit(spec.id, 3, "\n".join(f"problem {i}" for i in range(10, 30)))
    assert not runtime.is_running(spec.id)
    assert not (spec.state_dir / "process.json").exists()


def test_crash_detected_without_pidfd(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pidfds (old kernels) a child's exit is found by polling, code included."""
    monkeypatch.delattr(os, "pidfd_open")
    rt = ProcessRuntime()
    try:
        exits = Exits()
        rt.start(make_spec(short_tmp, mode="crash"), exits)
        assert exits.wait().exit_code == 3
    finally:
        kill_all(rt)


def test_stderr_tail_length_is_configurable(short_tmp: Path) -> None:
    """stderr_tail_lines sets how many lines an exit carries."""
    rt = ProcessRuntime(stderr_tail_lines=2)
    try:
        exits = Exits()
        rt.start(make_spec(short_tmp, mode="crash"), exits)
        assert exits.wait().stderr_tail == "problem 28\nproblem 29"
    finally:
        kill_all(rt)


def test_plugin_can_be_started_again_after_exit(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """After an exit the same plugin id can be started again (a restart)."""
    exits = Exits()
    spec = make_spec(short_tmp, mode="crash")
    runtime.start(spec, exits)
    exits.wait()
    runtime.start(spec, exits)
    assert exits.wait(2).exit_code == 3


def test_restart_from_on_exit(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """on_exit may start the plugin again from inside the callback."""
    spec = make_spec(short_tmp, mode="crash")
    exits = Exits()

    def on_exit(exit_: PluginExit) -> None:
        exits(exit_)
        if len(exits.exits) < 3:
            runtime.start(spec, on_exit)

    runtime.start(spec, on_exit)
    exits.wait(3)
    assert [e.exit_code for e in exits.exits] == [3, 3, 3]


def test_failing_callback_is_logged(
    runtime: ProcessRuntime, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in on_exit is logged and does not stop supervision."""
    exits = Exits()

    def broken(exit_: PluginExit) -> None:
        raise ValueError("boom")

    runtime.start(make_spec(short_tmp / "a", mode="crash", name="a:latest"), broken)
    wait_until(
        lambda: any("on_exit callback for plugin" in r.getMessage() for r in caplog.records),
        "the error log",
    )
    runtime.start(make_spec(short_tmp / "b", mode="crash", name="b:latest"), exits)
    assert exits.wait().exit_code == 3


# -- stop -----------------------------------------------------------------------


def test_stop_sends_sigterm(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """stop() ends a plugin with SIGTERM and returns once it is gone."""
    exits = Exits()
    runtime.start(spec, exits)
    wait_until(lambda: listening(spec), "the plugin's socket")
    pid = pid_of(spec)
    runtime.stop(spec.id)
    assert not alive(pid)
    assert not runtime.is_running(spec.id)
    assert exits.wait().exit_code == -signal.SIGTERM
    assert not spec.socket_path.exists()


def test_stop_reads_what_a_plugin_writes_while_it_exits(
    short_tmp: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """A plugin writing more than its FIFO holds after SIGTERM still exits, long before the grace.

    The stop waits for the exit alone first, then reads the plugin's output
    while it waits; every line reaches the log, and the exit reported after
    stop() returns carries the exit status and the last stderr lines.
    """
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    exits = Exits()
    spec = make_spec(short_tmp, mode="loud-exit")
    runtime = ProcessRuntime(log_rate=1e6)  # every line logged: none dropped by the rate cap
    request.addfinalizer(lambda: kill_all(runtime))
    runtime.start(spec, exits)
    wait_until(lambda: listening(spec), "the plugin's socket")
    started = time.monotonic()
    runtime.stop(spec.id, grace=30)
    assert time.monotonic() - started < 10
    assert not runtime.is_running(spec.id)
    assert exits.wait() == PluginExit(spec.id, 5, "hello on stderr\nlast words")
    lines = messages(caplog, "stdout")
    assert lines[0] == "hello on stdout"
    assert lines[1:] == [f"bye {i:04d} " + "y" * 100 for i in range(3000)]


def test_stop_kills_after_grace(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """A plugin ignoring SIGTERM is killed with SIGKILL after the grace period."""
    exits = Exits()
    spec = make_spec(short_tmp, mode="ignore-term")
    runtime.start(spec, exits)
    wait_until(lambda: listening(spec), "the plugin's socket")
    runtime.stop(spec.id, grace=0.2)
    assert exits.wait().exit_code == -signal.SIGKILL
    assert len(exits.exits) == 1


def test_stop_reaches_the_whole_process_group(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """SIGTERM goes to the plugin's process group, so its children stop too."""
    rootfs = short_tmp / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    (rootfs / "plugin").write_text("#!/bin/sh\nsleep 300 &\necho $! >child.pid\nwait\n")
    (rootfs / "plugin").chmod(0o755)
    spec = make_spec(short_tmp)
    exits = Exits()
    runtime.start(spec, exits)
    pidfile = spec.rootfs / "child.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the child's pid")
    child = int(pidfile.read_text())
    runtime.stop(spec.id)
    exits.wait()
    wait_until(lambda: not alive(child), "the child's end")


def test_stop_when_not_running(runtime: ProcessRuntime, short_tmp: Path) -> None:
    """Stopping an unknown or exited plugin is not an error."""
    runtime.stop("0" * 64)
    exits = Exits()
    spec = make_spec(short_tmp, mode="crash")
    runtime.start(spec, exits)
    exits.wait()
    runtime.stop(spec.id)
    assert len(exits.exits) == 1


def test_discard_removes_state(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """discard() stops the plugin and deletes its state and log files."""
    runtime.start(spec, Exits())
    runtime.discard(spec.id)
    assert sorted(p.name for p in spec.state_dir.iterdir()) == []


def test_closed_runtime_refuses_work(spec: RuntimeSpec) -> None:
    """Using a runtime after close() raises RuntimeError; close() is idempotent."""
    rt = ProcessRuntime()
    rt.close()
    rt.close()
    with pytest.raises(RuntimeError, match=r"^ProcessRuntime is closed$"):
        rt.start(spec, Exits())
    with pytest.raises(RuntimeError, match=r"^ProcessRuntime is closed$"):
        rt.is_running(spec.id)


def test_bad_arguments() -> None:
    """Constructor arguments out of range are refused by name."""
    with pytest.raises(ValueError, match=r"^grace must be >= 0, not -1$"):
        ProcessRuntime(grace=-1)
    with pytest.raises(ValueError, match=r"^max_log_bytes must be > 0, not 0$"):
        ProcessRuntime(max_log_bytes=0)


# -- live restore ---------------------------------------------------------------


def test_plugin_survives_close(spec: RuntimeSpec) -> None:
    """close() leaves plugins running; a new runtime re-attaches and still stops them."""
    first = ProcessRuntime()
    exits = Exits()
    first.start(spec, exits)
    wait_until(lambda: listening(spec), "the plugin's socket")
    pid = pid_of(spec)
    first.close()
    assert alive(pid)
    assert exits.exits == []

    second = ProcessRuntime()
    try:
        assert second.restore(spec, exits)
        assert second.is_running(spec.id)
        second.stop(spec.id)
        # Adopted in the same process: still our child, so the status is known.
        assert exits.wait() == PluginExit(spec.id, -signal.SIGTERM, "hello on stderr")
    finally:
        kill_all(second)


HELPER = """\
import json, sys
from pathlib import Path
from pluginkit.runtime import RuntimeSpec
from pluginkit.runtime.process import ProcessRuntime

fields = json.loads(sys.argv[1])
for key in ("rootfs", "socket_dir", "state_dir"):
    fields[key] = Path(fields[key])
for key in ("entrypoint", "env"):
    fields[key] = tuple(fields[key])
spec = RuntimeSpec(**fields)
runtime = ProcessRuntime()
runtime.start(spec, print)
runtime.close()
"""


def start_in_dying_manager(spec: RuntimeSpec) -> int:
    """Start the plugin from another Python process that then exits; return the plugin's pid."""
    fields = {
        "id": spec.id,
        "name": spec.name,
        "rootfs": str(spec.rootfs),
        "entrypoint": list(spec.entrypoint),
        "env": list(spec.env),
        "socket_dir": str(spec.socket_dir),
        "socket": spec.socket,
        "state_dir": str(spec.state_dir),
    }
    subprocess.run(
        [sys.executable, "-c", HELPER, json.dumps(fields)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
        timeout=60,
    )
    return pid_of(spec)


@pytest.fixture
def orphan(spec: RuntimeSpec) -> Iterator[int]:
    """A plugin started by a manager process that has exited since: not our child."""
    pid = start_in_dying_manager(spec)
    wait_until(lambda: listening(spec), "the plugin's socket")
    yield pid
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def test_restore_after_manager_death(spec: RuntimeSpec, orphan: int) -> None:
    """A new runtime re-attaches to a plugin whose manager died and sees its later exit."""
    rt = ProcessRuntime()
    exits = Exits()
    try:
        assert rt.restore(spec, exits)
        assert rt.is_running(spec.id)
        os.kill(orphan, signal.SIGKILL)
        # Not our child: the exit status is unknown.
        assert exits.wait() == PluginExit(spec.id, None, "hello on stderr")
        assert not rt.is_running(spec.id)
        assert not (spec.state_dir / "process.json").exists()
    finally:
        kill_all(rt)


def test_restore_then_stop(spec: RuntimeSpec, orphan: int) -> None:
    """A re-attached plugin is stopped through its process group."""
    rt = ProcessRuntime()
    exits = Exits()
    try:
        assert rt.restore(spec, exits)
        rt.stop(spec.id)
        assert not alive(orphan)
        assert exits.wait().exit_code is None
    finally:
        kill_all(rt)


def test_restore_forwards_new_output_only(
    spec: RuntimeSpec, orphan: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines written while no manager read are forwarded on re-attaching, the others not again."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    before = (spec.state_dir / "stderr.log").read_text().splitlines()
    rt = ProcessRuntime()
    try:
        assert rt.restore(spec, Exits())
        with (spec.state_dir / "stderr.pipe").open("w") as f:
            f.write("written later\n")
        wait_until(lambda: "written later" in messages(caplog, "stderr"), "the new line")
        # The dying manager may or may not have read the first line: either
        # it reached the log file then, or it is forwarded now; never both.
        assert before + messages(caplog, "stderr") == ["hello on stderr", "written later"]
        on_disk = (spec.state_dir / "stderr.log").read_text().splitlines()
        assert on_disk == ["hello on stderr", "written later"]
    finally:
        kill_all(rt)


def test_restore_without_pidfd(
    spec: RuntimeSpec, orphan: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pidfds (old kernels) the exit of a re-attached plugin is found through /proc."""
    monkeypatch.delattr(os, "pidfd_open")
    rt = ProcessRuntime()
    exits = Exits()
    try:
        assert rt.restore(spec, exits)
        os.kill(orphan, signal.SIGKILL)
        assert exits.wait().exit_code is None
    finally:
        kill_all(rt)


def test_restore_refuses_recycled_pid(spec: RuntimeSpec) -> None:
    """A live pid whose start time differs from the record is not the plugin: never signalled."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        spec.state_dir.mkdir(parents=True)
        record = {
            "version": 1,
            "pid": bystander.pid,
            "start_time": 1,
            "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "argv": ["/bin/plugin"],
        }
        (spec.state_dir / "process.json").write_text(json.dumps(record))
        rt = ProcessRuntime()
        try:
            assert not rt.restore(spec, Exits())
            assert not rt.is_running(spec.id)
            rt.stop(spec.id, grace=0)
        finally:
            rt.close()
        assert bystander.poll() is None
        assert not (spec.state_dir / "process.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_restore_refuses_other_boot(spec: RuntimeSpec, orphan: int) -> None:
    """A record from another boot is stale even if the pid and start time match."""
    path = spec.state_dir / "process.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "boot_id": "another-boot"}))
    rt = ProcessRuntime()
    try:
        assert not rt.restore(spec, Exits())
    finally:
        rt.close()
    # Not signalled through its record; but what is left in the plugin's own
    # cgroup is the plugin's by construction, and killed.
    assert alive(orphan) == (rt.containment == "process-group")
    assert not path.exists()


def test_restore_dead_plugin(spec: RuntimeSpec, orphan: int) -> None:
    """A plugin that died while no manager watched is not restored; its leftovers go."""
    os.kill(orphan, signal.SIGKILL)
    wait_until(lambda: not alive(orphan), "the plugin's end")
    assert spec.socket_path.exists()
    rt = ProcessRuntime()
    try:
        assert not rt.restore(spec, Exits())
    finally:
        rt.close()
    assert not (spec.state_dir / "process.json").exists()
    assert not spec.socket_path.exists()


@pytest.mark.parametrize("content", ["", "{not json", '{"pid": "12"}', "[]"])
def test_restore_ignores_bad_state_file(spec: RuntimeSpec, content: str) -> None:
    """A missing, unreadable or malformed state file means: not running."""
    spec.state_dir.mkdir(parents=True)
    if content:
        (spec.state_dir / "process.json").write_text(content)
    rt = ProcessRuntime()
    try:
        assert not rt.restore(spec, Exits())
    finally:
        rt.close()
    assert not (spec.state_dir / "process.json").exists()


def test_restore_of_supervised_plugin(runtime: ProcessRuntime, spec: RuntimeSpec) -> None:
    """Restoring a plugin this runtime already supervises says it runs and takes the callback."""
    old, new = Exits(), Exits()
    runtime.start(spec, old)
    assert runtime.restore(spec, new)
    runtime.stop(spec.id)
    assert new.wait().exit_code == -signal.SIGTERM
    assert old.exits == []


# -- /proc parsing --------------------------------------------------------------


@given(
    comm=st.binary(max_size=16).filter(lambda b: b"\0" not in b),
    state=st.sampled_from("RSDZTtXIP"),
    start_time=st.integers(min_value=0, max_value=2**63),
)
def test_parse_stat_any_command_name(comm: bytes, state: str, start_time: int) -> None:
    """State and start time are found whatever the command name holds (spaces, parens)."""
    fields = [state, *[str(n) for n in range(4, 22)], str(start_time), "0", "0"]
    data = b"1234 (" + comm + b") " + " ".join(fields).encode() + b"\n"
    stat = _parse_stat(data)
    assert (stat.state, stat.start_time) == (state, start_time)


def test_read_stat_of_this_process() -> None:
    """Our own stat reads as running, with the start time of field 22."""
    stat = _read_stat(os.getpid())
    assert stat is not None
    assert stat.state in "RS"
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    assert stat.start_time == int(fields[19])


def test_start_from_on_exit_while_another_exit_is_queued(short_tmp: Path) -> None:
    """on_exit of A may start B, whose own exit is still queued behind it: no wait."""
    rt = ProcessRuntime(grace=5)
    a = make_spec(short_tmp / "a", name="a:latest")
    b = make_spec(short_tmp / "b", name="b:latest")
    started: list[float] = []
    b_exits = Exits()

    def on_a_exit(exit_: PluginExit) -> None:
        wait_until(lambda: not rt.is_running(b.id), "B's exit")
        t0 = time.monotonic()
        rt.start(b, b_exits)
        started.append(time.monotonic() - t0)

    try:
        rt.start(a, on_a_exit)
        rt.start(b, b_exits)
        wait_until(lambda: listening(a) and listening(b), "both plugins")
        os.kill(pid_of(a), signal.SIGKILL)
        os.kill(pid_of(b), signal.SIGKILL)
        wait_until(lambda: started, "the start from on_exit")
        assert started[0] < 2.0
        wait_until(lambda: listening(b), "B again")
        assert rt.is_running(b.id)
        assert b_exits.wait().exit_code == -signal.SIGKILL
    finally:
        kill_all(rt)


def test_listen_fd_is_handed_over_as_systemd_does(
    runtime: ProcessRuntime, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """spec.listen_fd: descriptor 3 in the plugin, LISTEN_FDS=1, LISTEN_PID its pid.

    The socket is the caller's: it is not removed before the start, nor after the exit.
    """
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    spec = make_spec(short_tmp, mode="inherit")
    spec.socket_dir.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(spec.socket_path))
    listener.listen(16)
    spec = attrs.evolve(spec, listen_fd=listener.fileno())
    try:
        runtime.start(spec, Exits())
        wait_until(lambda: any(m.startswith("{") for m in messages(caplog, "stdout")), "dump")
        dump = json.loads(next(m for m in messages(caplog, "stdout") if m.startswith("{")))
        assert dump == {
            "env": {"LISTEN_FDS": "1", "LISTEN_PID": str(dump["pid"])},
            "pid": pid_of(spec),
            "listening": 1,
        }
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(spec.socket_path))
            assert s.recv(1) == b""  # accepted (and closed) by the plugin
        runtime.stop(spec.id)
        assert stat.S_ISSOCK(spec.socket_path.lstat().st_mode)  # still the caller's
    finally:
        listener.close()


def test_close_from_on_exit_reaps_a_plugin_whose_clean_up_waits(short_tmp: Path) -> None:
    """close() called by an on_exit callback while another plugin's clean-up is still queued.

    That plugin has exited (stop returned) but is not reaped yet: close()
    reaps it rather than keeping it for a later re-attach.
    """
    runtime = ProcessRuntime(grace=5.0)
    go, closed = threading.Event(), threading.Event()

    def close_when_told(_: PluginExit) -> None:
        go.wait(10)
        runtime.close()
        closed.set()

    first = make_spec(short_tmp / "a", name="first:latest")
    second = make_spec(short_tmp / "b", name="second:latest")
    runtime.start(first, close_when_told)
    runtime.start(second, Exits())
    wait_until(lambda: listening(first) and listening(second), "both sockets")
    pid = pid_of(second)
    runtime.stop(first.id)  # its on_exit now waits for `go` on the dispatcher thread
    runtime.stop(second.id)  # exited; its clean-up (and reaping) queued behind
    go.set()
    assert closed.wait(10)
    assert pid not in process._detached
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the second plugin reaped")
