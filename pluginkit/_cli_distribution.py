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
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    # Types only: the commands answered by a daemon must not import the
    # distribution package (attrs, cattrs, hashlib...) on their way.
    from ._config import Privilege
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


def _asker(source: str, out: TextIO) -> Callable[[list[Privilege]], bool]:
    """Ask on the terminal for the privileges a plugin needs, as ``install`` does."""
    from .cli import _ask_privileges

    def ask(privileges: list[Privilege]) -> bool:
        if privileges:
            _ask_privileges(source, privileges, out)
        return True

    return ask


def cmd_upgrade(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit upgrade NAME [REF] [--grant-all-permissions]``."""
    with _open(args) as manager:
        source = args.ref if args.ref is not None else manager.get(args.name).plugin_reference
        grant: Any = True if args.grant_all_permissions else _asker(source, out)
        with progress(args, sys.stderr):
            plugin = manager.upgrade(args.name, args.ref, grant=grant)
    out.write(f"Upgraded plugin {plugin.name} to {plugin.plugin_reference}\n")
    return 0


def cmd_save(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit save NAME -o FILE``."""
    with _open(args) as manager:
        manager.save(args.name, args.output)
    return 0


def cmd_load(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit load FILE [--alias NAME] [--grant-all-permissions]``."""
    grant: Any = True if args.grant_all_permissions else _asker(args.file, out)
    with _open(args) as manager, progress(args, sys.stderr):
        plugin = manager.load(args.file, name=args.alias, grant=grant)
    out.write(f"Loaded plugin {plugin.name}\n")
    return 0


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit build MODULE -o DIR``."""
    from pathlib import Path

    from .distribution._build import build_plugin

    config = None
    if args.config is not None:
        from .cli import _parse_json

        config = _parse_json(Path(args.config).read_text(), args.config)
    target = build_plugin(
        args.module,
        args.output,
        source_dir=args.path,
        config=config,
        types=args.type,
        socket=args.socket,
        description=args.description,
    )
    out.write(f"Built plugin directory {target} (create it with: pluginkit create NAME {target})\n")
    return 0


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the distribution commands to the ``pluginkit`` parser."""
    sub = command("push", cmd_push, "push a plugin to a registry (like docker plugin push)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("ref", nargs="?", metavar="REF", help="where to push (default: NAME)")
    sub.add_argument(
        "-q", "--quiet", action="store_true", help="no progress; print only the digest"
    )

    sub = command(
        "upgrade", cmd_upgrade, "upgrade a plugin in place from a registry (enabled ones too)"
    )
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("ref", nargs="?", metavar="REF", help="default: where it came from")
    sub.add_argument(
        "--grant-all-permissions",
        action="store_true",
        help="grant every privilege the new version asks for without asking",
    )
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sub = command(
        "build", cmd_build, "build a plugin directory (Python + pluginkit + your module) for create"
    )
    sub.add_argument("module", metavar="MODULE", help="what `python -m` runs in the plugin")
    sub.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to create")
    sub.add_argument("--path", metavar="DIR", help="where MODULE's package is (default: .)")
    sub.add_argument("--config", metavar="FILE", help="a config.json to start from")
    sub.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="interface type, e.g. docker.volumedriver/1.0 (repeatable; without --config)",
    )
    sub.add_argument("--socket", metavar="NAME", help="socket name (default: MODULE.sock)")
    sub.add_argument("--description", default="", metavar="TEXT")

    sub = command("save", cmd_save, "write a plugin to an OCI image layout tar (offline bundle)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("-o", "--output", required=True, metavar="FILE", help="the tar to write")

    sub = command("load", cmd_load, "install a plugin from a bundle written by save")
    sub.add_argument("file", metavar="FILE")
    sub.add_argument("--alias", metavar="NAME", help="local name (default: the bundle's)")
    sub.add_argument(
        "--grant-all-permissions",
        action="store_true",
        help="grant every privilege the plugin asks for without asking",
    )
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")
