"""The registry and bundle commands of ``pluginkit``: push, upgrade, save, load, build.

``install`` (in :mod:`pluginkit.cli`) takes references too and shows the same
progress. Progress goes to stderr: on a terminal one line per layer is
rewritten in place (bytes and rate); otherwise one line per step; ``-q``
prints nothing but errors.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .distribution._blobs import ProgressEvent

__all__ = ["ProgressPrinter", "progress", "register"]

_LABELS = {
    "download": ("Downloading", "Download complete"),
    "upload": ("Pushing", "Pushed"),
}


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class ProgressPrinter:
    """Draws :class:`~pluginkit.distribution.ProgressEvent` s on a stream."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def __call__(self, event: ProgressEvent) -> None:
        """Show one event."""
        action, ident = event.action, event.id
        if action == "resolve":
            self._line(f"{ident}: resolving")
        elif action in ("download", "upload"):
            verb = _LABELS[action][0]
            if ident not in self._started:
                self._started[ident] = time.monotonic()
                if not self._tty:
                    self._line(f"{ident}: {verb} ({_mb(event.total)})")
                    return
            if self._tty:
                elapsed = max(time.monotonic() - self._started[ident], 1e-6)
                rate = event.current / elapsed
                self._stream.write(
                    f"\r{ident}: {verb} {_mb(event.current)}/{_mb(event.total)} "
                    f"{rate / 1e6:.1f} MB/s\x1b[K"
                )
                self._stream.flush()
        elif action in ("downloaded", "uploaded"):
            done = _LABELS["download" if action == "downloaded" else "upload"][1]
            self._started.pop(ident, None)
            prefix = "\r" if self._tty else ""
            self._stream.write(f"{prefix}{ident}: {done}\x1b[K\n" if self._tty else "")
            if not self._tty:
                self._line(f"{ident}: {done}")
            self._stream.flush()
        elif action == "exists":
            self._line(f"{ident}: Layer already exists")
        elif action == "manifest":
            self._line(f"Digest: {ident}")


@contextlib.contextmanager
def progress(args: argparse.Namespace, stream: TextIO) -> Iterator[None]:
    """Report registry progress of the commands run inside, unless ``-q``."""
    from .distribution._ops import reporting

    printer = None if getattr(args, "quiet", False) else ProgressPrinter(stream)
    with reporting(printer):
        yield


def _open(args: argparse.Namespace) -> Any:
    from .cli import _open_manager

    return _open_manager(args)


def cmd_push(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit push NAME [REF]``."""
    with _open(args) as manager, progress(args, sys.stderr):
        digest = manager.push(args.name, args.ref)
    if args.quiet:
        out.write(digest + "\n")
    return 0


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the distribution commands to the ``pluginkit`` parser."""
    sub = command("push", cmd_push, "push a plugin to a registry (like docker plugin push)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("ref", nargs="?", metavar="REF", help="where to push (default: NAME)")
    sub.add_argument(
        "-q", "--quiet", action="store_true", help="no progress; print only the digest"
    )
