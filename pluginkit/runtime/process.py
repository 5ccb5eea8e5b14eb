"""ProcessRuntime: each plugin is a host process in its own session.

One monitor thread per runtime watches every plugin process (a pidfd each
where the kernel has them, polling otherwise) and tails their log files; one
dispatcher thread calls the ``on_exit`` callbacks, so that a slow callback
never delays exit detection or logging.

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .._errors import RuntimeStartError
from .._store import atomic_write
from ._base import ExitCallback, PluginExit, RuntimeSpec
from ._dispatch import ExitDispatcher
from ._plugin_log import LineForwarder

__all__ = ["ProcessRuntime"]

_log = logging.getLogger("pluginkit.runtime.process")
_plugin_log = logging.getLogger("pluginkit.plugin")

STATE_FILE = "process.json"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
_STATE_VERSION = 1

# How often the monitor reads the log files. Exits are seen at once through
# pidfds; without them (old kernels) this is also the exit-detection delay.
_TICK = 0.05
# After SIGKILL, how long stop() waits before giving up (Docker: 10 s too).
_KILL_WAIT = 10.0
# A line longer than this is forwarded in pieces rather than buffered forever.
_MAX_LINE = 16 * 1024
# At most this much is read from one stream per tick, so that one chatty
# plugin cannot starve the others.
_READ_CHUNK = 256 * 1024
# How much of stderr.log is read back to seed the tail of a restored plugin.
_SEED_BYTES = 8 * 1024

# Children whose runtime was closed while they still ran. Keeping their Popen
# objects alive stops subprocess from warning about them and from reaping them
# behind our back; a later restore() in this process adopts them again (and so
# still learns their exit code).
_detached: dict[int, subprocess.Popen[bytes]] = {}
_detached_lock = threading.Lock()


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
    Stdin is ``/dev/null``.

    **User.** ``spec.user`` is applied when the manager runs as root; else
    the plugin runs as the current user and a warning is logged.

    **Sessions and live restore.** Each plugin leads its own session and
    process group, so it is not hit by signals meant for the manager (Ctrl-C
    in a terminal) and outlives it. ``spec.state_dir/process.json`` records
    its pid, its start time (field 22 of ``/proc/<pid>/stat``), the boot id
    and the command line, written atomically. :meth:`restore` re-attaches
    only to a process whose pid, start time and boot id all match, so a
    recycled pid is never taken for the plugin (and never signalled).

    **Logs.** The plugin's stdout and stderr go to ``stdout.log`` and
    ``stderr.log`` in ``spec.state_dir`` - files, not pipes, so the plugin
    never gets ``SIGPIPE`` or blocks when the manager is gone. The runtime
    tails them and forwards every line to the logger ``pluginkit.plugin``,
    the message being the line itself, with ``extra={"plugin": spec.id,
    "plugin_name": spec.name, "stream": "stdout" | "stderr"}``. A line that
    says its level (``INFO:name:...``, ``WARNING ...``, logrus's
    ``level=info msg=...``) is logged at that level, without the prefix;
    other lines at ``stdout_level`` or ``stderr_level`` (both ``INFO``: most
    programs write all their logging to stderr, so Docker's choice of
    ``ERROR`` would raise false alarms). Use a
    formatter with ``%(plugin_name)s`` to see which plugin spoke. The files
    are truncated when the plugin starts and whenever the runtime has read
    more than ``max_log_bytes`` of one (a few bytes written at that very
    instant may be lost); while no manager supervises the plugin they grow
    unchecked, and the lines written then are not forwarded when a manager
    re-attaches. The last ``stderr_tail_lines`` lines of stderr are kept for
    :attr:`PluginExit.stderr_tail`.

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
        max_log_bytes: Size past which a log file is truncated once read.
    """

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
    ) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, not {grace!r}")
        if max_log_bytes <= 0:
            raise ValueError(f"max_log_bytes must be > 0, not {max_log_bytes!r}")
        if stderr_tail_lines < 0:
            raise ValueError(f"stderr_tail_lines must be >= 0, not {stderr_tail_lines!r}")
        self._grace = grace
        self._path = path if path is not None else os.environ.get("PATH", os.defpath)
        self._env_passthrough = tuple(env_passthrough)
        self._levels = {"stdout": stdout_level, "stderr": stderr_level}
        self._tail_lines = stderr_tail_lines
        self._max_log_bytes = max_log_bytes

        self._lock = threading.Lock()
        self._procs: dict[str, _Proc] = {}
        self._starting: set[str] = set()
        self._closed = False
        self._monitor: threading.Thread | None = None
        self._exits = ExitDispatcher("pluginkit-process-exits", _log)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __repr__(self) -> str:
        return f"<ProcessRuntime plugins={len(self._procs)}{' closed' if self._closed else ''}>"

    # -- the Runtime protocol ------------------------------------------------

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        """Start the plugin's process and return once it is executing.

        Returns as soon as the program runs, before it listens: the caller
        waits for ``spec.socket_path`` itself. A plugin that dies right away
        is reported through ``on_exit`` with its exit code and stderr tail.

        Raises:
            RuntimeStartError: The entrypoint is missing, not found or not
                executable, an ``env`` entry is not ``KEY=VALUE``, the plugin
                is already running, or the program could not be executed.
            RuntimeError: The runtime is closed.
        """
        self._reserve(spec)
        try:
            proc = self._launch(spec, on_exit)
        finally:
            with self._lock:
                self._starting.discard(spec.id)
        self._register(proc)

    def stop(self, plugin_id: str, *, grace: float | None = None) -> None:
        """Stop the plugin: SIGTERM to its process group, SIGKILL after ``grace`` s.

        Returns once the plugin's main process has exited (its ``on_exit``
        may run just before or just after). If it survives SIGKILL for 10 s
        (a process stuck in the kernel) an error is logged and ``stop``
        returns. Stopping a plugin that is not running does nothing.

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
        if proc.signal(signal.SIGTERM) and not proc.exited.wait(grace):
            _log.warning(
                "plugin %s did not exit %.3g s after SIGTERM, sending SIGKILL", proc.name, grace
            )
            proc.signal(signal.SIGKILL)
        if not proc.exited.wait(_KILL_WAIT):
            _log.error("plugin %s (pid %d) did not exit after SIGKILL", proc.name, proc.pid)

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
        and socket, without signalling anything. A plugin already supervised
        by this runtime returns ``True`` (its exits now go to ``on_exit``).

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
        if proc is None:
            return
        self.stop(plugin_id)
        for name in (STATE_FILE, STDOUT_FILE, STDERR_FILE):
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
            proc.detach()
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- starting --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ProcessRuntime is closed")

    def _reserve(self, spec: RuntimeSpec, *, restoring: bool = False) -> None:
        with self._lock:
            self._check_open()
            if spec.id in self._starting:
                raise RuntimeStartError(f"plugin {spec.name} is already being started")
            if not restoring and spec.id in self._procs:
                raise RuntimeStartError(f"plugin {spec.name} is already running")
            self._starting.add(spec.id)

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
        _remove_socket(spec.socket_path)

        logs = {"stdout": spec.state_dir / STDOUT_FILE, "stderr": spec.state_dir / STDERR_FILE}
        fds: list[int] = []
        tails: list[_LogTail] = []
        try:
            try:
                for path in logs.values():
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
                    fds.append(os.open(path, flags, 0o600))
                tails = self._open_tails(spec, logs, at_end=False)
            except OSError as exc:
                raise RuntimeStartError(
                    f"cannot start plugin {spec.name}: cannot create its log files: {exc}"
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
                    **user_kwargs,
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if exc.errno == errno.ENOENT and os.path.exists(argv[0]):
                    reason = f"its interpreter was not found ({reason})"
                raise RuntimeStartError(
                    f"cannot start plugin {spec.name}: {argv[0]}: {reason}"
                ) from exc
        except BaseException:
            for tail in tails:
                tail.close()
            raise
        finally:
            for fd in fds:
                os.close(fd)

        proc = _Proc(spec, on_exit, popen.pid, popen=popen, tails=tails)
        try:
            current = _read_stat(popen.pid)
            if current is None:  # cannot happen: an unreaped child stays in /proc
                raise OSError(f"process {popen.pid} is not in /proc")
            proc.start_time = current.start_time
            _write_state(spec.state_dir, proc.state_record(argv))
        except OSError as exc:
            # Without a state file the plugin could never be restored safely.
            proc.signal(signal.SIGKILL)
            popen.wait()
            proc.close_files()
            raise RuntimeStartError(
                f"cannot start plugin {spec.name}: cannot record its process: {exc}"
            ) from exc
        proc.pidfd = _pidfd_open(popen.pid)
        return proc

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

    def _open_tails(
        self, spec: RuntimeSpec, logs: Mapping[str, Path], *, at_end: bool
    ) -> list[_LogTail]:
        tails: list[_LogTail] = []
        try:
            for stream, path in logs.items():
                keep = self._tail_lines if stream == "stderr" else 0
                tails.append(
                    _LogTail(
                        path,
                        spec,
                        stream,
                        self._levels[stream],
                        keep=keep,
                        max_bytes=self._max_log_bytes,
                        at_end=at_end,
                    )
                )
        except OSError:
            for tail in tails:
                tail.close()
            raise
        return tails

    # -- restoring -------------------------------------------------------------

    def _reattach(self, spec: RuntimeSpec, on_exit: ExitCallback) -> _Proc | None:
        record = _read_state(spec.state_dir)
        if record is None:
            _remove_state(spec.state_dir)
            return None
        pid, start_time = record["pid"], record["start_time"]
        if record["boot_id"] != _boot_id():
            _log.info("plugin %s: recorded process is from another boot", spec.name)
            _remove_state(spec.state_dir)
            return None

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
            _log.info("plugin %s: recorded process %d is gone", spec.name, pid)
            _remove_state(spec.state_dir)
            return None
        if popen is not None:
            pidfd = _pidfd_open(pid)

        logs = {"stdout": spec.state_dir / STDOUT_FILE, "stderr": spec.state_dir / STDERR_FILE}
        try:
            tails = self._open_tails(spec, logs, at_end=True)
        except OSError as exc:
            # The plugin runs; losing its logs is no reason to disown it.
            _log.warning("plugin %s: cannot tail its logs: %s", spec.name, exc)
            tails = []
        proc = _Proc(spec, on_exit, pid, popen=popen, tails=tails)
        proc.start_time = start_time
        proc.pidfd = pidfd
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
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._monitor_loop, name="pluginkit-process-monitor", daemon=True
                )
                self._monitor.start()
            self._wake()

    def _wake(self) -> None:
        # Callers hold self._lock, so the pipe cannot be closed under our feet.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _monitor_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                procs = list(self._procs.values())
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for proc in procs:
                if proc.pidfd is not None:
                    poller.register(proc.pidfd, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(_TICK * 1000 if procs else None)}
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            for proc in procs:
                try:
                    proc.pump_logs()
                    if proc.has_exited(proc.pidfd in ready):
                        self._finish(proc)
                except Exception:
                    # Never let one plugin's trouble end supervision of all.
                    _log.exception("plugin %s: supervision error", proc.name)

    def _finish(self, proc: _Proc) -> None:
        # Nothing here may stop the exit from being reported.
        try:
            for tail in proc.tails:
                tail.pump(final=True)
        except OSError as exc:
            _log.warning("plugin %s: cannot read its last output: %s", proc.name, exc)
        exit_ = PluginExit(proc.id, proc.exit_code, proc.stderr_tail())
        proc.close_files()
        try:
            _remove_state(proc.state_dir)
            _remove_socket(proc.socket_path)
        except OSError as exc:
            _log.warning("plugin %s: cannot clean up after it: %s", proc.name, exc)
        with self._lock:
            if self._procs.get(proc.id) is proc:
                del self._procs[proc.id]
        proc.exited.set()
        _log.debug("plugin %s exited with %s", proc.name, proc.exit_code)
        self._exits.post(proc.on_exit, exit_)


class _Proc:
    """One supervised plugin process (a child of ours, or re-attached)."""

    def __init__(
        self,
        spec: RuntimeSpec,
        on_exit: ExitCallback,
        pid: int,
        *,
        popen: subprocess.Popen[bytes] | None,
        tails: list[_LogTail],
    ) -> None:
        self.id = spec.id
        self.name = spec.name
        self.state_dir = spec.state_dir
        self.socket_path = spec.socket_path
        self.on_exit = on_exit
        self.pid = pid
        self.popen = popen
        self.tails = tails
        self.start_time = 0
        self.pidfd: int | None = None
        self.exit_code: int | None = None
        self.exited = threading.Event()
        # Held while signalling and while reaping, so that a signal is never
        # sent to a pid that has been reaped (and may have been recycled).
        self._lock = threading.Lock()
        self._gone = False

    def state_record(self, argv: list[str]) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "pid": self.pid,
            "start_time": self.start_time,
            "boot_id": _boot_id(),
            "argv": argv,
        }

    def signal(self, sig: int) -> bool:
        """Signal the plugin's process group; ``False`` if the plugin is gone."""
        with self._lock:
            if self._gone or not self._alive():
                return False
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                return False
            except PermissionError as exc:
                _log.error(
                    "plugin %s: cannot signal process group %d: %s", self.name, self.pid, exc
                )
                return False
            return True

    def _alive(self) -> bool:
        if self.popen is not None:
            return self.popen.returncode is None
        if self.pidfd is not None:
            return not _readable(self.pidfd)
        current = _read_stat(self.pid)
        return current is not None and current.start_time == self.start_time

    def has_exited(self, pidfd_ready: bool) -> bool:
        """Tell whether the process has exited, reaping it when it is our child."""
        with self._lock:
            if self._gone:
                return True
            if self.popen is not None:
                code = self.popen.poll()
                if code is None:
                    return False
                self.exit_code = code
            elif self.pidfd is not None:
                if not pidfd_ready:
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

    def pump_logs(self) -> None:
        for tail in self.tails:
            tail.pump()

    def stderr_tail(self) -> str:
        for tail in self.tails:
            if tail.stream == "stderr":
                return "\n".join(tail.tail)
        return ""

    def close_files(self) -> None:
        for tail in self.tails:
            tail.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def detach(self) -> None:
        """Stop watching; keep our child's Popen alive for a later restore."""
        self.close_files()
        if self.popen is not None and self.popen.returncode is None:
            with _detached_lock:
                _detached[self.pid] = self.popen


class _LogTail:
    """Follow one log file, forwarding complete lines to ``pluginkit.plugin``."""

    def __init__(
        self,
        path: Path,
        spec: RuntimeSpec,
        stream: str,
        level: int,
        *,
        keep: int,
        max_bytes: int,
        at_end: bool,
    ) -> None:
        self.stream = stream
        self.tail: deque[str] = deque(maxlen=keep)
        self._level = level
        self._max_bytes = max_bytes
        self._extra = {"plugin": spec.id, "plugin_name": spec.name, "stream": stream}
        self._forward = LineForwarder(_plugin_log, level, self._extra)
        self._partial = b""
        # Read-write: the tail truncates the file once it has read it all.
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._pos = os.fstat(self._fd).st_size if at_end else 0
        if at_end and keep:
            self._seed()

    def _seed(self) -> None:
        assert self._fd is not None
        start = max(0, self._pos - _SEED_BYTES)
        data = os.pread(self._fd, self._pos - start, start)
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first one is cut
        for line in lines:
            if line:
                self.tail.append(_decode(line))

    def pump(self, *, final: bool = False) -> None:
        """Forward what was written since the last call (everything, when ``final``)."""
        fd = self._fd
        if fd is None:
            return
        while True:
            size = os.fstat(fd).st_size
            if size < self._pos:
                self._pos = 0  # truncated by someone else
            if size == self._pos:
                break
            data = os.pread(fd, min(size - self._pos, _READ_CHUNK), self._pos)
            if not data:
                break
            self._pos += len(data)
            self._feed(data)
            if not final:
                break
        if final and self._partial:
            self._emit(self._partial)
            self._partial = b""
        elif self._pos >= self._max_bytes and os.fstat(fd).st_size == self._pos:
            # The plugin appends (O_APPEND), so it carries on at the new end.
            os.ftruncate(fd, 0)
            self._pos = 0

    def _feed(self, data: bytes) -> None:
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(self._partial) > _MAX_LINE:
            self._emit(self._partial[:_MAX_LINE])
            self._partial = self._partial[_MAX_LINE:]

    def _emit(self, raw: bytes) -> None:
        line = _decode(raw)
        if self.tail.maxlen:
            self.tail.append(line)
        self._forward(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


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
