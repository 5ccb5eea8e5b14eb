r"""Plugin logs kept by the daemon, in Docker's ``json-file`` format, and read back.

The runtimes forward every line a plugin prints to the logger
``pluginkit.plugin`` (``extra={"plugin": id, "stream": ...}``); the daemon's
:class:`LogWriter` appends each one, with the time it was seen, to
``<root>/daemon/logs/<id>.log`` as ``{"log": "line\\n", "stream": "stdout",
"time": "RFC3339Nano"}`` - the lines ``docker logs`` reads for containers.
A file past ``max_bytes`` is rotated once (``<id>.log.1``).

:func:`read_logs` reads from the end of the file for ``tail`` (cost
independent of the log's size) and follows new lines when asked.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["LogWriter", "read_logs", "rfc3339"]

MAX_BYTES = 10 * 1024 * 1024
"""Size past which a plugin's log file is rotated."""
OPEN_FILES = 128
"""How many log files the writer keeps open at once (least recently used closed)."""
_BLOCK = 64 * 1024


def rfc3339(t: float) -> str:
    """Format ``t`` as Go's ``time.RFC3339Nano`` in UTC (nanosecond digits, ``Z``)."""
    seconds = int(t)
    nanos = round((t - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{base}.{nanos:09d}Z"


def _parse_rfc3339(text: str) -> float:
    # 2026-12-06T12:00:00.123456789Z: datetime keeps microseconds; add the rest.
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return base.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


class LogWriter(logging.Handler):
    """A logging handler writing plugin lines to per-plugin json-file logs."""

    def __init__(self, directory: Path, *, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(level=logging.DEBUG)
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._files: collections.OrderedDict[str, IO[bytes]] = collections.OrderedDict()
        self._io = threading.Lock()
        self.changed = threading.Condition()

    def path(self, plugin_id: str) -> Path:
        """Return the log file of a plugin."""
        return self.directory / f"{plugin_id}.log"

    def emit(self, record: logging.LogRecord) -> None:
        """Append one line (called by :mod:`logging`)."""
        plugin_id = getattr(record, "plugin", None)
        if not isinstance(plugin_id, str) or "/" in plugin_id or not plugin_id:
            return
        stream = "stderr" if getattr(record, "stream", "") == "stderr" else "stdout"
        entry = {
            "log": record.getMessage() + "\n",
            "stream": stream,
            "time": rfc3339(record.created),
        }
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        try:
            with self._io:
                out = self._open(plugin_id)
                out.write(data)
                out.flush()
                if out.tell() > self.max_bytes:
                    self._rotate(plugin_id)
        except OSError:
            self.handleError(record)
            return
        with self.changed:
            self.changed.notify_all()

    def _open(self, plugin_id: str) -> IO[bytes]:
        out = self._files.get(plugin_id)
        if out is not None:
            self._files.move_to_end(plugin_id)
            return out
        fd = os.open(self.path(plugin_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        out = os.fdopen(fd, "ab")
        self._files[plugin_id] = out
        while len(self._files) > OPEN_FILES:
            _, old = self._files.popitem(last=False)
            old.close()
        return out

    def _rotate(self, plugin_id: str) -> None:
        self._files.pop(plugin_id).close()
        path = self.path(plugin_id)
        os.replace(path, path.with_name(path.name + ".1"))

    def forget(self, plugin_id: str) -> None:
        """Close and delete a removed plugin's logs."""
        with self._io:
            out = self._files.pop(plugin_id, None)
            if out is not None:
                out.close()
            for path in (
                self.path(plugin_id),
                self.path(plugin_id).with_name(f"{plugin_id}.log.1"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def close(self) -> None:
        """Close every open file."""
        with self._io:
            for out in self._files.values():
                out.close()
            self._files.clear()
        with self.changed:
            self.changed.notify_all()
        super().close()


def _tail_lines(path: Path, count: int) -> list[bytes]:
    """Return the last ``count`` complete lines of a file, reading from its end."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")[:-1]  # the last element is after the final newline
    if pos > 0:
        lines = lines[1:]  # the first one may be cut
    return lines[-count:] if count else []


def _all_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return []


def read_logs(
    writer: LogWriter,
    plugin_id: str,
    *,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    follow: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[dict[str, Any] | None]:
    """Yield log entries ``{"log", "stream", "time", "t"}``, oldest first.

    ``tail`` keeps the last lines only (read from the end); ``since`` and
    ``until`` bound the times; ``follow`` then waits for new lines until
    ``stop`` is set, yielding ``None`` about once a second while idle.
    """
    path = writer.path(plugin_id)
    old = path.with_name(path.name + ".1")
    # The size at the start: following goes on from there.
    try:
        offset = path.stat().st_size
        inode = path.stat().st_ino
    except FileNotFoundError:
        offset, inode = 0, 0
    if tail is not None:
        lines = _tail_lines(path, tail)
        if len(lines) < tail:
            lines = _tail_lines(old, tail - len(lines)) + lines
    else:
        lines = _all_lines(old) + _all_lines(path)
    for raw in lines:
        entry = _decode(raw)
        if entry is not None and _within(entry, since, until):
            yield entry
    if not follow:
        return
    stop = stop if stop is not None else threading.Event()
    pending = b""
    while not stop.is_set():
        if until is not None and time.time() > until:
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_ino != inode or st.st_size < offset):
            inode, offset, pending = st.st_ino, 0, b""  # rotated: start the new file
        if st is not None and st.st_size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                entry = _decode(raw)
                if entry is not None and _within(entry, since, until):
                    yield entry
            continue
        with writer.changed:
            writer.changed.wait(1.0)
        yield None


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
        entry["t"] = _parse_rfc3339(entry["time"])
    except (ValueError, KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def _within(entry: dict[str, Any], since: float | None, until: float | None) -> bool:
    t = entry["t"]
    return (since is None or t >= since) and (until is None or t <= until)
