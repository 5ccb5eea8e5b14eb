"""pluginkit daemon: the command line's path to it, plugin logs, and crash recovery.

Figures (ratios: pluginkit's time / the baseline's, median of interleaved
A/B pairs measured in this run):

- ``pluginkit ls`` answered by a running daemon vs ``docker plugin ls``
  answered by dockerd, with the same number of plugins on both;
- ``pluginkit logs --tail 5`` of a plugin that printed 10,000 lines vs a bare
  ``python -c pass``;
- a plugin killed with SIGKILL answers again under the daemon after X ms,
  against the restart policy's first delay + the plugin's own start time
  (the time ``enable`` takes), also measured here.

Needs ``/usr/bin/docker`` and a Docker engine for the first figure (skipped
without them). pluginkit runs byte-compiled, as an installed package does.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from _daemon_helpers import DaemonProcess, http, kill_leftovers, make_plugin_dir  # noqa: E402

DOCKER = "/usr/bin/docker"
PAIRS = 21
# What the `pluginkit` console script runs.
ENTRY = "import sys; from pluginkit.cli import main; sys.exit(main())"


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run once: (wall seconds, CPU seconds of the command's own process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command,
        env=env,
        cwd=_INSTALLED[0],  # not the checkout: `python -c` looks in its cwd first
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


CPU_RATIOS: list[float] = []


def pairs(
    a: list[str], a_env: dict[str, str], b: list[str], b_env: dict[str, str]
) -> tuple[float, float, float]:
    """Median ms of A, of B, and the median of the A/B ratios of interleaved pairs.

    The median ratio of the commands' own CPU times (less sensitive to a
    loaded machine; the servers' work is not counted on either side) is
    left in ``CPU_RATIOS``.
    """
    timed(a, a_env)
    timed(b, b_env)  # warm both
    ta, tb, ratios, cpu = [], [], [], []
    for i in range(PAIRS):
        if i % 2:
            y = timed(b, b_env)
            x = timed(a, a_env)
        else:
            x = timed(a, a_env)
            y = timed(b, b_env)
        ta.append(x[0])
        tb.append(y[0])
        ratios.append(x[0] / y[0])
        cpu.append(x[1] / y[1] if y[1] > 0 else float("nan"))
    CPU_RATIOS[:] = [statistics.median(cpu)]
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3, statistics.median(ratios)


def report(what: str, a: float, b: float, ratio: float, base: str) -> None:
    print(
        f"{what:<28} pluginkit {a:8.2f} ms   {base:<22} {b:8.2f} ms   ratio {ratio:5.2f}"
        f"   (CPU ratio {CPU_RATIOS[0]:4.2f})",
        flush=True,
    )


_INSTALLED: list[str] = [str(REPO)]


def env_of(d: DaemonProcess) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": _INSTALLED[0], "PLUGINKIT_RUNTIME": "process"}
    env.pop("PLUGINKIT_HOST", None)
    return env


def pk(d: DaemonProcess, *args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        ENTRY,
        "--root",
        str(d.root),
        "--run-root",
        str(d.run_root),
        *args,
    ]


def bench_ls(d: DaemonProcess, context: Path) -> None:
    if not os.access(DOCKER, os.X_OK):
        print("ls vs docker plugin ls: skipped (no Docker CLI)")
        return
    engine_env = {**os.environ}
    engine_env.pop("DOCKER_HOST", None)
    if subprocess.run([DOCKER, "info"], env=engine_env, capture_output=True).returncode != 0:
        print("ls vs docker plugin ls: skipped (no Docker engine)")
        return
    mine = [f"pkbench-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    try:
        for name in mine:
            # The engine refuses a second plugin with the same rootfs layer.
            own = make_plugin_dir(context.parent / name)
            (own / "rootfs" / "id").write_text(name)
            subprocess.run(
                [DOCKER, "plugin", "create", name, str(own)],
                env=engine_env,
                check=True,
                capture_output=True,
            )
        listed = subprocess.run(
            [DOCKER, "plugin", "ls", "-q"],
            env=engine_env,
            check=True,
            capture_output=True,
            text=True,
        )
        count = len(listed.stdout.split())
        for i in range(count):
            subprocess.run(
                pk(d, "create", f"p{i}", str(context)),
                env=env_of(d),
                check=True,
                capture_output=True,
            )
        a, b, ratio = pairs(pk(d, "ls"), env_of(d), [DOCKER, "plugin", "ls"], engine_env)
        report(f"ls ({count} plugins)", a, b, ratio, "docker plugin ls")
        # The floor: a Python that does nothing, against the same baseline.
        a, b, ratio = pairs(
            [sys.executable, "-c", "pass"], env_of(d), [DOCKER, "plugin", "ls"], engine_env
        )
        report("(python -c pass)", a, b, ratio, "docker plugin ls")
    finally:
        for name in mine:
            subprocess.run(
                [DOCKER, "plugin", "rm", "-f", name], env=engine_env, capture_output=True
            )


def bench_logs(d: DaemonProcess, context: Path) -> None:
    env = env_of(d)
    subprocess.run(
        pk(d, "create", "chatty", str(context)), env=env, check=True, capture_output=True
    )
    subprocess.run(pk(d, "set", "chatty", "LINES=10000"), env=env, check=True, capture_output=True)
    subprocess.run(pk(d, "enable", "chatty"), env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while (
        "listening"
        not in subprocess.run(
            pk(d, "logs", "--tail", "3", "chatty"), env=env, capture_output=True, text=True
        ).stdout
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the chatty plugin's lines never arrived")
        time.sleep(0.1)
    a, b, ratio = pairs(
        pk(d, "logs", "--tail", "5", "chatty"), env, [sys.executable, "-c", "pass"], env
    )
    report("logs --tail 5 (10,000 lines)", a, b, ratio, "python -c pass")


def pid_of(d: DaemonProcess, name: str) -> int | None:
    status, _, body = http(
        d.socket, "GET", f"/pluginkit/v1/lookup?name={name}&capability=volumedriver"
    )
    if status != 200:
        return None
    import socket as socketlib

    path = json.loads(body)["Addr"][len("unix://") :]
    sock = socketlib.socket(socketlib.AF_UNIX)
    sock.settimeout(2)
    try:
        sock.connect(path)
        sock.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        return None
    finally:
        sock.close()
    return int(json.loads(data.partition(b"\r\n\r\n")[2])["Pid"])


def bench_crash(d: DaemonProcess, context: Path) -> None:
    env = env_of(d)
    subprocess.run(
        pk(d, "create", "crashy", str(context)), env=env, check=True, capture_output=True
    )
    starts, recoveries = [], []
    for _ in range(7):
        start = time.perf_counter()
        status, _, body = http(d.socket, "POST", "/plugins/crashy/enable?timeout=30", b"")
        assert status == 200, body
        starts.append(time.perf_counter() - start)
        pid = pid_of(d, "crashy")
        assert pid is not None
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            new = pid_of(d, "crashy")
            if new is not None and new != pid:
                break
            time.sleep(0.002)
        recoveries.append(time.perf_counter() - killed)
        http(d.socket, "POST", "/plugins/crashy/disable", b"")
        time.sleep(0.2)
    first_delay = 0.1  # RestartPolicy().initial_delay, the daemon's default
    start_ms = statistics.median(starts) * 1e3
    budget = first_delay * 1e3 + start_ms
    back = statistics.median(recoveries) * 1e3
    print(
        f"crash -> answering again       {back:8.2f} ms   first delay {first_delay * 1e3:.0f} ms + "
        f"start {start_ms:.2f} ms = {budget:.2f} ms   ratio {back / budget:5.2f}",
        flush=True,
    )


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="pkbd-", dir="/tmp"))
    # An installed pluginkit runs from byte-compiled files (pip compiles them);
    # a checkout under PYTHONDONTWRITEBYTECODE would compile every module on
    # every command. The commands run a byte-compiled copy of the package.
    site = base / "site"
    shutil.copytree(REPO / "pluginkit", site / "pluginkit")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], check=True)
    _INSTALLED[0] = str(site)
    d = DaemonProcess(base)
    try:
        context = make_plugin_dir(base / "ctx")
        d.start()
        bench_ls(d, context)
        bench_logs(d, context)
        bench_crash(d, context)
    finally:
        d.stop()
        subprocess.run(pk(d, "--debug", "ls"), env=env_of(d), capture_output=True)
        # Stop the plugins the daemon left running (live restore).
        from pluginkit import Manager
        from pluginkit.runtime import ProcessRuntime

        runtime = ProcessRuntime()
        with Manager(d.root, run_root=d.run_root, runtime=runtime, legacy=None) as manager:
            for plugin in manager.list(enabled=True):
                manager.disable(plugin.name, force=True)
        runtime.close()
        kill_leftovers(d.root)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
