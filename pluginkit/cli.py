"""The ``pluginkit`` command: ``docker plugin`` for pluginkit's managed plugins.

Each invocation is a short-lived :class:`~pluginkit.Manager` on a root
directory, created with ``live_restore=True``: plugins it enables keep running
after the command returns, and the next invocation re-attaches to them. Output
and exit codes follow ``docker plugin``:

- 0: success; 1: the operation failed (one line ``Error: <message>`` on
  stderr, with the library's - i.e. Docker's - text); 2: bad usage.
- ``--debug`` logs at DEBUG level and prints the traceback of a failure.

The Docker SDK (slow to import) is imported only when the Docker runtime is
used, so that ``pluginkit --help``, usage errors and the process runtime stay
fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import _cli_daemon, _cli_distribution
from ._errors import PluginError

if TYPE_CHECKING:
    from ._config import Privilege
    from ._legacy import LegacyRegistry
    from ._manager import Manager
    from .runtime import Runtime
    from .runtime.docker import ImportProgress

__all__ = ["main"]

RUNTIMES = ("docker", "process")
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_ENABLE_TIMEOUT = 30.0  # seconds, as `docker plugin enable`
ID_LENGTH = 12  # `docker plugin ls` shows ids cut to 12 characters
DESCRIPTION_LENGTH = 45  # ... and descriptions to 45
ENGINE_HINT = (
    "use --runtime process (or PLUGINKIT_RUNTIME=process) to run plugins as host processes"
)


class CLIError(Exception):
    """A failure the command itself detects (bad filter, bad JSON, refused prompt)."""


class _UsageError(CLIError):
    """The command line is wrong: exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``Error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error the way every other error is reported."""
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# -- helpers ------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def _filter_arg(text: str) -> str:
    """Check an ``ls --filter`` value is ``KEY=VALUE``; else a usage error, as in Docker."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"bad format of filter (expected name=value): {text}")
    return text


def _ellipsis(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, the last one an ellipsis, as Docker's CLI."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Print rows as ``docker plugin ls`` does (min width 10, padding 3; Go's tabwriter)."""
    widths = [max(10, *(len(row[i]) + 3 for row in rows)) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("".join(cells) + row[-1] + "\n")


def _dump_json(value: Any, out: TextIO) -> None:
    # Docker's CLI indents inspect output with four spaces.
    out.write(json.dumps(value, indent=4) + "\n")


def _parse_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"invalid JSON for {what}: {exc}") from None


def _format_privileges(privileges: Iterable[Privilege]) -> list[str]:
    # Docker prints Go's %v of the value list: [a b].
    return [f" - {p.name}: [{' '.join(p.value)}]" for p in privileges]


# -- building the manager -------------------------------------------------------


class _ImportProgress:
    """Shows the progress of a rootfs import into the Docker engine on stderr.

    On a terminal one line is rewritten in place; otherwise (logs, CI) a line
    is printed when an import starts and when it ends, not one per chunk.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._started: set[str] = set()

    def __call__(self, progress: ImportProgress) -> None:
        done, total = progress.done, progress.total
        label = f"Importing the rootfs of {progress.name} into the Docker engine"
        finished = done >= total
        if self._tty:
            percent = 100 * done // total if total else 100
            end = "\n" if finished else ""
            self._stream.write(
                f"\r{label}: {_megabytes(done)}/{_megabytes(total)} ({percent}%){end}"
            )
        elif progress.plugin_id not in self._started:
            self._stream.write(f"{label} ({_megabytes(total)})...\n")
        elif finished:
            self._stream.write(f"{label}: done\n")
        self._started.add(progress.plugin_id)
        if finished:
            self._started.discard(progress.plugin_id)
        self._stream.flush()


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _make_runtime(name: str, stack: contextlib.ExitStack) -> Runtime:
    if name == "process":
        from .runtime import ProcessRuntime

        return ProcessRuntime()
    # The Docker SDK is imported only here: it is slow to import.
    import docker

    try:
        client = docker.from_env()
        stack.callback(client.close)
        client.ping()
    except Exception as exc:  # docker and requests raise many kinds
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise CLIError(f"cannot reach the Docker engine at {host} ({exc}); {ENGINE_HINT}") from exc
    from .runtime import DockerRuntime

    return DockerRuntime(client, on_progress=_ImportProgress(sys.stderr))


def _legacy_registry(args: argparse.Namespace) -> LegacyRegistry:
    from ._legacy import LegacyRegistry

    kwargs: dict[str, Any] = {}
    if args.socket_dir:
        kwargs["socket_dirs"] = tuple(args.socket_dir)
    if args.spec_dir:
        kwargs["spec_dirs"] = tuple(args.spec_dir)
    return LegacyRegistry(**kwargs)


@contextlib.contextmanager
def _open_manager(args: argparse.Namespace, *, legacy: bool = False) -> Iterator[Manager]:
    """Open the short-lived manager of one invocation (live restore: plugins outlive it)."""
    with contextlib.ExitStack() as stack:
        # The runtime first: an unreachable engine is the likeliest failure.
        runtime = _make_runtime(args.runtime, stack)
        from ._manager import Manager

        kwargs: dict[str, Any] = {}
        if legacy:
            kwargs["legacy"] = _legacy_registry(args)
        manager = Manager(
            args.root,
            runtime=runtime,
            run_root=args.run_root,
            live_restore=True,
            **kwargs,
        )
        # Closed before the engine connection (the stack unwinds in reverse).
        yield stack.enter_context(manager)


# -- commands -----------------------------------------------------------------


def _parse_filters(filters: Sequence[str]) -> tuple[list[str], bool | None]:
    """``--filter`` values -> (capabilities, enabled), with Docker's error texts."""
    capabilities: list[str] = []
    enabled_values: set[bool] = set()
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"bad format of filter (expected name=value): {item}")
        if key == "capability":
            capabilities.append(value)
        elif key == "enabled":
            if value.lower() in ("true", "1"):
                enabled_values.add(True)
            elif value.lower() in ("false", "0"):
                enabled_values.add(False)
            else:
                # Docker shows the filter's values as a Go list: enabled=[maybe].
                raise CLIError(f"invalid filter 'enabled=[{value}]'")
        else:
            raise CLIError(f"invalid filter '{key}'")
    if len(enabled_values) > 1:
        raise CLIError("invalid filter 'enabled=[true false]'")
    return capabilities, (enabled_values.pop() if enabled_values else None)


def cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit ls``: list managed plugins."""
    capabilities, enabled = _parse_filters(args.filter)
    with _open_manager(args) as manager:
        if capabilities:
            found = {}
            for capability in capabilities:
                for plugin in manager.list(capability=capability, enabled=enabled):
                    found[plugin.id] = plugin
            plugins = list(found.values())
        else:
            plugins = manager.list(enabled=enabled)
        records = [plugin.to_dict() for plugin in plugins]
    print_plugins(records, args, out)
    return 0


def print_plugins(records: list[dict[str, Any]], args: argparse.Namespace, out: TextIO) -> None:
    """Print plugins (inspect dicts) as ``docker plugin ls`` does, per ``args``."""
    records.sort(key=lambda r: (r["Name"], r["Id"]))
    trunc = not args.no_trunc
    rows = []
    for record in records:
        description = str(record.get("Config", {}).get("Description", "")).replace("\n", " ")
        rows.append(
            {
                "ID": record["Id"][:ID_LENGTH] if trunc else record["Id"],
                "Name": record["Name"],
                "Description": _ellipsis(description, DESCRIPTION_LENGTH) if trunc else description,
                "Enabled": bool(record["Enabled"]),
                "PluginReference": record.get("PluginReference", ""),
            }
        )
    if any("Health" in record for record in records):
        # A manager with health checks: a HEALTH column ("" for plugins not running).
        for row, record in zip(rows, records, strict=True):
            row["Health"] = record.get("Health", {}).get("Status", "")
    if args.quiet:
        for row in rows:
            out.write(f"{row['ID']}\n")
    else:
        from ._cli_format import print_ls

        _formatted(print_ls, rows, args.format, out)


def _formatted(printer: Callable[..., None], *args: Any) -> None:
    """Run a ``--format`` printer; a bad template is an ``Error:``, exit status 1."""
    try:
        printer(*args)
    except ValueError as exc:
        from ._gotemplate import TemplateError  # not imported unless a template failed

        if not isinstance(exc, TemplateError):
            raise
        raise CLIError(str(exc)) from None


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit inspect NAME...``: Docker's inspect JSON, a list."""
    records = []
    errors = []
    with _open_manager(args) as manager:
        for name in args.names:
            try:
                records.append(manager.inspect(name))
            except PluginError as exc:
                errors.append(_one_line(str(exc), args.debug))
    if args.format:
        from ._cli_format import print_inspect

        _formatted(print_inspect, records, args.format, out)
    else:
        _dump_json(records, out)
    for error in errors:
        sys.stderr.write(f"Error: {error}\n")
    return EXIT_ERROR if errors else 0


def cmd_create(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit create NAME DIR``: a plugin from a directory (config.json + rootfs/)."""
    with _open_manager(args) as manager:
        manager.create(args.name, args.dir)
    out.write(f"{args.name}\n")
    return 0


def _confirm(question: str, out: TextIO) -> bool:
    """Ask a yes/no question on the terminal; ``False`` unless the answer is y/yes."""
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _ask_privileges(
    source: str,
    privileges: list[Privilege],
    out: TextIO,
    advice: str = "pass --grant-all-permissions",
) -> None:
    """Show the privileges ``source`` requests and ask for them; CLIError unless granted.

    ``advice`` ends the error given when there is no terminal to ask on.
    """
    if not sys.stdin.isatty():
        raise CLIError(
            f'plugin "{source}" requests privileges and there is no terminal to ask; {advice}'
        )
    out.write(f'Plugin "{source}" is requesting the following privileges:\n')
    for line in _format_privileges(privileges):
        out.write(line + "\n")
    if not _confirm("Do you grant the above permissions?", out):
        raise CLIError("permission denied")


def cmd_install(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit install SOURCE``: create from a directory or tar, grant, set, enable."""

    def ask(privileges: list[Privilege]) -> bool:
        # Called by install() with what the plugin it read needs: a missing
        # source is reported as such, and what is shown is what is checked.
        if privileges:
            advice = (
                f"review them with 'pluginkit privileges {args.source}' "
                "and pass --grant-all-permissions"
            )
            _ask_privileges(args.source, privileges, out, advice)
        return True

    with _open_manager(args) as manager:
        grant = True if args.grant_all_permissions else ask
        with _cli_distribution.progress(args, sys.stderr):
            plugin = manager.install(args.source, name=args.alias, grant=grant)
        if args.settings:
            try:
                manager.set(plugin.name, args.settings)
            except Exception:
                # Do not leave a half-configured plugin behind: the user fixes
                # the argument and runs the same install again.
                try:
                    manager.remove(plugin.name, force=True)
                except PluginError as exc:
                    import logging

                    logging.getLogger(__name__).warning(
                        "could not remove %s again: %s", plugin.name, exc
                    )
                raise
        if not args.disable:
            manager.enable(plugin.name, timeout=DEFAULT_ENABLE_TIMEOUT)
    out.write(f"Installed plugin {args.source}\n")
    return 0


def cmd_privileges(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit privileges SOURCE``: what installing SOURCE would grant."""
    with _open_manager(args) as manager:
        privileges = manager.privileges(args.source)
    if args.format == "json":
        _dump_json(
            [
                {"Name": p.name, "Description": p.description, "Value": list(p.value)}
                for p in privileges
            ],
            out,
        )
    elif not privileges:
        out.write("(no privileges)\n")
    else:
        for line in _format_privileges(privileges):
            out.write(line + "\n")
    return 0


def cmd_fleet(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit fleet apply|status|rm|agent-image|agent``: see :mod:`pluginkit.fleet`."""
    from .fleet._cli import run

    return run(args, out)


def cmd_enable(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit enable NAME``: start it and wait until its socket answers."""
    with _open_manager(args) as manager:
        manager.enable(args.name, timeout=args.timeout)
    out.write(f"{args.name}\n")
    return 0


def cmd_podman_register(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit podman-register [--dir DIR]``: write Podman's drop-in for the volume plugins."""
    from .podman import register

    with _open_manager(args) as manager:
        path = register(manager, args.dir)
    out.write(f"{path}\n" if path.exists() else f"{path} (removed: no enabled volume plugin)\n")
    return 0


def cmd_disable(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit disable NAME``: stop it (``-f`` even when in use)."""
    with _open_manager(args) as manager:
        manager.disable(args.name, force=args.force)
    out.write(f"{args.name}\n")
    return 0


def cmd_rm(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit rm NAME...``: remove each; carry on past failures, as Docker does."""
    failed = False
    with _open_manager(args) as manager:
        for name in args.names:
            try:
                manager.remove(name, force=args.force)
            except PluginError as exc:
                sys.stderr.write(f"Error: {_one_line(str(exc), args.debug)}\n")
                failed = True
            else:
                out.write(f"{name}\n")
    return EXIT_ERROR if failed else 0


def cmd_set(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit set NAME KEY=VALUE...``: change settings of a disabled plugin."""
    with _open_manager(args) as manager:
        manager.set(args.name, args.settings)
    return 0


def cmd_discover(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit discover``: legacy plugins on this host, activated, with capabilities."""
    rows: list[dict[str, Any]] = []
    failures = []
    with _legacy_registry(args) as registry:
        for name in registry.scan():
            try:
                plugin = registry.get(name, None)
            except Exception as exc:
                failures.append(str(exc))
                continue
            rows.append(
                {"Name": name, "Addr": plugin.addr, "Implements": list(plugin.capabilities)}
            )
    if args.format == "json":
        _dump_json(rows, out)
    else:
        table = [["NAME", "CAPABILITIES", "ADDRESS"]]
        for row in rows:
            table.append([row["Name"], ",".join(row["Implements"]), row["Addr"]])
        _table(table, out)
    for error in failures:
        # The registry's errors already start with 'plugin "NAME"'.
        sys.stderr.write(f"Warning: {error}\n")
    return 0


def cmd_call(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit call NAME METHOD [JSON]``: one protocol call, reply printed as JSON."""
    interface, dot, _ = args.method.partition(".")
    if not dot or not interface:
        raise _UsageError(
            f"METHOD must look like Interface.Method (e.g. VolumeDriver.List), not {args.method!r}"
        )
    payload = _parse_json(args.json, args.method) if args.json is not None else None
    capability = args.capability or interface
    with _open_manager(args, legacy=True) as manager:
        plugin = manager.lookup_with_capability(args.name, capability)
        reply = plugin.client.call(args.method, payload)
    _dump_json(reply, out)
    return 0


def cmd_completion(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit completion SHELL``: a completion script for bash, zsh, fish or tcsh."""
    from ._cli_completion import completion_script

    out.write(completion_script(build_parser(), args.shell))
    return 0


# -- the parser -----------------------------------------------------------------


class _Skipped:
    """Stands in for the sub-parser of a command not being run: swallows its setup calls."""

    def __getattr__(self, name: str) -> Any:
        return self._swallow

    def _swallow(self, *args: Any, **kwargs: Any) -> Any:
        return self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the command line: global options and one sub-parser per command.

    ``only`` builds the sub-parser of that command alone (the others are
    skipped): every invocation starts faster, and :func:`main` falls back to
    the whole parser for help and usage errors.
    """
    parser = _ArgumentParser(
        prog="pluginkit",
        description="Manage out-of-process plugins the way `docker plugin` does.",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=os.environ.get("PLUGINKIT_ROOT") or None,
        help="state directory (env PLUGINKIT_ROOT; default: a per-user data dir)",
    )
    parser.add_argument(
        "--run-root",
        metavar="DIR",
        default=None,
        help="directory for plugin sockets (keep it short: socket paths are limited)",
    )
    env_runtime = os.environ.get("PLUGINKIT_RUNTIME") or "docker"
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=env_runtime,
        help="what runs managed plugins (env PLUGINKIT_RUNTIME; default: docker)",
    )
    parser.add_argument("--debug", action="store_true", help="debug logging; tracebacks on failure")
    parser.add_argument("--version", action="version", version=_version())
    _cli_daemon.add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, func: Callable[..., int], help: str, **kw: Any
    ) -> argparse.ArgumentParser:
        if only is not None and only != name and only not in kw.get("aliases", ()):
            skipped: Any = _Skipped()
            return skipped  # type: ignore[no-any-return]
        sub = commands.add_parser(name, help=help, description=help, **kw)
        # command_parser: whose --help a usage error found after parsing points at.
        sub.set_defaults(func=func, command_parser=sub)
        return sub

    def legacy_dirs(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--socket-dir",
            action="append",
            metavar="DIR",
            help="look for legacy plugin sockets here (repeatable; default /run/docker/plugins)",
        )
        sub.add_argument(
            "--spec-dir",
            action="append",
            metavar="DIR",
            help="look for .spec/.json files here (repeatable; default /etc/docker/plugins, "
            "/usr/lib/docker/plugins)",
        )

    sub = command("ls", cmd_ls, "list plugins", aliases=["list"])
    sub.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        type=_filter_arg,
        metavar="KEY=VALUE",
        help="enabled=true|false or capability=CAP (repeatable)",
    )
    sub.add_argument(
        "--format",
        default="table",
        metavar="FORMAT",
        help="table (default), json, a Go template ('{{.Name}}') or 'table TEMPLATE'",
    )
    sub.add_argument("--no-trunc", action="store_true", help="do not truncate ids and descriptions")
    sub.add_argument("-q", "--quiet", action="store_true", help="only print ids")

    sub = command("inspect", cmd_inspect, "show plugins as JSON (like docker plugin inspect)")
    sub.add_argument(
        "-f", "--format", metavar="TEMPLATE", help="a Go template, e.g. '{{.Settings.Env}}'"
    )
    sub.add_argument("names", nargs="+", metavar="NAME")

    sub = command("create", cmd_create, "create a plugin from a directory (config.json, rootfs/)")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("dir", metavar="DIR")

    sub = command(
        "install", cmd_install, "install a plugin from a registry, a directory or a tar archive"
    )
    sub.add_argument("source", metavar="SOURCE", help="REF, or a path (a path that exists wins)")
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub.add_argument("--alias", metavar="NAME", help="local name (default: from SOURCE)")
    sub.add_argument(
        "--grant-all-permissions",
        action="store_true",
        help="grant every privilege the plugin asks for without asking",
    )
    sub.add_argument("--disable", action="store_true", help="do not enable it after install")
    sub.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="settings, as for set")

    _cli_distribution.register(command)

    sub = command("privileges", cmd_privileges, "show the privileges a plugin needs")
    sub.add_argument("source", metavar="SOURCE")
    sub.add_argument("--format", choices=("text", "json"), default="text")

    sub = command(
        "podman-register",
        cmd_podman_register,
        "map enabled volume plugins to their stable sockets in a containers.conf drop-in",
    )
    sub.add_argument(
        "--dir",
        metavar="DIR",
        default=None,
        help="drop-in directory (default /etc/containers/containers.conf.d)",
    )

    from .fleet._cli import add_parser as add_fleet_parser

    add_fleet_parser(command("fleet", cmd_fleet, "run plugins on every node of a Docker Swarm"))

    sub = command("enable", cmd_enable, "start a plugin and wait until it answers")
    sub.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_ENABLE_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for its socket (default 30)",
    )
    sub.add_argument("name", metavar="NAME")

    sub = command("disable", cmd_disable, "stop a plugin")
    sub.add_argument("-f", "--force", action="store_true", help="even when it is in use")
    sub.add_argument("name", metavar="NAME")

    sub = command("rm", cmd_rm, "remove plugins", aliases=["remove"])
    sub.add_argument("-f", "--force", action="store_true", help="even when enabled or in use")
    sub.add_argument("names", nargs="+", metavar="NAME")

    sub = command("set", cmd_set, "change settings of a disabled plugin")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument(
        "settings",
        nargs="+",
        metavar="KEY=VALUE",
        help="NAME[.FIELD][=VALUE], as docker plugin set",
    )

    sub = command(
        "discover", cmd_discover, "list legacy plugins on this host and what they implement"
    )
    legacy_dirs(sub)
    sub.add_argument("--format", choices=("table", "json"), default="table")

    sub = command("call", cmd_call, "call a plugin (managed or legacy) and print the JSON reply")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("method", metavar="METHOD", help="e.g. VolumeDriver.List")
    sub.add_argument(
        "json", nargs="?", metavar="JSON", help="request body ('-' reads stdin; default: none)"
    )
    sub.add_argument(
        "--capability",
        metavar="CAP",
        help="capability to look the plugin up by (default: METHOD's prefix)",
    )
    legacy_dirs(sub)

    sub = command("completion", cmd_completion, "print a shell completion script")
    sub.add_argument("shell", choices=("bash", "zsh", "fish", "tcsh"), metavar="SHELL")
    _cli_daemon.add_commands(command)
    return parser


def _version() -> str:
    from . import __version__

    return f"pluginkit version {__version__}"


_GLOBAL_VALUE_OPTIONS = frozenset(
    {"--root", "--run-root", "--runtime", "-H", "--host", "--tlscacert", "--tlscert", "--tlskey"}
)


def _command_word(argv: Sequence[str]) -> str | None:
    """Guess the command named on the command line (``None`` when there is none).

    A wrong guess costs nothing but time: :func:`main` then parses again with
    the whole parser.
    """
    expect_value = False
    for token in argv:
        if expect_value:
            expect_value = False
        elif token.startswith("-"):
            expect_value = token in _GLOBAL_VALUE_OPTIONS
        else:
            return token
    return None


def _parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse with the named command's sub-parser alone, else with the whole parser."""
    word = _command_word(sys.argv[1:] if argv is None else argv)
    if word is not None:
        try:
            return _parse(build_parser(only=word), argv)
        except _UsageError:
            pass  # an unknown command or a usage error: say it as the whole parser does
    return _parse(build_parser(), argv)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``install``'s KEY=VALUE settings come before or after its options.

    argparse stops filling a positional list at the first option, so
    ``install SRC --alias x KEY=VALUE`` leaves ``KEY=VALUE`` over; Docker's
    CLI accepts options anywhere.
    """
    args, extras = parser.parse_known_args(argv)
    if extras and args.command == "install" and not any(e.startswith("-") for e in extras):
        args.settings = [*args.settings, *extras]
    elif extras:
        command_parser: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


# -- entry point ----------------------------------------------------------------


def _one_line(message: str, debug: bool) -> str:
    """Fold a multi-line message (e.g. a plugin's last stderr lines) into one line.

    The first line says what failed and the last one, for a plugin that died,
    usually why (the end of its traceback); ``--debug`` shows every line.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if debug or len(lines) <= 1:
        return message
    more = " (--debug shows all)" if len(lines) > 2 else ""
    return f"{lines[0]} {lines[-1]}{more}"


def _describe(exc: BaseException) -> str:
    """Say what went wrong."""
    if isinstance(exc, (CLIError, PluginError, _cli_daemon.RemoteError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def configure_logging(debug: bool) -> None:
    """Log to stderr (DEBUG with ``--debug``, else WARNING) for a command run in-process.

    A command answered by the daemon logs nothing and skips this (and the
    import of :mod:`logging`).
    """
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        # What plugins print is theirs, not the command's output (docker
        # plugin does not show it either); a failed start quotes it.
        logging.getLogger("pluginkit.plugin").setLevel(logging.CRITICAL + 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pluginkit`` command and return its exit status."""
    debug = False
    try:
        args = _parse_command_line(argv)
        debug = args.debug
        if args.runtime not in RUNTIMES:
            raise _UsageError(
                f"PLUGINKIT_RUNTIME must be one of {', '.join(RUNTIMES)}, not {args.runtime!r}"
            )
        if args.root is not None:
            args.root = Path(args.root)
        if args.run_root is not None:
            args.run_root = Path(args.run_root)
        # A running daemon answers what it can; else an in-process manager.
        status = _cli_daemon.dispatch(args, sys.stdout)
        if status is None:
            configure_logging(debug)
            status = args.func(args, sys.stdout)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return 130
    except _UsageError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `pluginkit ls | head`: the reader went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"Error: {_one_line(_describe(exc), debug)}\n")
        return EXIT_ERROR
