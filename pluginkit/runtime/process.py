"""ProcessRuntime: each plugin is a host process in its own session (and cgroup).

One monitor thread per runtime watches every plugin process (a pidfd each
where the kernel has them, polling otherwise) and drains their output FIFOs
(one epoll set for all); one dispatcher thread calls the ``on_exit``
callbacks, so that a slow callback never delays exit detection or logging.

Linux only: liveness and reuse-safety rely on ``/proc`` and pidfds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import RuntimeStartError
from .._store import atomic_write
from ._base import ExitCallback, PluginExit, RuntimeSpec
from ._cgroup import CGroup, cgroup_base, plugin_cgroup_name
from ._dispatch import ExitDispatcher
from ._listen_fd import exec_with_listen_fd, remove_dead_socket
from ._proclog import OutputStats, OutputStream, make_fifo, open_for_plugin

__all__ = ["OutputStats", "ProcessRuntime"]

_log = logging.getLogger("pluginkit.runtime.process")

STATE_FILE = "process.json"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
_STREAMS = ("stdout", "stderr")
_STATE_VERSION = 1

# Without pidfds (old kernels) exits are found by polling this often.
_TICK = 0.05
# After SIGKILL, how long stop() waits before giving up (Docker: 10 s too).
_KILL_WAIT = 10.0
# How long a stop waits for the exit alone before it also reads the plugin's output.
_QUICK_EXIT = 0.05

# Children whose runtime was closed while they still ran. Keeping their Popen
# objects alive stops subprocess from warning about them and from reaping them
# behind our back; a later restore() in this process adopts them again (and so
# still learns their exit code).
_detached: dict[int, subprocess.Popen[bytes]] = {}
_detached_lock = threading.Lock()


def _fifo(state_dir: Path, stream: str) -> Path:
    return state_dir / f"{stream}.pipe"


def _log_file(state_dir: Path, stream: str) -> Path:
    return state_dir / f"{stream}.log"


class ProcessRuntime:
    """Run each managed plugin as a host process (no isolation).

    For development and for hosts without Docker: the plugin runs with the
    privileges of the manager, sees the host's filesystem and network, and
    mounts, devices, Linux capabilities and network/IPC/PID settings of its
    config are ignored. Linux only.

    **Command.** ``spec.entrypoint[0]`` is looked up inside ``spec.rootfs``
    first: ``rootfs/<entrypoint[0] without its leading />`` is used when it
    is an executable file. Otherwise an absolute path names a host binary
    and a bare name is looked up on the plugin's ``PATH``, so a plugin can be
    a host program, e.g. ``["python3", "-m", "pluginkit.examples.localvolume"]``.
    The command line is the entrypoint followed by ``spec.args``.

    **Working directory.** ``rootfs/<spec.workdir>`` when it is a directory,
    else ``rootfs``, else ``spec.state_dir`` (a plugin without rootfs).

    **Environment.** Deliberately minimal, so that plugins behave the same
    whoever starts them: ``PATH`` (the ``path`` argument, default the host's
    ``PATH``), the host variables named in ``env_passthrough`` that are set
    (default ``PYTHONPATH``, so that ``python3 -m pluginkit...`` works from a
    source checkout), then ``spec.env`` (the plugin's settings, ``KEY=VALUE``,
    which may override those), then ``PLUGINKIT_SOCKET_DIR`` (the directory
    where the plugin must create its socket), ``PLUGINKIT_SOCKET`` (the
    socket's file name), ``PLUGINKIT_PLUGIN_ID`` and ``PLUGINKIT_PLUGIN_NAME``.
    Stdin is ``/dev/null``. With ``spec.listen_fd`` (an upgrade handing the
    plugin's listening socket over) the plugin also gets it as descriptor 3
    with ``LISTEN_FDS=1`` and ``LISTEN_PID``, as systemd passes sockets.

    **User.** ``spec.user`` is applied when the manager runs as root; else
    the plugin runs as the current user and a warning is logged.

    **Sessions and live restore.** Each plugin leads its own session and
    process group, so it is not hit by signals meant for the manager (Ctrl-C
    in a terminal) and outlives it. ``spec.state_dir/process.json`` records
    its pid, its start time (field 22 of ``/proc/<pid>/stat``), the boot id,
    the command line and its cgroup, written atomically. :meth:`restore`
    re-attaches only to a process whose pid, start time and boot id all
    match, so a recycled pid is never taken for the plugin (and never
    signalled).

    **Containment.** Everything a plugin starts dies with it: when its main
    process exits (crash, :meth:`stop`), whatever it left running is killed
    before the exit is reported. Where a cgroup v2 hierarchy is writable, each
    plugin runs in a cgroup of its own, which no process can leave
    (``setsid`` and double forks included), and ``memory_max`` /
    ``cpu_max`` apply when the cgroup has those controllers. Elsewhere the
    plugin's process group is killed, which a process that called ``setsid``
    escapes. :attr:`containment` says which is used.

    **Logs.** The plugin's stdout and stderr are FIFOs in ``spec.state_dir``
    that the runtime drains: what the plugin writes goes to ``stdout.log`` and
    ``stderr.log``, rotated to ``*.log.1`` so that each stream's two files
    never hold more than ``max_log_bytes`` together, whatever the rate. Every
    line is also forwarded to the logger ``pluginkit.plugin``, the message
    being the line itself, with ``extra={"plugin": spec.id, "plugin_name":
    spec.name, "stream": "stdout" | "stderr"}``, at most ``log_rate`` lines
    per second per stream: lines beyond are dropped (a warning on
    ``pluginkit.runtime.process`` says how many) so that logging never lags
    behind. A line that says its level (``INFO:name:...``, ``WARNING ...``,
    logrus's ``level=info msg=...``) is logged at that level, without the
    prefix; other lines at ``stdout_level`` or ``stderr_level`` (both
    ``INFO``: most programs write all their logging to stderr, so Docker's
    choice of ``ERROR`` would raise false alarms). Use a formatter with
    ``%(plugin_name)s`` to see which plugin spoke. :meth:`output_stats` counts
    what was read, rotated out and dropped. The files are emptied when the
    plugin starts. While no manager reads (live restore), output waits in the
    FIFO (the plugin's writes block once it is full, never fail) and is
    forwarded when a manager re-attaches. The last ``stderr_tail_lines`` lines
    of stderr are kept for :attr:`PluginExit.stderr_tail`.

    **Exits.** Every exit - crash, :meth:`stop`, external kill - is reported
    once through ``on_exit``, called from a thread of the runtime after the
    plugin's last output has been logged. ``exit_code`` is the status for
    processes this manager process started (negative: killed by that
    signal); for a process re-attached after the manager that started it
    died, the status cannot be known and ``exit_code`` is ``None``.

    Args:
        grace: Default seconds between ``SIGTERM`` and ``SIGKILL`` in
            :meth:`stop`.
        path: The ``PATH`` given to plugins and used to find a bare
            entrypoint; default the host's ``PATH``.
        env_passthrough: Host environment variables handed to plugins when set.
        stdout_level: Log level of stdout lines that say none.
        stderr_level: Log level of stderr lines that say none.
        stderr_tail_lines: How many last stderr lines an exit reports.
        max_log_bytes: The most a stream's log files hold on disk together.
        log_rate: Lines per second per stream forwarded to ``pluginkit.plugin``.
        memory_max: Memory limit of each plugin in bytes (cgroup ``memory.max``).
        cpu_max: CPU limit of each plugin in cores, e.g. ``0.5`` (cgroup ``cpu.max``).
    """

    #: Starts plugins with ``spec.listen_fd`` handed over (see :class:`RuntimeSpec`).
    passes_listen_fd = True

    def __init__(
        self,
        *,
        grace: float = 10.0,
        path: str | None = None,
        env_passthrough: Iterable[str] = ("PYTHONPATH",),
        stdout_level: int = logging.INFO,
        stderr_level: int = logging.INFO,
        stderr_tail_lines: int = 20,
        max_log_bytes: int = 1024 * 1024,
        log_rate: float = 1000.0,
        memory_max: int | None = None,
        cpu_max: float | None = None,
    ) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, not {grace!r}")
        if max_log_bytes <= 0:
            raise ValueError(f"max_log_bytes must be > 0, not {max_log_bytes!r}")
        if stderr_tail_lines < 0:
            raise ValueError(f"stderr_tail_lines must be >= 0, not {stderr_tail_lines!r}")
        if not log_rate > 0:
            raise ValueError(f"log_rate must be > 0, not {log_rate!r}")
        if memory_max is not None and memory_max <= 0:
            raise ValueError(f"memory_max must be > 0 or None, not {memory_max!r}")
        if cpu_max is not None and not cpu_max > 0:
            raise ValueError(f"cpu_max must be > 0 or None, not {cpu_max!r}")
        self._grace = grace
        self._path = path if path is not None else os.environ.get("PATH", os.defpath)
        self._env_passthrough = tuple(env_passthrough)
        self._levels = {"stdout": stdout_level, "stderr": stderr_level}
        self._tail_lines = stderr_tail_lines
        self._max_log_bytes = max_log_bytes
        self._log_rate = log_rate
        self._limits: dict[str, str] = {}
        if memory_max is not None:
            self._limits["memory.max"] = str(memory_max)
        if cpu_max is not None:
            self._limits["cpu.max"] = f"{max(1000, round(cpu_max * 100_000))} 100000"
        self._cgroup_base = cgroup_base()

        self._lock = threading.Lock()
        self._procs: dict[str, _Proc] = {}
        self._starting: set[str] = set()
        self._closed = False
        self._monitor: threading.Thread | None = None
        self._exits = ExitDispatcher("pluginkit-process-exits", _log)
        self._epoll = select.epoll()
        # What each descriptor in the epoll set belongs to (guarded by _lock).
        self._fds: dict[int, tuple[_Proc, OutputStream | None]] = {}
        # The cgroups this runtime made or found, by plugin id (guarded by _lock).
        self._cgroups: dict[str, CGroup] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)

    def __repr__(self) -> str:
        return f"<ProcessRuntime plugins={len(self._procs)}{' closed' if self._closed else ''}>"

    @property
    def containment(self) -> str:
        """``"cgroup"`` (a cgroup v2 per plugin) or ``"process-group"``."""
        return "cgroup" if self._cgroup_base is not None else "process-group"

    def output_stats(self, plugin_id: str) -> tuple[OutputStats, ...]:
        """Say what became of the plugin's output since it started or was re-attached.

        Returns:
            The stats of stdout and stderr; ``()`` for a plugin not run here.
        """
        with self._lock:
            proc = self._procs.get(plugin_id)
        if proc is None:
            return ()
        with proc.io_lock:
            return tuple(s.stats() for s in proc.streams)

    # -- the Runtime protocol ------------------------------------------------

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        """Start the plugin's process and return once it is executing.

        Returns as soon as the program runs, before it listens: the caller
        waits for ``spec.socket_path`` itself. A plugin that dies right away
        is reported through ``on_exit`` with its exit code and stderr tail.
        A process of an earlier run of the plugin that no runtime supervises
        (left by a killed manager) is killed first: a plugin never runs twice.

        Raises:
            RuntimeStartError: The entrypoint is missing, not found or not
                executable, an ``env`` entry is not ``KEY=VALUE``, the plugin
                is already running, or the program could not be executed.
            RuntimeError: The runtime is closed.
        """
        self._reserve(spec)
        try:
            self._kill_leftovers(spec)
            proc = self._launch(spec, on_exit)
        finally:
            with self._lock:
                self._starting.discard(spec.id)
        self._register(proc)

    def stop(self, plugin_id: str, *, grace: float | None = None) -> None:
        """Stop the plugin: SIGTERM (and SIGCONT) to its process group, SIGKILL after ``grace`` s.

        Returns once the plugin's main process has exited and everything it
        started is killed (its ``on_exit`` may run just before or just
        after). SIGCONT follows SIGTERM so that a stopped (SIGSTOP) plugin
        gets it too. If it survives SIGKILL for 10 s (a process stuck in the
        kernel) an error is logged and ``stop`` returns. Stopping a plugin
        that is not running does nothing.

        Args:
            plugin_id: The plugin's id.
            grace: Seconds to wait after SIGTERM; default the runtime's ``grace``.

        Raises:
            RuntimeError: The runtime is closed.
        """
        grace = self._grace if grace is None else grace
        with self._lock:
            self._check_open()
            proc = self._procs.get(plugin_id)
        if proc is None:
            return
        # The signal goes first: the plugin's exit takes far longer than the
        # take-over below, which runs meanwhile. Then this thread watches the
        # plugin until it is gone (its exit and its output): no hand-over to
        # the monitor thread, whose wake-up would only add latency (should
        # the monitor see the exit first, it reports it and we wait for that).
        signalled = proc.signal(signal.SIGTERM)
        taken = self._take_over(proc)
        # The exit this thread sees is reported once stop() is done: waking
        # the dispatcher thread earlier would only compete with it.
        reports: list[_Proc] = []
        try:
            # A stopped (SIGSTOP) plugin gets SIGTERM only once continued.
            signalled = signalled and proc.signal(signal.SIGCONT)
            if signalled and not self._wait_exit(proc, grace, reports):
                _log.warning(
                    "plugin %s did not exit %.3g s after SIGTERM, sending SIGKILL",
                    proc.name,
                    grace,
                )
                proc.kill_all()
            if not self._wait_exit(proc, _KILL_WAIT, reports):
                _log.error("plugin %s (pid %d) did not exit after SIGKILL", proc.name, proc.pid)
        finally:
            if taken:
                self._give_back(proc)
            for finished in reports:
                self._report(finished)

    def is_running(self, plugin_id: str) -> bool:
        """Tell whether the plugin is running under this runtime's supervision.

        Raises:
            RuntimeError: The runtime is closed.
        """
        with self._lock:
            self._check_open()
            proc = self._procs.get(plugin_id)
        return proc is not None and not proc.exited.is_set()

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        """Re-attach to the plugin if the process recorded in its state dir still runs.

        The process must have the recorded pid, start time and boot id;
        anything else (no or unreadable state file, another boot, a dead or
        recycled pid) returns ``False`` after removing the stale state file
        and socket, without signalling anything but the processes left in
        the plugin's own cgroup. A plugin already supervised by this runtime
        returns ``True`` (its exits now go to ``on_exit``).

        Raises:
            RuntimeError: The runtime is closed.
        """
        self._reserve(spec, restoring=True)
        try:
            with self._lock:
                supervised = self._procs.get(spec.id)
                if supervised is not None:
                    supervised.on_exit = on_exit
                    return True
            proc = self._reattach(spec, on_exit)
            if proc is None:
                self._kill_cgroup_leftovers(spec, None)
        finally:
            with self._lock:
                self._starting.discard(spec.id)
        if proc is None:
            _remove_socket(spec.socket_path)
            return False
        self._register(proc)
        return True

    def discard(self, plugin_id: str) -> None:
        """Stop the plugin if it runs here, then delete its state and log files.

        The files live in ``spec.state_dir``; for a plugin this runtime
        never started or restored there is nothing to delete, as the manager
        removes that directory with the plugin.

        Raises:
            RuntimeError: The runtime is closed.
        """
        with self._lock:
            self._check_open()
            proc = self._procs.get(plugin_id)
        if proc is not None:
            self.stop(plugin_id)
            self._wait_cleaned(proc)  # its last output written, its files closed
        with self._lock:
            cgroup = self._cgroups.pop(plugin_id, None)
        if cgroup is not None:
            cgroup.remove()
        if proc is None:
            return
        names = [STATE_FILE]
        for stream in _STREAMS:
            names += [f"{stream}.log", f"{stream}.log.1", f"{stream}.pipe"]
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (proc.state_dir / name).unlink()

    def close(self) -> None:
        """Stop supervising: end the threads, leave the plugins running.

        Exits already detected are still reported; later ones are not. The
        plugins keep running for a later :meth:`restore` (live restore);
        stop them first if they should not. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._wake()
            self._closed = True
            procs = list(self._procs.values())
            self._procs.clear()
        current = threading.current_thread()
        if self._monitor is not None and self._monitor is not current:
            self._monitor.join()
        self._exits.close()
        for proc in procs:
            # What the plugin writes from now on waits in its FIFO.
            with proc.io_lock:
                proc.detach()
        running = {proc.id for proc in procs if not proc.exited.is_set()}
        for plugin_id, cgroup in self._cgroups.items():
            if plugin_id not in running and not cgroup.populated():
                with contextlib.suppress(OSError):
                    cgroup.path.rmdir()
        with self._lock:
            self._fds.clear()
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- starting --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ProcessRuntime is closed")

    def _reserve(self, spec: RuntimeSpec, *, restoring: bool = False) -> None:
        while True:
            with self._lock:
                self._check_open()
                if spec.id in self._starting:
                    raise RuntimeStartError(f"plugin {spec.name} is already being started")
                proc = self._procs.get(spec.id)
                if proc is None or not proc.exited.is_set():
                    if not restoring and proc is not None:
                        raise RuntimeStartError(f"plugin {spec.name} is already running")
                    self._starting.add(spec.id)
                    return
            # Its last run has exited and is being cleaned up: a moment.
            if not self._wait_cleaned(proc):
                raise RuntimeStartError(
                    f"plugin {spec.name} is still being cleaned up after its last exit"
                )

    def _cgroup(self, spec: RuntimeSpec) -> CGroup | None:
        if self._cgroup_base is None:
            return None
        return CGroup(self._cgroup_base / plugin_cgroup_name(spec.id, spec.state_dir))

    def _kill_leftovers(self, spec: RuntimeSpec) -> None:
        """Kill a process of an earlier run that a killed manager left behind (verified)."""
        proc = self._reattach(spec, lambda exit_: None, quiet=True)
        if proc is not None:
            _log.warning(
                "plugin %s: stopping process %d left running by an earlier manager",
                spec.name,
                proc.pid,
            )
            proc.kill_all()
            deadline = time.monotonic() + _KILL_WAIT
            while proc.running() and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.close_files()
            if proc.popen is not None:
                proc.popen.poll()
        self._kill_cgroup_leftovers(spec, proc)
        _remove_state(spec.state_dir)

    def _kill_cgroup_leftovers(self, spec: RuntimeSpec, proc: _Proc | None) -> None:
        """Kill what is left in the plugin's cgroup (kept: deleting and making one is slow)."""
        cgroup = proc.cgroup if proc is not None else self._cgroup(spec)
        if cgroup is not None and cgroup.exists():
            with self._lock:
                self._cgroups.setdefault(spec.id, cgroup)  # deleted by close() when empty
        if cgroup is not None and cgroup.populated():
            _log.warning(
                "plugin %s: killing processes %s left in %s", spec.name, cgroup.pids(), cgroup.path
            )
            cgroup.kill()

    def _launch(self, spec: RuntimeSpec, on_exit: ExitCallback) -> _Proc:
        env = self._environment(spec)
        argv = [self._resolve_entrypoint(spec, env["PATH"]), *spec.entrypoint[1:], *spec.args]
        cwd = _working_dir(spec)
        user_kwargs = _user_kwargs(spec)
        try:
            spec.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            spec.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeStartError(f"cannot start plugin {spec.name}: {exc}") from exc
        if spec.listen_fd is None:  # else the socket is the manager's, already bound
            _remove_socket(spec.socket_path)

        cgroup = self._cgroup(spec)
        fds: list[int] = []
        streams: list[OutputStream] = []
        procs_fd: int | None = None
        try:
            try:
                for stream in _STREAMS:
                    make_fifo(_fifo(spec.state_dir, stream))
                    streams.append(self._open_stream(spec, stream, fresh=True))
                    fds.append(open_for_plugin(_fifo(spec.state_dir, stream)))
            except OSError as exc:
                raise RuntimeStartError(
                    f"cannot start plugin {spec.name}: cannot create its log files: {exc}"
                ) from exc
            if cgroup is not None:
                try:
                    cgroup.create()
                    procs_fd = cgroup.open_procs()
                    for name, value in self._limits.items():
                        if not cgroup.set_limit(name, value):
                            _log.warning(
                                "plugin %s: %s is not available in %s: no limit applied",
                                spec.name,
                                name,
                                cgroup.path,
                            )
                except OSError as exc:
                    raise RuntimeStartError(
                        f"cannot start plugin {spec.name}: cannot create its cgroup: {exc}"
                    ) from exc
            try:
                popen = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=fds[0],
                    stderr=fds[1],
                    start_new_session=True,
                    preexec_fn=_preexec(spec, argv, env, procs_fd),
                    **user_kwargs,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                if (
                    isinstance(exc, OSError)
                    and exc.errno == errno.ENOENT
                    and os.path.exists(argv[0])
                ):
                    reason = f"its interpreter was not found ({reason})"
                raise RuntimeStartError(
                    f"cannot start plugin {spec.name}: {argv[0]}: {reason}"
                ) from exc
        except BaseException:
            for s in streams:
                s.close()
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for fd in fds:
                os.close(fd)
            if procs_fd is not None:
                os.close(procs_fd)

        proc = _Proc(spec, on_exit, popen.pid, popen=popen, streams=streams, cgroup=cgroup)
        try:
            current = _read_stat(popen.pid)
            if current is None:  # cannot happen: an unreaped child stays in /proc
                raise OSError(f"process {popen.pid} is not in /proc")
            proc.start_time = current.start_time
            _write_state(spec.state_dir, proc.state_record(argv))
        except OSError as exc:
            # Without a state file the plugin could never be restored safely.
            proc.kill_all()
            popen.wait()
            proc.close_files()
            if cgroup is not None:
                cgroup.remove()
            raise RuntimeStartError(
                f"cannot start plugin {spec.name}: cannot record its process: {exc}"
            ) from exc
        proc.pidfd = _pidfd_open(popen.pid)
        return proc

    def _open_stream(self, spec: RuntimeSpec, stream: str, *, fresh: bool) -> OutputStream:
        return OutputStream(
            _fifo(spec.state_dir, stream),
            _log_file(spec.state_dir, stream),
            stream=stream,
            level=self._levels[stream],
            extra={"plugin": spec.id, "plugin_name": spec.name, "stream": stream},
            max_bytes=self._max_log_bytes,
            rate=self._log_rate,
            keep=self._tail_lines if stream == "stderr" else 0,
            fresh=fresh,
        )

    def _environment(self, spec: RuntimeSpec) -> dict[str, str]:
        env = {"PATH": self._path}
        for name in self._env_passthrough:
            if name in os.environ:
                env[name] = os.environ[name]
        for entry in spec.env:
            key, sep, value = entry.partition("=")
            if not sep or not key:
                raise RuntimeStartError(f"plugin {spec.name}: env entry {entry!r} is not KEY=VALUE")
            env[key] = value
        env["PLUGINKIT_SOCKET_DIR"] = str(spec.socket_dir)
        env["PLUGINKIT_SOCKET"] = spec.socket
        env["PLUGINKIT_PLUGIN_ID"] = spec.id
        env["PLUGINKIT_PLUGIN_NAME"] = spec.name
        return env

    def _resolve_entrypoint(self, spec: RuntimeSpec, path: str) -> str:
        if not spec.entrypoint or not spec.entrypoint[0]:
            raise RuntimeStartError(f"plugin {spec.name} has no entrypoint")
        program = spec.entrypoint[0]
        inside = spec.rootfs / program.lstrip("/")
        if inside.is_file():
            if not os.access(inside, os.X_OK):
                raise RuntimeStartError(
                    f'plugin {spec.name}: entrypoint "{program}" ({inside}) is not executable'
                )
            return str(inside)
        if "/" in program and not os.path.isabs(program):
            raise RuntimeStartError(
                f'plugin {spec.name}: entrypoint "{program}" not found in {spec.rootfs}'
            )
        if os.path.isabs(program) and os.path.isfile(program) and not os.access(program, os.X_OK):
            raise RuntimeStartError(f'plugin {spec.name}: entrypoint "{program}" is not executable')
        found = shutil.which(program, path=path)
        if found is None:
            where = "on the host" if os.path.isabs(program) else "on PATH"
            raise RuntimeStartError(
                f'plugin {spec.name}: entrypoint "{program}" not found in {spec.rootfs} nor {where}'
            )
        return found

    # -- restoring -------------------------------------------------------------

    def _reattach(
        self, spec: RuntimeSpec, on_exit: ExitCallback, *, quiet: bool = False
    ) -> _Proc | None:
        record = _read_state(spec.state_dir)
        if record is None:
            _remove_state(spec.state_dir)
            return None
        pid, start_time = record["pid"], record["start_time"]
        if record["boot_id"] != _boot_id():
            _log.info("plugin %s: recorded process is from another boot", spec.name)
            _remove_state(spec.state_dir)
            return None
        cgroup_path = record.get("cgroup")
        cgroup = CGroup(Path(cgroup_path)) if isinstance(cgroup_path, str) else None

        with _detached_lock:
            popen = _detached.pop(pid, None)
        if popen is not None and popen.poll() is not None:
            popen = None  # our own child, exited while nobody watched: reaped now
        pidfd = None if popen is not None else _pidfd_open(pid)
        # Checked after opening the pidfd: if the pid was recycled before
        # that, the start time differs; if after, the pidfd still refers to
        # the process we verified (and reports its exit).
        current = _read_stat(pid)
        if current is None or current.start_time != start_time or current.state in "ZXx":
            if pidfd is not None:
                os.close(pidfd)
            if not quiet:
                _log.info("plugin %s: recorded process %d is gone", spec.name, pid)
            if cgroup is not None and cgroup.populated():
                _log.info("plugin %s: killing what is left in %s", spec.name, cgroup.path)
                cgroup.kill()
            _remove_state(spec.state_dir)
            return None
        if popen is not None:
            pidfd = _pidfd_open(pid)

        streams: list[OutputStream] = []
        if not quiet:
            try:
                for stream in _STREAMS:
                    streams.append(self._open_stream(spec, stream, fresh=False))
            except OSError as exc:
                # The plugin runs; losing its logs is no reason to disown it.
                _log.warning("plugin %s: cannot read its output: %s", spec.name, exc)
                for s in streams:
                    s.close()
                streams = []
        proc = _Proc(spec, on_exit, pid, popen=popen, streams=streams, cgroup=cgroup)
        proc.start_time = start_time
        proc.pidfd = pidfd
        if not quiet:
            _log.info("plugin %s: re-attached to process %d", spec.name, pid)
        return proc

    # -- supervision -----------------------------------------------------------

    def _register(self, proc: _Proc) -> None:
        with self._lock:
            if self._closed:
                # close() ran while we were starting: hand the process over
                # as close() would have.
                proc.detach()
                raise RuntimeError("ProcessRuntime is closed")
            self._procs[proc.id] = proc
            if proc.cgroup is not None:
                self._cgroups[proc.id] = proc.cgroup
            for stream in proc.streams:
                if stream.fd is not None:
                    self._watch_locked(stream.fd, proc, stream)
            if proc.pidfd is not None:
                self._watch_locked(proc.pidfd, proc, None)
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._monitor_loop, name="pluginkit-process-monitor", daemon=True
                )
                self._monitor.start()
            self._wake()

    def _watch_locked(self, fd: int, proc: _Proc, stream: OutputStream | None) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._fds[fd] = (proc, stream)

    def _unwatch_locked(self, fd: int | None) -> None:
        if fd is not None and self._fds.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def _wake(self) -> None:
        # Callers hold self._lock, so the pipe cannot be closed under our feet.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _monitor_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                polled = [p for p in self._procs.values() if p.pidfd is None]
            events = self._epoll.poll(_TICK if polled else -1)
            for fd, _ in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    owner = self._fds.get(fd)
                if owner is None:
                    continue
                proc, stream = owner
                try:
                    if stream is None:
                        self._try_finish(proc, pidfd_ready=True)
                    else:
                        self._pump(proc, stream)
                except Exception:
                    # Never let one plugin's trouble end supervision of all.
                    _log.exception("plugin %s: supervision error", proc.name)
            for proc in polled:
                try:
                    self._try_finish(proc, pidfd_ready=False)
                except Exception:
                    _log.exception("plugin %s: supervision error", proc.name)

    def _pump(self, proc: _Proc, stream: OutputStream) -> None:
        with proc.io_lock:
            if stream.fd is None:
                return
            fd = stream.fd
            if stream.pump():
                return
        # No writer left: nothing more can come, stop watching it.
        with self._lock:
            self._unwatch_locked(fd)

    def _take_over(self, proc: _Proc) -> bool:
        """Take the plugin's pidfd and FIFOs out of the monitor's set (a stop watches them)."""
        with self._lock:
            if proc.pidfd is None or proc.exited.is_set() or self._closed:
                return False
            proc.stoppers += 1
            for fd in (proc.pidfd, *(s.fd for s in proc.streams)):
                self._unwatch_locked(fd)
            return True

    def _give_back(self, proc: _Proc) -> None:
        """Let the monitor watch the plugin again (a stop gave up waiting)."""
        with self._lock:
            proc.stoppers -= 1
            if proc.stoppers or proc.exited.is_set() or self._closed:
                return
            with proc.io_lock:
                for stream in proc.streams:
                    if stream.fd is not None and stream.fd not in self._fds:
                        self._watch_locked(stream.fd, proc, stream)
                if proc.pidfd is not None and proc.pidfd not in self._fds:
                    self._watch_locked(proc.pidfd, proc, None)
            self._wake()

    def _wait_exit(self, proc: _Proc, timeout: float, reports: list[_Proc]) -> bool:
        """Wait in the calling thread for the plugin's exit, reading its output meanwhile.

        The thread that sees the exit first reports it: here, by adding the
        plugin to ``reports`` for the caller to pass to :meth:`_report`.
        """
        if proc.exited.is_set():
            return True
        deadline = time.monotonic() + timeout
        pidfd = proc.dup_pidfd()
        if pidfd is None:
            return proc.exited.wait(timeout)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        streams: dict[int, OutputStream] = {}
        try:
            # The exit alone first: a plugin closes its output (waking a
            # poll of it) just before it exits, and the last output is read
            # on clean-up anyway. Only one that takes its time gets its
            # output read meanwhile, so that it never blocks on a full FIFO.
            if poller.poll(min(_QUICK_EXIT, timeout) * 1000):
                return self._exit_seen(proc, deadline, reports)
            with proc.io_lock:
                for stream in proc.streams:
                    if stream.fd is not None:
                        fd = os.dup(stream.fd)
                        streams[fd] = stream
                        poller.register(fd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or proc.exited.is_set():
                    return proc.exited.is_set()
                events = poller.poll(remaining * 1000)
                if any(fd == pidfd for fd, _ in events):
                    break
                for fd, _ in events:
                    with proc.io_lock:
                        stream = streams[fd]
                        if stream.fd is None or not stream.pump():
                            poller.unregister(fd)
        finally:
            os.close(pidfd)
            for fd in streams:
                os.close(fd)
        return self._exit_seen(proc, deadline, reports)

    def _exit_seen(self, proc: _Proc, deadline: float, reports: list[_Proc]) -> bool:
        """Finish the plugin whose pidfd is readable (or wait for whoever does)."""
        if proc.claim_exit(pidfd_ready=True):
            self._finish(proc)
            reports.append(proc)
        return proc.exited.wait(max(0.0, deadline - time.monotonic()))

    def _try_finish(self, proc: _Proc, *, pidfd_ready: bool) -> None:
        if proc.claim_exit(pidfd_ready):
            self._finish(proc)
            self._report(proc)

    def _report(self, proc: _Proc) -> None:
        """Have the dispatcher thread clean up after the exited plugin and report its exit."""
        # The status is known once reaped, on clean-up: this one names the plugin.
        self._exits.post(lambda _: self._clean_up(proc), PluginExit(proc.id, None))

    def _finish(self, proc: _Proc) -> None:
        # Nothing here may stop the exit from being reported.
        with self._lock:
            for stream in proc.streams:
                self._unwatch_locked(stream.fd)
            self._unwatch_locked(proc.pidfd)
        if proc.cgroup is not None:
            # Kept (empty) for the next start; deleted by discard() and close().
            try:
                proc.cgroup.kill(events_fd=proc.cgroup_events)
            except OSError as exc:
                _log.warning("plugin %s: cannot kill what it left running: %s", proc.name, exc)
        # Gone, and so is everything it started: stop() may return. Reading
        # its last output, closing its files and deleting them are left to
        # the dispatcher thread, just before on_exit (a stop returns sooner,
        # and no writer is left to wait for); a start meanwhile waits for
        # that (see _reserve).
        proc.exited.set()

    def _wait_cleaned(self, proc: _Proc) -> bool:
        """Wait until an exited plugin is cleaned up; False if that took over ``_KILL_WAIT``.

        From an on_exit callback (the dispatcher thread, which does that
        clean-up) it is done here and now rather than waited for.
        """
        if self._exits.in_thread():
            self._clean_files(proc)
            return True
        return proc.cleaned.wait(_KILL_WAIT)

    def _clean_up(self, proc: _Proc) -> None:
        """Dispatcher thread: finish with an exited plugin's files, then report the exit."""
        proc.on_exit(self._clean_files(proc))

    def _clean_files(self, proc: _Proc) -> PluginExit:
        """Finish with an exited plugin's files, once, on the dispatcher thread.

        Reads its last output, closes and deletes its files, forgets it, and
        returns its exit (with the last stderr lines).
        """
        if proc.report is not None:
            return proc.report
        proc.reap()
        _log.debug("plugin %s exited with %s", proc.name, proc.exit_code)
        with proc.io_lock:
            try:
                for stream in proc.streams:
                    stream.pump(final=True)
            except OSError as exc:
                _log.warning("plugin %s: cannot read its last output: %s", proc.name, exc)
            proc.report = PluginExit(proc.id, proc.exit_code, proc.stderr_tail())
            proc.close_files()
        try:
            _remove_state(proc.state_dir)
            remove_dead_socket(proc.socket_path)  # not the manager's, handed over
        except OSError as exc:
            _log.warning("plugin %s: cannot clean up after it: %s", proc.name, exc)
        finally:
            with self._lock:
                if self._procs.get(proc.id) is proc:
                    del self._procs[proc.id]
            proc.cleaned.set()
        return proc.report


def _preexec(
    spec: RuntimeSpec, argv: list[str], env: dict[str, str], procs_fd: int | None
) -> Callable[[], None] | None:
    """Return the child's last steps before exec: join the cgroup, take the socket."""
    join = _join_cgroup(procs_fd) if procs_fd is not None else None
    if spec.listen_fd is None:
        return join
    return exec_with_listen_fd(spec.listen_fd, argv, env, join)


def _join_cgroup(procs_fd: int) -> Callable[[], None]:
    """Return the child's last step before exec: move itself into the plugin's cgroup."""

    def join() -> None:
        os.write(procs_fd, b"0")

    return join


class _Proc:
    """One supervised plugin process (a child of ours, or re-attached)."""

    def __init__(
        self,
        spec: RuntimeSpec,
        on_exit: ExitCallback,
        pid: int,
        *,
        popen: subprocess.Popen[bytes] | None,
        streams: list[OutputStream],
        cgroup: CGroup | None,
    ) -> None:
        self.id = spec.id
        self.name = spec.name
        self.state_dir = spec.state_dir
        self.socket_path = spec.socket_path
        self.on_exit = on_exit
        self.pid = pid
        self.popen = popen
        self.streams = streams
        self.cgroup = cgroup
        # Open from the start: the check that the cgroup is empty after the exit re-reads it.
        self.cgroup_events = cgroup.open_events() if cgroup is not None else None
        self.start_time = 0
        self.pidfd: int | None = None
        self.exit_code: int | None = None
        # The exit as reported, with the last stderr lines (set once, on clean-up).
        self.report: PluginExit | None = None
        # Set when the process is gone (and what it started); then when its
        # files are deleted and it is no longer in the runtime's table.
        self.exited = threading.Event()
        self.cleaned = threading.Event()
        # Held while signalling and while reaping, so that a signal is never
        # sent to a pid that has been reaped (and may have been recycled).
        self._lock = threading.Lock()
        # Held while reading output (the monitor) and while closing the files.
        self.io_lock = threading.Lock()
        # How many stop() calls watch this process instead of the monitor.
        self.stoppers = 0
        self._gone = False

    def state_record(self, argv: list[str]) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "pid": self.pid,
            "start_time": self.start_time,
            "boot_id": _boot_id(),
            "argv": argv,
            "cgroup": str(self.cgroup.path) if self.cgroup is not None else None,
        }

    def signal(self, *signals: int) -> bool:
        """Send the signals to the plugin's process group; ``False`` if the plugin is gone."""
        with self._lock:
            if self._gone:
                return False
            if self.popen is not None:
                # Our child: until we reap it its pid (the group's id) cannot
                # be reused, even if it has exited.
                if self.popen.returncode is not None:
                    return False
            elif not self._alive():
                return False
            try:
                for sig in signals:
                    os.killpg(self.pid, sig)
            except ProcessLookupError:
                return False
            except PermissionError as exc:
                _log.error(
                    "plugin %s: cannot signal process group %d: %s", self.name, self.pid, exc
                )
                return False
            return True

    def kill_all(self) -> None:
        """SIGKILL everything: the cgroup when there is one, else the process group."""
        if self.cgroup is not None:
            self.cgroup.kill()
        self.signal(signal.SIGKILL)

    def running(self) -> bool:
        with self._lock:
            return not self._gone and self._alive()

    def dup_pidfd(self) -> int | None:
        with self._lock:
            if self.pidfd is None or self._gone:
                return None
            return os.dup(self.pidfd)

    def _alive(self) -> bool:
        if self.popen is not None:
            if self.popen.returncode is not None:
                return False
            if self.pidfd is not None:
                return not _readable(self.pidfd)
            return not _exited_unreaped(self.pid)
        if self.pidfd is not None:
            return not _readable(self.pidfd)
        current = _read_stat(self.pid)
        return current is not None and current.start_time == self.start_time

    def claim_exit(self, pidfd_ready: bool) -> bool:
        """Tell whether the process has exited and the caller is the one to report it.

        True exactly once. What the plugin left in its process group is
        killed while our child is still unreaped (its pid, the group's id,
        cannot be reused yet). The child is reaped later, by :meth:`reap`:
        from here on no signal is sent to its pid.
        """
        with self._lock:
            if self._gone:
                return False
            if self.popen is not None:
                if self.popen.returncode is None:
                    if self.pidfd is not None and not (pidfd_ready or _readable(self.pidfd)):
                        return False
                    if self.pidfd is None and not _exited_unreaped(self.pid):
                        return False
                    if self.cgroup is None:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(self.pid, signal.SIGKILL)
            elif self.pidfd is not None:
                if not (pidfd_ready or _readable(self.pidfd)):
                    return False
            else:
                current = _read_stat(self.pid)
                if (
                    current is not None
                    and current.start_time == self.start_time
                    and current.state not in "ZXx"
                ):
                    return False
            self._gone = True
            return True

    def reap(self) -> None:
        """Collect the exit status of our exited child (after :meth:`claim_exit`)."""
        if self.popen is not None and self.exit_code is None:
            # It has exited: this does not wait. Reaping is left out of the
            # stop itself (one system call and Popen's locking fewer there).
            self.exit_code = self.popen.wait()

    def stderr_tail(self) -> str:
        for stream in self.streams:
            if stream.stream == "stderr":
                return "\n".join(stream.tail)
        return ""

    def close_files(self) -> None:
        for stream in self.streams:
            stream.close()
        if self.cgroup_events is not None:
            os.close(self.cgroup_events)
            self.cgroup_events = None
        with self._lock:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None

    def detach(self) -> None:
        """Stop watching; keep our child's Popen alive for a later restore."""
        self.close_files()
        if self.popen is not None and self.popen.returncode is None:
            if self._gone:
                # Exited, its clean-up not run yet (close() from an on_exit
                # callback): nothing to re-attach to, so reap it now.
                self.reap()
                return
            with _detached_lock:
                _detached[self.pid] = self.popen


def _exited_unreaped(pid: int) -> bool:
    """Tell whether our child ``pid`` has exited, without reaping it."""
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return result is not None


# -- helpers ---------------------------------------------------------------------


@attrs.frozen
class _Stat:
    state: str
    start_time: int


def _read_stat(pid: int) -> _Stat | None:
    """State and start time (clock ticks since boot) of ``pid``, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return _parse_stat(data)


def _parse_stat(data: bytes) -> _Stat:
    """Parse the content of ``/proc/<pid>/stat``."""
    # The command name (field 2) is in parentheses and may itself contain
    # spaces, parentheses and newlines: the fields that follow start after
    # the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return _Stat(state=fields[0].decode(), start_time=int(fields[19]))


_boot_id_cache: list[str] = []


def _boot_id() -> str:
    if not _boot_id_cache:
        _boot_id_cache.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    return _boot_id_cache[0]


def _pidfd_open(pid: int) -> int | None:
    """Open a pidfd for ``pid``; None where the kernel or Python has none, or it is gone."""
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd = pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            return None
        raise
    os.set_inheritable(fd, False)
    return fd


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _working_dir(spec: RuntimeSpec) -> Path:
    workdir = spec.rootfs / spec.workdir.lstrip("/")
    if workdir.is_dir():
        return workdir
    if spec.rootfs.is_dir():
        return spec.rootfs
    return spec.state_dir


def _user_kwargs(spec: RuntimeSpec) -> dict[str, Any]:
    if spec.user is None:
        return {}
    uid, gid = spec.user
    if os.geteuid() == 0:
        return {"user": uid, "group": gid, "extra_groups": []}
    if (uid, gid) != (os.geteuid(), os.getegid()):
        _log.warning(
            "plugin %s asks to run as %d:%d; not root, so it runs as %d:%d",
            spec.name,
            uid,
            gid,
            os.geteuid(),
            os.getegid(),
        )
    return {}


def _write_state(state_dir: Path, record: Mapping[str, Any]) -> None:
    """Write the state file atomically: temp file, fsync, rename, fsync the directory.

    Temp files of a write interrupted by a kill are deleted first: one start
    at a time writes here (the runtime refuses concurrent starts of a plugin).
    """
    for stale in state_dir.glob(f".{STATE_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)
    atomic_write(state_dir / STATE_FILE, json.dumps(record, indent=1).encode())


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE_FILE
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    if not (
        isinstance(record, dict)
        and type(record.get("pid")) is int
        and record["pid"] > 0
        and type(record.get("start_time")) is int
        and isinstance(record.get("boot_id"), str)
    ):
        _log.warning("ignoring malformed %s", path)
        return None
    return record


def _remove_state(state_dir: Path) -> None:
    """Delete the state file.

    No newer start can have rewritten it meanwhile: a runtime refuses to
    start a plugin until the exit of the previous run is fully handled.
    """
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


def _remove_socket(path: Path) -> None:
    """Delete a leftover socket so that a stale one is never taken for a live plugin."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
