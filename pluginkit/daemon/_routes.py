"""The daemon's routes: Docker's Engine API plugin endpoints and pluginkit's own.

Each handler takes a :class:`Request` and returns a :class:`Response`: a
status with a JSON value, or a generator of chunks for streams. Texts and
status codes are dockerd's (``api/server/router/plugin/plugin_routes.go``).
Docker's endpoints live at ``/...`` and ``/v1.NN/...``; pluginkit's additions
under ``/pluginkit/v1/...``, a prefix Docker's API cannot use (its paths start
with a resource name or ``/vN.NN``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from .._errors import PluginError
from ._api import API_VERSION, MIN_API_VERSION, ApiError, parse_filters, parse_timestamp
from ._logs import read_logs, rfc3339

if TYPE_CHECKING:
    from .._manager import Manager
    from .._plugin import Plugin
    from ._eventlog import EventLog
    from ._logs import LogWriter

__all__ = ["ROUTES", "Request", "Response", "State", "route"]

MAX_JSON_BODY = 1024 * 1024
"""Largest JSON request body accepted (``set``, privileges)."""


@attrs.define
class State:
    """What the handlers work on: the manager, the event log, the plugin logs."""

    manager: Manager
    events: EventLog
    logs: LogWriter
    version: str
    tmp_dir: Path
    max_context_bytes: int = 4 * 1024**3
    started: float = 0.0


@attrs.define
class Request:
    """One HTTP request, as the handlers see it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: IO[bytes]
    length: int
    state: State
    stop: threading.Event
    params: dict[str, str] = attrs.field(factory=dict)

    def flag(self, key: str) -> bool:
        """Read a flag as dockerd's ``httputils.BoolValue``: anything but "", 0, no, false, none."""
        value = self.query.get(key, "").strip().lower()
        return value not in ("", "0", "no", "false", "none")

    def read_body(self, limit: int = MAX_JSON_BODY) -> bytes:
        """Read the whole body; 413 when it exceeds ``limit``."""
        if self.length > limit:
            raise ApiError(413, f"request body too large (more than {limit} bytes)")
        data: bytes = self.body.read_all(limit)  # type: ignore[attr-defined]
        return data


@attrs.define
class Response:
    """A JSON value (or none: empty body), or a stream of byte chunks."""

    status: int = 200
    value: Any = None
    empty: bool = False
    stream: Iterator[bytes] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = attrs.field(factory=dict)


Handler = Callable[[Request], Response]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``method`` and a path pattern (``{name}`` = the rest)."""
    regex = re.compile("^" + pattern.replace("{name}", "(?P<name>.+)") + "$")

    def register(fn: Handler) -> Handler:
        ROUTES.append((method, regex, fn))
        return fn

    return register


def encode(value: Any) -> bytes:
    """Encode like Go's ``json.Encoder``: compact, HTML-escaped, with a newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode() + b"\n"


def _plugin_dict(plugin: Plugin) -> dict[str, Any]:
    return plugin.to_dict()


def _json_list_body(req: Request, what: str) -> Any:
    """Decode a JSON body with dockerd's texts (``set``: 400 on EOF and bad JSON)."""
    raw = req.read_body()
    if not raw.strip():
        raise ApiError(400, "got EOF while reading request body")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid {what}: {exc}") from None


# -- system ---------------------------------------------------------------------


@route("GET", "/_ping")
@route("HEAD", "/_ping")
def ping(req: Request) -> Response:
    """``/_ping``: ``OK`` as text, never cached."""
    return Response(
        raw=b"OK",
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"},
    )


@route("GET", "/version")
def version(req: Request) -> Response:
    """``/version``: Docker's shape, naming pluginkit and the API versions served."""
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": platform.release(),
        "GoVersion": f"python{platform.python_version()}",
    }
    return Response(
        value={
            "Platform": {"Name": "pluginkit"},
            "Components": [{"Name": "pluginkit", "Version": req.state.version, "Details": details}],
            "Version": req.state.version,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": details["GoVersion"],
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": details["KernelVersion"],
        }
    )


@route("GET", "/events")
def events(req: Request) -> Response:
    """``/events``: past plugin events from ``since``, then new ones until ``until``."""
    since = parse_timestamp(req.query.get("since"))
    until = parse_timestamp(req.query.get("until"))
    if since is not None and until is not None and until < since:
        raise ApiError(
            400,
            f"`since` time ({req.query.get('since')}) cannot be after "
            f"`until` time ({req.query.get('until')})",
        )
    filters = parse_filters(req.query.get("filters"))
    log = req.state.events

    def chunks() -> Iterator[bytes]:
        yield b""  # dockerd flushes the headers at once
        for msg in log.follow(since, until, filters, req.stop):
            yield b"" if msg is None else encode(msg)

    return Response(stream=chunks())


# -- Docker's plugin endpoints ------------------------------------------------------


@route("GET", "/plugins")
def list_plugins(req: Request) -> Response:
    """``GET /plugins``: every plugin as inspect shows it; filters enabled, capability."""
    filters = parse_filters(req.query.get("filters"))
    for key in filters.fields:
        if key not in ("enabled", "capability"):
            raise ApiError(400, f"Invalid filter '{key}'")
    enabled: bool | None = None
    if filters.contains("enabled"):
        if filters.exact("enabled", "true"):
            enabled = True
        elif filters.exact("enabled", "false"):
            enabled = False
        else:
            values = " ".join(sorted(filters.get("enabled")))
            raise ApiError(400, f"Invalid filter 'enabled=[{values}]'")
    capabilities = {c.lower() for c in filters.get("capability")}
    result = []
    for plugin in req.state.manager.list(enabled=enabled):
        if capabilities and not capabilities & set(plugin.capabilities):
            continue
        result.append(_plugin_dict(plugin))
    return Response(value=result)


@route("GET", "/plugins/privileges")
def privileges(req: Request) -> Response:
    """``GET /plugins/privileges?remote=REF``: through the registry support, when present."""
    manager = _registry_manager(req, "pull")
    found = manager.privileges(req.query.get("remote", ""))
    return Response(value=[_privilege_dict(p) for p in found])


@route("POST", "/plugins/pull")
def pull(req: Request) -> Response:
    """``POST /plugins/pull?remote=REF&name=NAME``: install, disabled (the CLI enables)."""
    grant = _privileges_body(req)
    manager = _registry_manager(req, "pull")
    remote = req.query.get("remote", "")
    name = req.query.get("name") or None
    plugin = manager.install(remote, name=name, grant=grant, disabled=True)
    return _pulled(plugin.name, remote)


@route("POST", "/plugins/{name}/push")
def push(req: Request) -> Response:
    """``POST /plugins/NAME/push``: through the registry support, when present."""
    manager = _registry_manager(req, "push")
    name = req.params["name"]
    plugin = manager.get(name)
    # ``ref`` is pluginkit's addition (push under another name), as ``pluginkit push NAME REF``.
    target = req.query.get("ref") or None
    digest = manager.push(name, target)
    ref = _split_ref(target or plugin.name)
    messages: list[dict[str, Any]] = [
        {"status": f"The push refers to repository [{ref[0]}]"},
        {"status": f"{ref[1]}: digest: {digest}"},
        {"progressDetail": {}, "aux": {"Tag": ref[1], "Digest": digest}},
    ]
    return _stream_messages(plugin.name, messages)


@route("POST", "/plugins/{name}/upgrade")
def upgrade(req: Request) -> Response:
    """``POST /plugins/NAME/upgrade?remote=REF``: through the registry support, when present."""
    grant = _privileges_body(req)
    manager = _registry_manager(req, "upgrade")
    name = req.params["name"]
    remote = req.query.get("remote") or None
    plugin = manager.upgrade(name, remote, grant=grant)
    return _pulled(plugin.name, remote or plugin.plugin_reference or plugin.name)


@route("POST", "/plugins/create")
def create(req: Request) -> Response:
    """``POST /plugins/create?name=NAME``: the body is a tar of config.json and rootfs/."""
    from .._install_archive import safe_extract
    from .._install_limits import Budget

    name = req.query.get("name", "")
    state = req.state
    if req.length > state.max_context_bytes:
        raise ApiError(413, f"build context too large (more than {state.max_context_bytes} bytes)")
    state.tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="create-", dir=state.tmp_dir))
    try:
        archive = work / "context.tar"
        with open(archive, "wb") as out:
            _copy_body(req, out, state.max_context_bytes)
        if archive.stat().st_size == 0:
            raise ApiError(500, "no rootfs found: EOF")
        context = work / "context"
        context.mkdir()
        budget = Budget(state.manager.install_limits, "the build context", os.fspath(archive))
        safe_extract(archive, context, budget)
        archive.unlink()
        state.manager.create(name, context)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Response(status=204, empty=True)


@route("GET", "/plugins/{name}/json")
def inspect(req: Request) -> Response:
    """``GET /plugins/NAME/json``: ``docker plugin inspect``."""
    return Response(value=req.state.manager.inspect(req.params["name"]))


@route("POST", "/plugins/{name}/enable")
def enable(req: Request) -> Response:
    """``POST /plugins/NAME/enable?timeout=N``: 0 means the CLI's default, 30 s."""
    text = req.query.get("timeout", "")
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ApiError(500, f'strconv.Atoi: parsing "{text}": invalid syntax')
    timeout = int(text)
    req.state.manager.enable(req.params["name"], timeout=float(timeout) if timeout > 0 else 30.0)
    return Response(empty=True)


@route("POST", "/plugins/{name}/disable")
def disable(req: Request) -> Response:
    """``POST /plugins/NAME/disable?force=1``."""
    req.state.manager.disable(req.params["name"], force=req.flag("force"))
    return Response(empty=True)


@route("POST", "/plugins/{name}/set")
def set_(req: Request) -> Response:
    """``POST /plugins/NAME/set`` with a JSON list of ``KEY=VALUE``."""
    args = _json_list_body(req, "set arguments")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ApiError(400, "json: cannot unmarshal value into Go value of type []string")
    req.state.manager.set(req.params["name"], args)
    return Response(status=204, empty=True)


@route("DELETE", "/plugins/{name}")
def remove(req: Request) -> Response:
    """``DELETE /plugins/NAME?force=1``."""
    req.state.manager.remove(req.params["name"], force=req.flag("force"))
    return Response(empty=True)


# -- pluginkit's own ----------------------------------------------------------------


@route("GET", "/pluginkit/v1/info")
def info(req: Request) -> Response:
    """Say what this daemon serves: its root, run root, process and version."""
    manager = req.state.manager
    return Response(
        value={
            "Root": os.fspath(manager.root),
            "RunRoot": os.fspath(manager.run_root),
            "Pid": os.getpid(),
            "Version": req.state.version,
            "Runtime": type(manager.runtime).__name__,
            "LiveRestore": manager.live_restore,
            "Python": sys.version.split()[0],
            "HealthCheck": _health_check_dict(manager.health_check),
        }
    )


def _health_check_dict(check: Any) -> dict[str, Any] | None:
    """Describe the manager's health check settings (``None`` when it probes nothing)."""
    if check is None:
        return None
    return {
        "Interval": check.interval,
        "Timeout": check.timeout,
        "Retries": check.retries,
        "Method": check.method,
    }


@route("GET", "/pluginkit/v1/plugins/{name}/health")
def health(req: Request) -> Response:
    """Show a plugin's state: enabled, running, and its health check's verdict (when any)."""
    plugin = req.state.manager.get(req.params["name"])
    running = False
    if plugin.enabled:
        try:
            req.state.manager.lookup_with_capability(plugin.name, next(iter(plugin.capabilities)))
            running = True
        except (PluginError, StopIteration):
            running = False
    return Response(
        value={
            "Id": plugin.id,
            "Name": plugin.name,
            "Enabled": plugin.enabled,
            "Running": running,
            "Health": getattr(plugin, "health", None),
        }
    )


@route("POST", "/pluginkit/v1/plugins/{name}/save")
def save(req: Request) -> Response:
    """Write a plugin to an OCI layout tar at ``path`` (on the daemon's host), as ``save``."""
    path = req.query.get("path", "")
    if not os.path.isabs(path):
        raise ApiError(400, f"invalid path {path!r}: an absolute path on the daemon's host")
    _registry_manager(req, "save").save(req.params["name"], path)
    return Response(status=204, empty=True)


@route("POST", "/pluginkit/v1/load")
def load(req: Request) -> Response:
    """Install from a bundle (``{"File": PATH, "Name", "Grant": true|[privileges]}``)."""
    body = _json_list_body(req, "load request")
    if not isinstance(body, dict) or not isinstance(body.get("File"), str):
        raise ApiError(400, 'invalid load request: "File" (a path) is required')
    grant = _grant_from(body)
    manager = _registry_manager(req, "load")
    plugin = manager.load(body["File"], name=body.get("Name") or None, grant=grant)
    return Response(value=manager.inspect(plugin.name))


@route("GET", "/pluginkit/v1/lookup")
def lookup(req: Request) -> Response:
    """Find a plugin by name and capability (managed first, then legacy) for ``call``."""
    name = req.query.get("name", "")
    capability = req.query.get("capability", "")
    plugin = req.state.manager.lookup_with_capability(name, capability)
    return Response(
        value={
            "Name": plugin.name,
            "Addr": plugin.addr,
            "Legacy": plugin.is_legacy,
            "Implements": list(plugin.capabilities),
        }
    )


@route("GET", "/pluginkit/v1/plugins/{name}/logs")
def logs(req: Request) -> Response:
    """Stream a plugin's logs as Docker's multiplexed stream (stdout 1, stderr 2).

    Query: ``follow``, ``tail`` (a number or ``all``), ``since``/``until``
    (``SECONDS[.NANOS]``), ``timestamps``, ``stdout``, ``stderr`` (both when
    neither is given).
    """
    plugin = req.state.manager.get(req.params["name"])
    tail_text = req.query.get("tail", "all") or "all"
    tail: int | None = None
    if tail_text != "all":
        if not tail_text.isdigit():
            raise ApiError(400, f"invalid tail value {tail_text!r}: a number or 'all'")
        tail = int(tail_text)
    since = parse_timestamp(req.query.get("since"))
    until = parse_timestamp(req.query.get("until"))
    want_out = req.flag("stdout")
    want_err = req.flag("stderr")
    if not want_out and not want_err:
        want_out = want_err = True
    stamps = req.flag("timestamps")
    entries = read_logs(
        req.state.logs,
        plugin.id,  # type: ignore[arg-type]
        tail=tail,
        since=since,
        until=until,
        follow=req.flag("follow"),
        stop=req.stop,
    )

    def frames() -> Iterator[bytes]:
        yield b""
        for entry in entries:
            if entry is None:
                yield b""
                continue
            stream = 2 if entry.get("stream") == "stderr" else 1
            if (stream == 1 and not want_out) or (stream == 2 and not want_err):
                continue
            text = str(entry.get("log", ""))
            if stamps:
                text = f"{rfc3339(entry['t'])} {text}"
            data = text.encode()
            yield struct.pack(">BxxxL", stream, len(data)) + data

    return Response(stream=frames(), content_type="application/vnd.docker.raw-stream")


@route("GET", "/pluginkit/v1/privileges")
def local_privileges(req: Request) -> Response:
    """Return what installing a directory or tar archive (a path on the daemon's host) needs."""
    found = req.state.manager.privileges(req.query.get("source", ""))
    return Response(value=[_privilege_dict(p) for p in found])


@route("POST", "/pluginkit/v1/install")
def local_install(req: Request) -> Response:
    """Install from a directory or tar archive on the daemon's host, as ``pluginkit install``.

    Body: ``{"Source": PATH, "Name": NAME|null, "Grant": true|[privileges],
    "Settings": ["KEY=VALUE"...], "Enable": bool}``; a failed ``set`` removes
    the plugin again. Answers the plugin as ``inspect`` shows it.
    """
    body = _json_list_body(req, "install request")
    if not isinstance(body, dict) or not isinstance(body.get("Source"), str):
        raise ApiError(400, 'invalid install request: "Source" (a path) is required')
    grant = _grant_from(body)
    manager = req.state.manager
    plugin = manager.install(body["Source"], name=body.get("Name") or None, grant=grant)
    settings = body.get("Settings") or []
    if settings:
        try:
            manager.set(plugin.name, [str(s) for s in settings])
        except Exception:
            manager.remove(plugin.name, force=True)
            raise
    if body.get("Enable"):
        manager.enable(plugin.name, timeout=30.0)
    return Response(value=manager.inspect(plugin.name))


# -- helpers --------------------------------------------------------------------


def _copy_body(req: Request, out: IO[bytes], limit: int) -> None:
    total = 0
    while True:
        chunk = req.body.read(1024 * 1024)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"build context too large (more than {limit} bytes)")
        out.write(chunk)


def _registry_manager(req: Request, operation: str) -> Any:
    """Return the manager when it can talk to registries; else Docker's not-implemented error."""
    manager = req.state.manager
    if not (hasattr(manager, "push") and hasattr(manager, "upgrade")):
        raise ApiError(
            501, f"plugin {operation} is not supported: this pluginkit has no registry support"
        )
    return manager


def _privileges_body(req: Request) -> list[Any]:
    """Decode the privileges the client granted (the pull/upgrade body), dockerd's texts."""
    raw = req.read_body()
    if not raw.strip():
        raise ApiError(500, "failed to parse privileges: EOF")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(500, f"failed to parse privileges: {exc}") from None
    if not isinstance(value, list):
        raise ApiError(500, "failed to parse privileges: not a list")
    return _privileges_from(value)


def _grant_from(body: dict[str, Any]) -> Any:
    """Return the ``grant`` for a request's ``"Grant"``: True, the privileges listed, or None."""
    grant = body.get("Grant")
    if isinstance(grant, list):
        return _privileges_from(grant)
    return True if grant is True else None


def _privileges_from(value: list[Any]) -> list[Any]:
    from .._config import Privilege

    granted = []
    for item in value:
        if not isinstance(item, dict):
            raise ApiError(500, "failed to parse privileges: not an object")
        granted.append(
            Privilege(
                name=str(item.get("Name", "")),
                description=str(item.get("Description", "")),
                value=tuple(str(v) for v in item.get("Value") or ()),
            )
        )
    return granted


def _privilege_dict(privilege: Any) -> dict[str, Any]:
    return {
        "Name": privilege.name,
        "Description": privilege.description,
        "Value": list(privilege.value),
    }


def _split_ref(ref: str) -> tuple[str, str]:
    """``host:5000/p:1`` -> (``host:5000/p``, ``1``), digests and default tag handled."""
    from .._reference import parse_reference

    base = ref.split("@", 1)[0]
    try:
        parsed = parse_reference(base)
    except ValueError:
        return base, "latest"
    return parsed.name, parsed.tag


def _pulled(name: str, remote: str) -> Response:
    """Answer the first and last lines of dockerd's pull progress (not the layers')."""
    repo, tag = _split_ref(remote)
    path = (
        repo.split("/", 1)[1]
        if "/" in repo and ("." in repo.split("/")[0] or ":" in repo.split("/")[0])
        else repo
    )
    messages = [
        {"status": f"{tag}: Pulling from {path}"},
        {"status": f"Status: Downloaded newer image for {repo}:{tag}"},
    ]
    return _stream_messages(name, messages)


def _stream_messages(name: str, messages: list[dict[str, Any]]) -> Response:
    """Docker's progress stream: one JSON message per line."""
    return Response(
        stream=iter([encode(m) for m in messages]), headers={"Docker-Plugin-Name": name}
    )
