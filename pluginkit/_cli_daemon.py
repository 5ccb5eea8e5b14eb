"""The command line's side of the daemon: ``daemon``, ``logs``, ``events``, and remote commands.

``pluginkit -H ADDR`` (or ``PLUGINKIT_HOST``) sends commands to that daemon.
Without either, a daemon answering on the default socket
(``<run_root>/pluginkit.sock``) - and holding the same root when ``--root``
is given - is used; otherwise the command runs an in-process manager as
before. ``--debug`` says which.

This module is imported by every command: it imports only the standard
library's light modules until it knows what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .daemon._remote import RemoteError

if TYPE_CHECKING:
    from .daemon._remote import Remote

__all__ = ["RemoteError", "add_commands", "add_global_options", "dispatch"]

REMOTE_COMMANDS = frozenset(
    {
        "ls",
        "list",
        "inspect",
        "create",
        "install",
        "privileges",
        "enable",
        "disable",
        "rm",
        "remove",
        "set",
        "call",
        "push",
        "upgrade",
        "save",
        "load",
    }
)
"""Commands a running daemon answers (the others run in-process)."""
NEEDS_DAEMON = frozenset({"logs", "events"})
DAEMON_LOG_RATE = 10_000.0
"""The daemon's default ``ProcessRuntime(log_rate=...)``: its logs are files, not a console."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _debug(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "debug", False):
        sys.stderr.write(f"DEBUG pluginkit.cli: {message}\n")


# -- options and commands ------------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add ``-H/--host`` and the TLS options (shared by the client and ``daemon``)."""
    parser.add_argument(
        "-H",
        "--host",
        action="append",
        metavar="ADDR",
        help="daemon address: unix:///PATH or tcp://HOST:PORT (env PLUGINKIT_HOST; "
        "default: the daemon on <run_root>/pluginkit.sock when one answers). "
        "'daemon' takes it repeatedly: where to listen",
    )
    parser.add_argument(
        "--tlsverify", action="store_true", help="TLS with client certificates (TCP)"
    )
    parser.add_argument("--tlscacert", metavar="FILE", help="CA certificate (TLS)")
    parser.add_argument("--tlscert", metavar="FILE", help="certificate (TLS)")
    parser.add_argument("--tlskey", metavar="FILE", help="private key (TLS)")


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``daemon``, ``logs`` and ``events`` with ``cli.build_parser``'s helper."""
    sub = command("daemon", cmd_daemon, "run the daemon in the foreground (Docker's plugin API)")
    sub.add_argument(
        "--group",
        metavar="GROUP",
        help="group owning the unix socket (mode 0660), like dockerd -G",
    )
    sub.add_argument(
        "--log-rate",
        type=float,
        default=DAEMON_LOG_RATE,
        metavar="LINES",
        help=f"process runtime: plugin lines per second per stream kept in the logs "
        f"(default {DAEMON_LOG_RATE:.0f}; beyond, lines are dropped and counted)",
    )
    sub.add_argument(
        "--no-live-restore",
        dest="live_restore",
        action="store_false",
        help="stop the plugins when the daemon stops (default: they keep running)",
    )
    # Defaults are HealthCheck's (not imported here: the CLI's path to a daemon stays light).
    sub.add_argument(
        "--health-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between two probes of a running plugin (default 1)",
    )
    sub.add_argument(
        "--health-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a probe waits for the plugin's answer (default 0.5)",
    )
    sub.add_argument(
        "--health-retries",
        type=int,
        metavar="N",
        help="failed probes in a row that make a plugin unhealthy and restart it (default 2)",
    )
    sub.add_argument(
        "--health-method",
        metavar="METHOD",
        help="plugin method to call, e.g. VolumeDriver.Capabilities (then only a 2xx "
        "answer is healthy; default: Plugin.Activate, any answer is healthy)",
    )
    sub.add_argument(
        "--no-health-check",
        dest="health_check",
        action="store_false",
        help="do not probe the plugins (default: probe them, restart hung ones)",
    )

    sub = command("logs", cmd_logs, "show a plugin's output (needs the daemon)")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    sub.add_argument("-n", "--tail", metavar="N", default="all", help="only the last N lines")
    sub.add_argument("--since", metavar="T", help="from T (10m, RFC 3339 or a unix time)")
    sub.add_argument("--until", metavar="T", help="up to T")
    sub.add_argument("-t", "--timestamps", action="store_true", help="show when each line came")
    sub.add_argument("name", metavar="NAME")

    sub = command("events", cmd_events, "show plugin events (needs the daemon)")
    sub.add_argument("--since", metavar="T", help="from T (10m, RFC 3339 or a unix time)")
    sub.add_argument("--until", metavar="T", help="up to T (then stop)")
    sub.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="plugin=NAME|ID, event=ACTION, type=plugin (repeatable)",
    )
    sub.add_argument("--format", choices=("text", "json"), default="text")


# -- finding the daemon -----------------------------------------------------------------


def _tls(args: argparse.Namespace) -> tuple[str, str, str] | None:
    if not args.tlsverify:
        return None
    if not (args.tlscacert and args.tlscert and args.tlskey):
        from .cli import CLIError

        raise CLIError("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    return (args.tlscacert, args.tlscert, args.tlskey)


def find_daemon(args: argparse.Namespace) -> Remote | None:
    """Return a connection to the daemon to use, or ``None`` for an in-process manager."""
    from .daemon._remote import Remote, RemoteError

    hosts = args.host or []
    explicit = hosts[-1] if hosts else os.environ.get("PLUGINKIT_HOST") or None
    if explicit:
        remote = Remote(explicit, tls=_tls(args))
        remote.connect()  # an unreachable explicit daemon is an error
        _debug(args, f"using the daemon at {explicit}")
        return remote
    from ._paths import default_daemon_socket

    path = default_daemon_socket(args.run_root)
    remote = Remote(f"unix://{path}")
    try:
        remote.connect()
    except RemoteError:
        _debug(args, f"no daemon answers at {path}: using an in-process manager")
        return None
    if args.root is not None:
        try:
            info = remote.json("GET", "/pluginkit/v1/info")
        except (RemoteError, ValueError):
            remote.close()
            return None
        if os.path.realpath(info.get("Root", "")) != os.path.realpath(args.root):
            _debug(
                args,
                f"the daemon at {path} holds {info.get('Root')}, not {args.root}: "
                "using an in-process manager",
            )
            remote.close()
            return None
    _debug(args, f"using the daemon at unix://{path}")
    return remote


def dispatch(args: argparse.Namespace, out: TextIO) -> int | None:
    """Run the command through a daemon when one is to be used; ``None`` = run it here."""
    command = args.command
    if command == "daemon" or (command not in REMOTE_COMMANDS and command not in NEEDS_DAEMON):
        return None
    remote = find_daemon(args)
    if remote is None and command == "call":
        from .cli import configure_logging

        configure_logging(bool(getattr(args, "debug", False)))
        return local_call(args, out)
    if remote is None:
        if command in NEEDS_DAEMON:
            from .cli import CLIError

            raise CLIError(
                f"'pluginkit {command}' needs a running daemon (start one with 'pluginkit daemon')"
            )
        return None
    with remote:
        return _REMOTE[_CANONICAL.get(command, command)](remote, args, out)


# -- remote commands ---------------------------------------------------------------------


def _path(name: str, suffix: str = "") -> str:
    return f"/v1.41/plugins/{name}{suffix}"


def remote_ls(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``ls`` through the daemon (the same table as in-process)."""
    from .cli import _parse_filters, print_plugins

    capabilities, enabled = _parse_filters(args.filter)
    filters: dict[str, dict[str, bool]] = {}
    if capabilities:
        filters["capability"] = dict.fromkeys(capabilities, True)
    if enabled is not None:
        filters["enabled"] = {"true" if enabled else "false": True}
    query = {"filters": json.dumps(filters)} if filters else None
    print_plugins(remote.json("GET", "/v1.41/plugins", query), args, out)
    return 0


def remote_inspect(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``inspect`` through the daemon."""
    from .daemon._remote import RemoteError

    records, errors = [], []
    for name in args.names:
        try:
            records.append(remote.json("GET", _path(name, "/json")))
        except RemoteError as exc:
            errors.append(str(exc))
    if args.format:  # the same Go template as in-process
        from ._cli_format import print_inspect
        from .cli import _formatted

        _formatted(print_inspect, records, args.format, out)
    else:
        out.write(json.dumps(records, indent=4) + "\n")
    for error in errors:
        sys.stderr.write(f"Error: {error}\n")
    return 1 if errors else 0


def remote_create(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``create NAME DIR`` through the daemon: the directory is sent as a tar, as Docker's CLI."""
    import io
    import tarfile

    from .cli import CLIError
    from .daemon._remote import RemoteError

    context = Path(args.dir)
    if not (context / "config.json").is_file():
        raise CLIError(f"config.json not found in {context}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(context, arcname=".")
    status, _, raw = remote.request(
        "POST", "/v1.41/plugins/create", {"name": args.name}, buf.getvalue(), "application/x-tar"
    )
    if status >= 400:
        from .daemon._remote import _message

        raise RemoteError(_message(raw), status)
    out.write(f"{args.name}\n")
    return 0


def remote_enable(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``enable`` through the daemon."""
    timeout = max(1, round(args.timeout))
    remote.json("POST", _path(args.name, "/enable"), {"timeout": timeout})
    out.write(f"{args.name}\n")
    return 0


def remote_disable(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``disable`` through the daemon."""
    remote.json("POST", _path(args.name, "/disable"), {"force": "1" if args.force else None})
    out.write(f"{args.name}\n")
    return 0


def remote_rm(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``rm`` through the daemon: carry on past failures, as Docker does."""
    from .daemon._remote import RemoteError

    failed = False
    for name in args.names:
        try:
            remote.json("DELETE", _path(name), {"force": "1" if args.force else None})
        except RemoteError as exc:
            sys.stderr.write(f"Error: {exc}\n")
            failed = True
        else:
            out.write(f"{name}\n")
    return 1 if failed else 0


def remote_set(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``set`` through the daemon."""
    remote.json("POST", _path(args.name, "/set"), body=list(args.settings))
    return 0


def _call_args(args: argparse.Namespace) -> tuple[Any, str]:
    """Check ``call``'s METHOD; return its payload and the capability to look up."""
    from .cli import _parse_json, _UsageError

    interface, dot, _ = args.method.partition(".")
    if not dot or not interface:
        raise _UsageError(
            f"METHOD must look like Interface.Method (e.g. VolumeDriver.List), not {args.method!r}"
        )
    payload = _parse_json(args.json, args.method) if args.json is not None else None
    return payload, args.capability or interface


def local_call(args: argparse.Namespace, out: TextIO) -> int:
    """``call`` without a daemon: managed plugins first; legacy ones even when no manager opens.

    A legacy plugin needs neither a Docker engine nor a root: when the manager
    cannot be opened (no engine, the root held or not writable), the legacy
    registry alone is asked.
    """
    import contextlib

    from ._errors import PluginError
    from .cli import CLIError, _legacy_registry, _open_manager

    payload, capability = _call_args(args)
    with contextlib.ExitStack() as stack:
        try:
            finder: Any = stack.enter_context(_open_manager(args, legacy=True))
        except (CLIError, PluginError, OSError) as exc:
            _debug(args, f"no manager ({exc}): looking up legacy plugins only")
            finder = stack.enter_context(_legacy_registry(args))
            plugin = finder.get(args.name, capability)
        else:
            plugin = finder.lookup_with_capability(args.name, capability)
        reply = plugin.client.call(args.method, payload)
    out.write(json.dumps(reply, indent=4) + "\n")
    return 0


def remote_install(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``install`` through the daemon: a local path is read by the daemon (same host)."""
    source = os.path.abspath(args.source) if os.path.exists(args.source) else args.source
    grant: Any = True
    if not args.grant_all_permissions:
        needed = remote.json("GET", "/pluginkit/v1/privileges", {"source": source})
        advice = (
            f"review them with 'pluginkit privileges {args.source}' "
            "and pass --grant-all-permissions"
        )
        grant = _ask_grant(args.source, needed, args, out, advice)
    remote.json(
        "POST",
        "/pluginkit/v1/install",
        body={
            "Source": source,
            "Name": args.alias,
            "Grant": grant,
            "Settings": list(args.settings),
            "Enable": not args.disable,
        },
    )
    out.write(f"Installed plugin {args.source}\n")
    return 0


def remote_privileges(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``privileges`` through the daemon."""
    from ._config import Privilege
    from .cli import _format_privileges

    source = os.path.abspath(args.source) if os.path.exists(args.source) else args.source
    found = remote.json("GET", "/pluginkit/v1/privileges", {"source": source})
    if args.format == "json":
        out.write(json.dumps(found, indent=4) + "\n")
    elif not found:
        out.write("(no privileges)\n")
    else:
        shown = [Privilege(p["Name"], p["Description"], tuple(p["Value"])) for p in found]
        for line in _format_privileges(shown):
            out.write(line + "\n")
    return 0


def remote_call(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``call``: the daemon looks the plugin up (managed, then legacy); the CLI calls it."""
    payload, capability = _call_args(args)
    try:
        found = remote.json(
            "GET", "/pluginkit/v1/lookup", {"name": args.name, "capability": capability}
        )
    except RemoteError as exc:
        if exc.status != 404 or not (args.socket_dir or args.spec_dir):
            raise
        # The daemon's legacy registry looks in its own directories; the ones
        # given here are looked in by this command.
        from .cli import _legacy_registry

        with _legacy_registry(args) as registry:
            reply = registry.get(args.name, capability).client.call(args.method, payload)
        out.write(json.dumps(reply, indent=4) + "\n")
        return 0
    from ._client import Client

    with Client(found["Addr"]) as client:
        reply = client.call(args.method, payload)
    out.write(json.dumps(reply, indent=4) + "\n")
    return 0


def _ask_grant(
    source: str,
    privileges: list[dict[str, Any]],
    args: argparse.Namespace,
    out: TextIO,
    advice: str = "pass --grant-all-permissions",
) -> Any:
    """Return the privileges to send: all with --grant-all-permissions, else asked.

    ``advice`` ends the error given when there is no terminal to ask on.
    """
    from ._config import Privilege
    from .cli import _ask_privileges

    if getattr(args, "grant_all_permissions", False) or not privileges:
        return privileges
    shown = [Privilege(p["Name"], p["Description"], tuple(p["Value"])) for p in privileges]
    _ask_privileges(source, shown, out, advice)
    return privileges


def _progress_lines(chunks: Any, quiet: bool) -> dict[str, Any]:
    """Print Docker's progress messages on stderr (unless quiet); return the last ``aux``."""
    aux: dict[str, Any] = {}
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if message.get("error"):
                raise RemoteError(str(message["error"]))
            if isinstance(message.get("aux"), dict):
                aux = message["aux"]
            elif message.get("status") and not quiet:
                sys.stderr.write(f"{message['status']}\n")
    return aux


def remote_push(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``push NAME [REF]`` through the daemon."""
    query = {"ref": args.ref} if args.ref else None
    aux = _progress_lines(remote.stream("POST", _path(args.name, "/push"), query), args.quiet)
    if args.quiet:
        out.write(f"{aux.get('Digest', '')}\n")
    return 0


def remote_upgrade(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``upgrade NAME [REF]`` through the daemon: privileges asked here, as Docker's CLI."""
    before = remote.json("GET", _path(args.name, "/json"))
    source = args.ref or before.get("PluginReference") or before["Name"]
    needed = remote.json("GET", "/v1.41/plugins/privileges", {"remote": source})
    grant = _ask_grant(source, needed, args, out)
    status, _, raw = remote.request(
        "POST",
        _path(args.name, "/upgrade"),
        {"remote": source},
        json.dumps(grant).encode(),
    )
    if status >= 400:
        from .daemon._remote import _message

        raise RemoteError(_message(raw), status)
    _progress_lines([raw], args.quiet)
    after = remote.json("GET", _path(args.name, "/json"))
    out.write(f"Upgraded plugin {after['Name']} to {after.get('PluginReference')}\n")
    return 0


def remote_save(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``save NAME -o FILE`` through the daemon (it writes FILE: same host)."""
    remote.json(
        "POST", f"/pluginkit/v1/plugins/{args.name}/save", {"path": os.path.abspath(args.output)}
    )
    return 0


def remote_load(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``load FILE`` through the daemon (it reads FILE: same host).

    Without ``--grant-all-permissions`` only a plugin that needs no privileges loads.
    """
    record = remote.json(
        "POST",
        "/pluginkit/v1/load",
        body={
            "File": os.path.abspath(args.file),
            "Name": args.alias,
            "Grant": True if args.grant_all_permissions else None,
        },
    )
    out.write(f"Loaded plugin {record['Name']}\n")
    return 0


_REMOTE: dict[str, Callable[[Remote, argparse.Namespace, TextIO], int]] = {
    "ls": remote_ls,
    "inspect": remote_inspect,
    "create": remote_create,
    "enable": remote_enable,
    "disable": remote_disable,
    "rm": remote_rm,
    "set": remote_set,
    "call": remote_call,
    "install": remote_install,
    "privileges": remote_privileges,
    "push": remote_push,
    "upgrade": remote_upgrade,
    "save": remote_save,
    "load": remote_load,
}
_CANONICAL = {"list": "ls", "remove": "rm"}


# -- logs and events ----------------------------------------------------------------------


def parse_time(text: str, now: float | None = None) -> str:
    """Turn Docker's ``--since``/``--until`` forms into ``SECONDS.NANOS`` for the API.

    Accepted: a unix time (``1700000000`` or with a fraction), a Go duration
    before now (``10m``, ``1h30m``, ``500ms``) and RFC 3339 (``2026-01-02T03:04:05Z``,
    also a date alone).
    """
    from .cli import CLIError

    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return text
    now = time.time() if now is None else now
    if _DURATION.fullmatch(text.replace(" ", "")) or re.fullmatch(
        r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+", text
    ):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
        return f"{now - seconds:.9f}"
    from datetime import datetime, timezone

    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(
            f"invalid time {text!r}: use a duration (10m), RFC 3339 or a unix time"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return f"{stamp.timestamp():.9f}"


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit logs NAME``: stdout lines to stdout, stderr lines to stderr."""
    from .cli import CLIError

    raise CLIError("'pluginkit logs' needs a running daemon (start one with 'pluginkit daemon')")


def remote_logs(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """Run ``logs`` through the daemon: demultiplex Docker's stream into stdout and stderr."""
    from .cli import CLIError

    tail = str(args.tail).strip()
    if tail not in ("all", "") and not tail.isdigit():
        raise CLIError(f"invalid --tail value {args.tail!r}: a number or 'all'")
    query = {
        "stdout": "1",
        "stderr": "1",
        "tail": tail or "all",
        "follow": "1" if args.follow else None,
        "timestamps": "1" if args.timestamps else None,
        "since": parse_time(args.since) if args.since else None,
        "until": parse_time(args.until) if args.until else None,
    }
    outputs = {1: out, 2: sys.stderr}
    pending = b""
    for chunk in remote.stream("GET", f"/pluginkit/v1/plugins/{args.name}/logs", query):
        pending += chunk
        while len(pending) >= 8:
            size = int.from_bytes(pending[4:8], "big")
            if len(pending) < 8 + size:
                break
            stream, data, pending = pending[0], pending[8 : 8 + size], pending[8 + size :]
            target = outputs.get(stream, out)
            target.write(data.decode(errors="replace"))
            target.flush()
    return 0


def cmd_events(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit events``: needs the daemon (its event log)."""
    from .cli import CLIError

    raise CLIError("'pluginkit events' needs a running daemon (start one with 'pluginkit daemon')")


def remote_events(remote: Remote, args: argparse.Namespace, out: TextIO) -> int:
    """``events`` through the daemon: ``docker events``' line format."""
    from .cli import CLIError

    filters: dict[str, dict[str, bool]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"bad format of filter (expected name=value): {item}")
        filters.setdefault(key, {})[value] = True
    query = {
        "since": parse_time(args.since) if args.since else None,
        "until": parse_time(args.until) if args.until else None,
        "filters": json.dumps(filters) if filters else None,
    }
    pending = b""
    for chunk in remote.stream("GET", "/v1.41/events", query):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                out.write(format_event(json.loads(line), args.format) + "\n")
                out.flush()
    return 0


def format_event(msg: dict[str, Any], fmt: str = "text") -> str:
    """One event as ``docker events`` prints it (or its JSON)."""
    if fmt == "json":
        return json.dumps(msg, separators=(",", ":"))
    nanos = int(msg.get("timeNano") or int(msg.get("time", 0)) * 1_000_000_000)
    seconds, rest = divmod(nanos, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:09d}Z"
    actor = msg.get("Actor", {})
    attributes = actor.get("Attributes") or {}
    attrs = ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes))
    line = f"{stamp} {msg.get('Type')} {msg.get('Action')} {actor.get('ID')}"
    return f"{line} ({attrs})" if attrs else line


_REMOTE["logs"] = remote_logs
_REMOTE["events"] = remote_events


# -- the daemon -----------------------------------------------------------------------------


_HEALTH_OPTIONS = ("interval", "timeout", "retries", "method")


def health_check(args: argparse.Namespace) -> Any:
    """Build the daemon's :class:`~pluginkit.HealthCheck` from its options (``None``: off)."""
    from .cli import CLIError

    given = {k: getattr(args, f"health_{k}") for k in _HEALTH_OPTIONS}
    given = {k: v for k, v in given.items() if v is not None}
    if not args.health_check:
        if given:
            option = f"--health-{next(iter(given))}"
            raise CLIError(f"{option} cannot be combined with --no-health-check")
        return None
    from ._health import HealthCheck

    try:
        return HealthCheck(**given)
    except ValueError as exc:
        message = str(exc)
        for key in _HEALTH_OPTIONS:
            message = message.replace(f"HealthCheck.{key}", f"--health-{key}")
        raise CLIError(message) from None


def cmd_daemon(args: argparse.Namespace, out: TextIO) -> int:
    """``pluginkit daemon``: serve in the foreground until SIGTERM."""
    import logging

    from .cli import CLIError, _make_runtime
    from .daemon import Daemon, DaemonTLS

    hosts = args.host or []
    tls = None
    if args.tlsverify or args.tlscacert or args.tlscert or args.tlskey:
        ca, cert, key = _tls(args) or (args.tlscacert, args.tlscert, args.tlskey)
        if not (ca and cert and key):
            raise CLIError("TLS needs --tlscacert, --tlscert and --tlskey")
        tls = DaemonTLS(ca, cert, key)
    checks = health_check(args)
    plugin_log = logging.getLogger("pluginkit.plugin")
    plugin_log.setLevel(logging.DEBUG)
    # Plugin output goes to the daemon's log files; on stderr with --debug only.
    plugin_log.propagate = bool(args.debug)
    logging.getLogger("pluginkit").setLevel(logging.DEBUG if args.debug else logging.INFO)
    import contextlib

    with contextlib.ExitStack() as stack:
        if args.runtime == "process":
            from .runtime import ProcessRuntime

            if not args.log_rate > 0:
                raise CLIError(f"--log-rate must be greater than 0, not {args.log_rate}")
            runtime: Any = ProcessRuntime(log_rate=args.log_rate)
            stack.callback(runtime.close)
        else:
            runtime = _make_runtime(args.runtime, stack)
        daemon = Daemon(
            args.root,
            health_check=checks,
            run_root=args.run_root,
            runtime=runtime,
            hosts=hosts,
            tls=tls,
            group=args.group,
            live_restore=args.live_restore,
        )
        daemon.serve_forever()
    return 0
