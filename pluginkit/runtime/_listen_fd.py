"""Start a process with an inherited listening socket, as systemd does (``sd_listen_fds``).

The socket must be descriptor 3 in the child and ``LISTEN_PID`` the child's
own pid, which only the child knows: so the child's last step before exec
(``preexec_fn``) moves the socket to 3 and execs the program itself with
``LISTEN_FDS=1`` and ``LISTEN_PID`` added to its environment.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["exec_with_listen_fd", "remove_dead_socket"]

_FIRST = 3  # SD_LISTEN_FDS_START


def exec_with_listen_fd(
    listen_fd: int,
    argv: Sequence[str],
    env: Mapping[str, str],
    before: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """Return a ``preexec_fn`` that runs ``before``, then execs ``argv`` holding the socket.

    Runs in the forked child (async-signal-safe enough: no locks, no imports).
    If the exec fails the exception is reported by :class:`subprocess.Popen`.
    """
    program = os.fsencode(argv[0])
    args = [os.fsencode(a) for a in argv]
    base = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    base[b"LISTEN_FDS"] = b"1"

    def run() -> None:
        if before is not None:
            before()
        if listen_fd == _FIRST:
            os.set_inheritable(_FIRST, True)
        else:
            os.dup2(listen_fd, _FIRST)  # inheritable, closes what was at 3
        base[b"LISTEN_PID"] = str(os.getpid()).encode()
        # What close_fds would have done after this function: close what else
        # is inheritable (the usual descriptors are close-on-exec anyway).
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > _FIRST:
                try:
                    if os.get_inheritable(fd):
                        os.close(fd)
                except OSError:
                    pass  # the directory listing's own descriptor, closed since
        os.execve(program, args, base)

    return run


def remove_dead_socket(path: Path) -> None:
    """Delete the socket at ``path`` unless something still listens on it.

    After a plugin exits its socket is stale, except when the manager has
    already put a listening socket of its own there (an upgrade handing the
    socket over to the next version): that one stays.
    """
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    except OSError:
        pass  # a full backlog (EAGAIN): someone listens
    finally:
        probe.close()
