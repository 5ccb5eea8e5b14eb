"""Bounded plugin output for :class:`~pluginkit.runtime.ProcessRuntime`.

A plugin's stdout and stderr are FIFOs in its state directory, never files it
writes itself. The runtime reads them in big chunks and

- appends what it reads to ``<stream>.log``, renamed to ``<stream>.log.1``
  (replacing the previous one) whenever it would grow past half the cap, so
  the two files together never hold more than ``max_log_bytes``;
- forwards complete lines to the ``pluginkit.plugin`` logger at most
  ``log_rate`` lines per second per stream (a token bucket with a burst of
  ``2 * log_rate``); the rest is dropped and counted, and a warning says how
  much was dropped once forwarding resumes (or the plugin exits).

Memory is bounded too: one chunk read at a time, a partial line of at most
``_MAX_LINE`` bytes, and the stderr tail of a fixed number of lines.

The plugin gets its stream opened read-write on the FIFO: it is then itself a
reader, so it never gets ``SIGPIPE`` when no manager reads (a manager killed
with live restore); once the pipe buffer is full its writes block until a
manager re-attaches and drains it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections import deque
from pathlib import Path

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._plugin_log import LineForwarder

__all__ = ["OutputStats", "OutputStream"]

_plugin_log = logging.getLogger("pluginkit.plugin")
_log = logging.getLogger("pluginkit.runtime.process")

# A line longer than this is forwarded in pieces rather than buffered forever.
_MAX_LINE = 16 * 1024
# One read() at most this much.
_CHUNK = 1024 * 1024
# One pump reads at most this much, so that one chatty plugin cannot starve
# the others (the monitor comes back to it at once: the FIFO stays readable).
_PUMP_BUDGET = 4 * _CHUNK
# The pipe buffer asked for (Linux's F_SETPIPE_SZ; the default is 64 KiB).
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_SIZE = 1024 * 1024
# How much of a log file is read back to seed the tail of a restored plugin.
_SEED_BYTES = 8 * 1024


@attrs.frozen
class OutputStats:
    """What became of one output stream of a plugin since it was started or re-attached.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        read_bytes: bytes read from the plugin.
        rotated_out_bytes: bytes that were on disk and were deleted by a rotation.
        forwarded_lines: lines logged on ``pluginkit.plugin``.
        dropped_lines: lines not logged because the plugin wrote faster than
            ``log_rate`` lines per second.
        dropped_bytes: the size of those lines.
    """

    stream: str
    read_bytes: int = 0
    rotated_out_bytes: int = 0
    forwarded_lines: int = 0
    dropped_lines: int = 0
    dropped_bytes: int = 0


def make_fifo(path: Path) -> None:
    """Create a fresh FIFO at ``path`` (anything there before is removed)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mkfifo(path, 0o600)


def enlarge(fd: int) -> None:
    """Give the pipe a bigger buffer: fewer wake-ups under a flood (best effort).

    Unprivileged users have a budget of pipe memory (``pipe-user-pages-soft``);
    past it the kernel refuses and the pipe keeps its default size.
    """
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


def open_for_plugin(path: Path) -> int:
    """Open the descriptor handed to the plugin: read-write, so that it never gets SIGPIPE."""
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


class OutputStream:
    """Drain one FIFO into a rotated log file and the logger (not thread-safe: one reader)."""

    def __init__(
        self,
        fifo: Path,
        log_file: Path,
        *,
        stream: str,
        level: int,
        extra: dict[str, str],
        max_bytes: int,
        rate: float,
        keep: int,
        fresh: bool,
    ) -> None:
        self.stream = stream
        self.tail: deque[str] = deque(maxlen=keep)
        # Lines that say their level (Python logging, logrus) are logged at
        # it, without the prefix; others at ``level``.
        self._forward = LineForwarder(_plugin_log, level, extra)
        self._extra = extra
        self._log_file = log_file
        self._rotated = Path(f"{log_file}.1")
        self._half = max_bytes // 2
        self._rate = rate
        self._burst = max(2 * rate, 1.0)
        self._tokens = self._burst
        self._refilled = time.monotonic()
        self._partial = b""
        self._read = self._rotated_out = self._forwarded = 0
        self._dropped_lines = self._dropped_bytes = 0
        self._noticed_lines = self._noticed_bytes = 0
        if fresh:
            for path in (log_file, self._rotated):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        elif keep:
            self._seed()
        self.fd: int | None = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if fresh:
            enlarge(self.fd)
        self._out: int | None = None
        try:
            self._open_out()
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise

    # -- files -------------------------------------------------------------

    def _open_out(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._out = os.open(self._log_file, flags, 0o600)
        self._size = os.fstat(self._out).st_size

    def _seed(self) -> None:
        try:
            with open(self._log_file, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - _SEED_BYTES)
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first one is cut
        self.tail.extend(_decode(line) for line in lines if line)

    def _write(self, data: bytes) -> None:
        if self._half <= 0 or self._out is None:
            return
        view = memoryview(data)
        while view:
            room = self._half - self._size
            if room <= 0:
                self._rotate()
                room = self._half
            n = os.write(self._out, view[:room])
            self._size += n
            view = view[n:]

    def _rotate(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._rotated_out += self._rotated.stat().st_size
        os.replace(self._log_file, self._rotated)
        if self._out is not None:
            os.close(self._out)
            self._out = None
        self._open_out()

    # -- reading -----------------------------------------------------------

    def pump(self, *, final: bool = False) -> bool:
        """Read what the plugin wrote (up to a budget, all of it when ``final``).

        Returns ``False`` once the FIFO has no writer left and is empty (no
        point watching it any more).
        """
        fd = self.fd
        if fd is None:
            return False
        budget = _PUMP_BUDGET * (4 if final else 1)
        open_ = True
        while budget > 0:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                open_ = False
                break
            budget -= len(data)
            self._read += len(data)
            try:
                self._write(data)
            except OSError as exc:
                # A full disk must not stop the lines reaching the logger.
                _log.warning("cannot write %s: %s", self._log_file, exc)
            self._feed(data)
        if final:
            if self._partial:
                self._line(self._partial)
                self._partial = b""
            self._notice()
        return open_

    def _take(self) -> bool:
        if self._tokens < 1:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            if self._tokens < 1:
                return False
        self._tokens -= 1
        return True

    def _feed(self, data: bytes) -> None:
        data = self._partial + data if self._partial else data
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if not self._take():
                self._drop_rest(data, start)
                return
            self._notice()
            self._line(data[start:end])
            start = end + 1
        rest = data[start:]
        while len(rest) > _MAX_LINE:
            self._line(rest[:_MAX_LINE])
            rest = rest[_MAX_LINE:]
        self._partial = rest

    def _drop_rest(self, data: bytes, start: int) -> None:
        """Out of tokens: count the complete lines from ``start`` without logging them."""
        last = data.rfind(b"\n")
        complete = data[start : last + 1]
        lines = complete.count(b"\n")
        self._dropped_lines += lines
        self._dropped_bytes += len(complete)
        if self.tail.maxlen:
            keep = complete[:-1].rsplit(b"\n", self.tail.maxlen)[-self.tail.maxlen :]
            self.tail.extend(_decode(line) for line in keep)
        rest = data[last + 1 :]
        if len(rest) > _MAX_LINE:
            self._dropped_lines += 1
            self._dropped_bytes += len(rest)
            rest = b""
        self._partial = rest

    def _line(self, raw: bytes) -> None:
        line = _decode(raw)
        if self.tail.maxlen:
            self.tail.append(line)
        self._forwarded += 1
        self._forward(line)

    def _notice(self) -> None:
        lines = self._dropped_lines - self._noticed_lines
        if not lines:
            return
        size = self._dropped_bytes - self._noticed_bytes
        self._noticed_lines, self._noticed_bytes = self._dropped_lines, self._dropped_bytes
        _log.warning(
            "plugin %s: %d %s lines (%d bytes) not logged: more than %g lines/s",
            self._extra["plugin_name"],
            lines,
            self.stream,
            size,
            self._rate,
        )

    def stats(self) -> OutputStats:
        """Return the counters of this stream."""
        return OutputStats(
            stream=self.stream,
            read_bytes=self._read,
            rotated_out_bytes=self._rotated_out,
            forwarded_lines=self._forwarded,
            dropped_lines=self._dropped_lines,
            dropped_bytes=self._dropped_bytes,
        )

    def close(self) -> None:
        """Close the FIFO and the log file."""
        for fd in (self.fd, self._out):
            if fd is not None:
                os.close(fd)
        self.fd = self._out = None


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")
