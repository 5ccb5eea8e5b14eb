"""The legacy registry: Docker's "v1" plugin discovery and activation.

A legacy plugin is a process someone else runs. It announces itself with a
unix socket ``<socket dir>/NAME.sock`` (or ``NAME/NAME.sock``), or with a spec
file ``<spec dir>/NAME.spec`` (one URL) or ``NAME.json`` (address and TLS
settings), also possibly one directory down. On first use the registry calls
``Plugin.Activate`` and learns which capabilities the plugin implements.

The lookup order and file formats are Docker's (``pkg/plugins``); where
Docker's behaviour is a known trap, this module deliberately differs and says
so (see ``docs/legacy.md``): names cannot escape the directories, ``scan``
lists each name once and only names ``get`` can resolve, activation has its
own deadline, a plain not-found fails at once instead of after ~15 s, and
handlers run outside every lock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._client import Client
from ._errors import (
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    InvalidReferenceError,
    PluginConnectionError,
    PluginError,
    PluginProtocolError,
    PluginTimeoutError,
    _json_error_reason,
)
from ._files import read_small_file
from ._multiplex import call_concurrently
from ._plugin import Plugin
from ._tls import TLSConfig
from ._wire._address import parse_address
from ._wire._retry import check_retry_timeout, retry_delay

__all__ = [
    "DEFAULT_SOCKET_DIRS",
    "DEFAULT_SPEC_DIRS",
    "Handler",
    "LegacyRegistry",
    "check_name",
    "read_spec_file",
]

log = logging.getLogger("pluginkit.legacy")

#: Docker's directory of legacy plugin sockets.
DEFAULT_SOCKET_DIRS: tuple[str, ...] = ("/run/docker/plugins",)
#: Docker's directories of legacy spec files, in priority order.
DEFAULT_SPEC_DIRS: tuple[str, ...] = ("/etc/docker/plugins", "/usr/lib/docker/plugins")

#: A callback given to :meth:`LegacyRegistry.handle`: ``callback(name, client)``.
Handler = Callable[[str, Client], None]

_SPEC_EXTS = (".spec", ".json")

#: The largest ``.spec``/``.json`` file read: an address and three TLS file paths need far less.
MAX_SPEC_BYTES = 1 << 20


def check_name(name: str) -> None:
    """Refuse a legacy plugin name that is empty or would escape its directory.

    Docker joins the name into paths as it is; pluginkit refuses ``/``, NUL,
    ``.`` and ``..`` so that a name never reaches outside the plugin dirs.

    Raises:
        InvalidReferenceError: the name is empty or unsafe.
    """
    if not isinstance(name, str):
        raise TypeError(f"plugin name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidReferenceError("Unable to find plugin without name")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidReferenceError(
            f"invalid plugin name {name!r}: it must not contain '/' or NUL, nor be '.' or '..'"
        )


@attrs.frozen
class _Definition:
    """Where a plugin was found and how to reach it."""

    name: str
    addr: str
    tls: TLSConfig | None
    source: str


def read_spec_file(name: str, path: str) -> tuple[str, TLSConfig | None]:
    """Read a ``.spec`` or ``.json`` plugin definition; return (address, TLS).

    ``.spec``: one URL, surrounding whitespace ignored; like Docker, the
    plugin gets ``TLSConfig(insecure_skip_verify=True)``. ``.json``:
    ``{"Addr": ..., "TLSConfig": {"CAFile", "CertFile", "KeyFile",
    "InsecureSkipVerify"}}`` with keys matched case-insensitively, as Go does;
    ``"Name"`` is ignored (the name is the file's); a TLSConfig without
    ``CAFile`` skips verification, as in Docker.

    Raises:
        InvalidConfigError: naming the file: unreadable, not JSON, a field of
            the wrong type, or an address without a (known) scheme.
    """
    try:
        # Not open(): a FIFO would block every lookup until a writer came, a
        # link to /dev/zero would be read until memory runs out.
        text = read_small_file(path, MAX_SPEC_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f'plugin "{name}": cannot read {path}: {exc}', path=path) from None
    if not path.endswith(".json"):
        addr = text.strip()
        _check_addr(name, path, "", addr)
        return addr, TLSConfig(insecure_skip_verify=True)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidConfigError(
            f'plugin "{name}": {path} is not valid JSON: {_json_error_reason(exc)}', path=path
        ) from None
    if not isinstance(document, dict):
        raise InvalidConfigError(f'plugin "{name}": {path} must hold a JSON object', path=path)
    fields = {key.lower(): value for key, value in document.items()}
    addr_value = fields.get("addr")
    if not isinstance(addr_value, str):
        raise InvalidConfigError(
            f'plugin "{name}": {path}: "Addr" must be a string, not {_kind(addr_value)}',
            path=path,
            field="Addr",
        )
    addr = addr_value
    _check_addr(name, path, "Addr", addr)
    tls_doc = fields.get("tlsconfig")
    if tls_doc is None:
        return addr, None
    if not isinstance(tls_doc, dict):
        raise InvalidConfigError(
            f'plugin "{name}": {path}: "TLSConfig" must be an object, not {_kind(tls_doc)}',
            path=path,
            field="TLSConfig",
        )
    tls_fields = {key.lower(): value for key, value in tls_doc.items()}
    files: dict[str, str | None] = {}
    for key, attr in (("cafile", "CAFile"), ("certfile", "CertFile"), ("keyfile", "KeyFile")):
        value = tls_fields.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidConfigError(
                f'plugin "{name}": {path}: "TLSConfig.{attr}" must be a string, not {_kind(value)}',
                path=path,
                field=f"TLSConfig.{attr}",
            )
        files[key] = value or None
    skip = tls_fields.get("insecureskipverify", False)
    if not isinstance(skip, bool):
        raise InvalidConfigError(
            f'plugin "{name}": {path}: "TLSConfig.InsecureSkipVerify" must be true or false,'
            f" not {_kind(skip)}",
            path=path,
            field="TLSConfig.InsecureSkipVerify",
        )
    return addr, TLSConfig(
        ca_file=files["cafile"],
        cert_file=files["certfile"],
        key_file=files["keyfile"],
        insecure_skip_verify=skip or files["cafile"] is None,
    )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_addr(name: str, path: str, field: str, addr: str) -> None:
    if not addr:
        raise InvalidConfigError(
            f'plugin "{name}": {path}: the plugin address is empty', path=path, field=field or None
        )
    try:
        address = parse_address(addr)
        # The Host header is IDNA-encoded: a host it cannot carry (a label
        # empty or over 63 bytes) would fail every call with a raw UnicodeError.
        try:
            address.host_header.encode("idna")
        except UnicodeError as exc:
            match = re.search(r"\(UnicodeError: (.*)\)$", str(exc))
            reason = match.group(1) if match else str(exc)
            raise InvalidConfigError(
                f"invalid plugin address {addr!r}: host {address.host!r} is not a valid"
                f" host name ({reason})"
            ) from None
    except InvalidConfigError as exc:
        raise InvalidConfigError(
            f'plugin "{name}": {path}: {exc}', path=path, field=field or None
        ) from None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _list_dir(directory: str) -> list[os.DirEntry[str]]:
    """List ``directory`` sorted by name; [] when it is missing or unreadable."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        # Rootless daemons cannot read /etc/docker/plugins (moby#43111): one
        # unreadable directory must not hide the plugins of the others.
        log.warning("skipping plugin directory %s: %s", directory, exc.strerror or exc)
        return []


class _Entry:
    """A plugin being activated (``plugin is None``) or activated."""

    __slots__ = ("error", "handled", "name", "plugin")

    def __init__(self, name: str) -> None:
        self.name = name
        self.plugin: Plugin | None = None
        self.error: BaseException | None = None
        self.handled: set[tuple[str, int]] = set()  # (capability, handler index) run


class LegacyRegistry:
    """Finds legacy plugins in socket and spec directories and activates them.

    Args:
        socket_dirs: directories of ``NAME.sock`` / ``NAME/NAME.sock`` sockets.
        spec_dirs: directories of ``.spec`` / ``.json`` files, in priority order.
        activation_timeout: seconds the ``Plugin.Activate`` call may take; a
            plugin that accepts and never answers fails with
            :class:`~pluginkit.PluginTimeoutError` (Docker would hang).
        retry_timeout: how long :meth:`get` keeps waiting, with Docker's
            backoff, for a plugin that is not there yet or does not accept
            connections yet. 0 (the default) fails at once; 30 is Docker's
            budget (about 15 s of waiting).
        backoff_unit: the first retry delay in seconds (Docker: 1); the
            clients of found plugins inherit it. Tests shrink it.

    Activated plugins are cached: a later :meth:`get` returns the same
    :class:`~pluginkit.Plugin` without calling the plugin again. The registry
    is thread-safe; :meth:`close` closes the clients of cached plugins.
    """

    def __init__(
        self,
        socket_dirs: Iterable[str | os.PathLike[str]] = DEFAULT_SOCKET_DIRS,
        spec_dirs: Iterable[str | os.PathLike[str]] = DEFAULT_SPEC_DIRS,
        *,
        activation_timeout: float = 10.0,
        retry_timeout: float = 0.0,
        backoff_unit: float = 1.0,
    ) -> None:
        if isinstance(socket_dirs, (str, os.PathLike)) or isinstance(spec_dirs, (str, os.PathLike)):
            raise TypeError("socket_dirs and spec_dirs must be sequences of paths, not one path")
        if not activation_timeout > 0:
            raise ValueError(f"activation_timeout must be > 0, not {activation_timeout!r}")
        check_retry_timeout(retry_timeout)
        if not backoff_unit > 0:
            raise ValueError(f"backoff_unit must be > 0, not {backoff_unit!r}")
        self.socket_dirs = tuple(os.fspath(d) for d in socket_dirs)
        self.spec_dirs = tuple(os.fspath(d) for d in spec_dirs)
        self.activation_timeout = activation_timeout
        self.retry_timeout = retry_timeout
        self.backoff_unit = backoff_unit
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[str, _Entry] = {}
        self._handlers: dict[str, list[Handler]] = {}

    def __repr__(self) -> str:
        return f"LegacyRegistry(socket_dirs={self.socket_dirs!r}, spec_dirs={self.spec_dirs!r})"

    def __enter__(self) -> LegacyRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget every activated plugin and close its clients."""
        with self._cond:
            entries, self._entries = self._entries, {}
        for entry in entries.values():
            if entry.plugin is not None:
                entry.plugin.client.close()
                entry.plugin._close_async_client()

    # -- discovery --

    def scan(self) -> list[str]:
        """List the names of all plugins found, each once, in lookup order.

        Sockets first (``DIR/N.sock`` and ``DIR/N/N.sock``, which must really
        be sockets), then each spec dir (``N.spec``/``N.json``, also one level
        down), each directory sorted by name. Unlike Docker, a name defined
        twice is listed once (the definition :meth:`get` would use wins), and
        only names :meth:`get` can resolve are listed. Spec files are not
        opened: a malformed one is listed and fails when it is activated.
        """
        return [name for name, _ in self._scan()]

    def _scan(self) -> list[tuple[str, str | None]]:
        """Names in lookup order, each with the socket :meth:`_locate` would pick.

        The socket path (None for spec-file plugins) spares get_all a second
        stat per plugin.
        """
        found: list[tuple[str, str | None]] = []
        seen: set[str] = set()

        def add(name: str, socket_path: str | None) -> None:
            if name not in seen and _valid(name):
                seen.add(name)
                found.append((name, socket_path))

        for directory in self.socket_dirs:
            for entry in _list_dir(directory):
                if entry.name.endswith(".sock"):
                    if _is_socket(entry.path):
                        add(entry.name[:-5], entry.path)
                elif _is_dir(entry):
                    nested = os.path.join(entry.path, entry.name + ".sock")
                    if _is_socket(nested):
                        flat = entry.path + ".sock"  # N.sock wins over N/N.sock
                        add(entry.name, flat if _is_socket(flat) else nested)
        for directory in self.spec_dirs:
            for entry in _list_dir(directory):
                stem, ext = os.path.splitext(entry.name)
                if ext in _SPEC_EXTS:
                    if _is_file(entry.path):
                        add(stem, None)
                elif _is_dir(entry) and any(
                    _is_file(os.path.join(entry.path, entry.name + e)) for e in _SPEC_EXTS
                ):
                    add(entry.name, None)
        return found

    def _locate(self, name: str) -> _Definition:
        """Find ``name`` in Docker's order; the first definition wins, no fallback."""
        not_socket = None
        for directory in self.socket_dirs:
            for path in (
                os.path.join(directory, name + ".sock"),
                os.path.join(directory, name, name + ".sock"),
            ):
                try:
                    mode = os.stat(path).st_mode
                except OSError:
                    continue
                if stat.S_ISSOCK(mode):
                    return _socket_definition(name, path)
                not_socket = not_socket or path
        for directory in self.spec_dirs:
            for ext in _SPEC_EXTS:
                for path in (
                    os.path.join(directory, name + ext),
                    os.path.join(directory, name, name + ext),
                ):
                    if _is_file(path):
                        addr, tls = read_spec_file(name, path)
                        return _Definition(name, addr, tls, path)
        if not_socket is not None:
            raise InvalidConfigError(
                f'plugin "{name}": {not_socket} is not a socket', path=not_socket
            )
        raise ErrNotFound(name)

    def _locate_with_retry(self, name: str, retry_timeout: float) -> _Definition:
        start = time.monotonic()
        retries = 0
        while True:
            try:
                return self._locate(name)
            except ErrNotFound:
                delay = retry_delay(
                    retries, time.monotonic() - start, retry_timeout, self.backoff_unit
                )
                if delay is None:
                    raise
                log.warning("unable to locate plugin %s, retrying in %g s", name, delay)
                time.sleep(delay)
                retries += 1

    # -- activation --

    def get(
        self, name: str, capability: str | None, *, retry_timeout: float | None = None
    ) -> Plugin:
        """Find, activate (once) and return the plugin ``name`` with ``capability``.

        Args:
            name: the plugin's name (its socket's or spec file's stem).
            capability: what it must implement, e.g. ``"VolumeDriver"``
                (case-insensitive); ``None`` accepts whatever it implements
                (useful to list what a plugin announces).
            retry_timeout: instead of the registry's ``retry_timeout``.

        Raises:
            ErrNotFound: no plugin of that name.
            ErrInadequateCapability: it does not implement ``capability``.
            InvalidReferenceError: the name is empty or unsafe.
            InvalidConfigError: its spec file is malformed.
            PluginError: activation failed (connection, timeout, bad reply).
        """
        check_name(name)
        if retry_timeout is None:
            retry_timeout = self.retry_timeout
        else:
            check_retry_timeout(retry_timeout)
        plugin = self._load(name, retry_timeout)
        if capability is not None and not plugin.implements(capability):
            raise ErrInadequateCapability(name, capability)
        return plugin

    def _load(self, name: str, retry_timeout: float) -> Plugin:
        with self._cond:
            entry = self._entries.get(name)
            if entry is not None:
                return self._wait(entry)
        definition = self._locate_with_retry(name, retry_timeout)
        # Before the entry exists: an entry nobody settles would hang every later get().
        client = self._client(definition)
        with self._cond:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry(name)
            else:  # someone else got there first: share theirs
                client.close()
                return self._wait(entry)
        try:
            reply = client.call(
                "Plugin.Activate", timeout=self.activation_timeout, retry_timeout=retry_timeout
            )
            plugin = _activated(definition, client, reply)
        except BaseException as exc:
            client.close()
            error = _named(definition, exc)
            self._failed(entry, error)
            raise error from None
        self._succeeded(entry, plugin)
        return plugin

    def _client(self, definition: _Definition) -> Client:
        # Docker applies TLS settings only to https:// addresses.
        tls = definition.tls if definition.addr.lower().startswith("https://") else None
        return Client(definition.addr, tls=tls, backoff_unit=self.backoff_unit)

    def _wait(self, entry: _Entry) -> Plugin:
        """Wait (holding ``_cond``) until ``entry`` is settled; return or raise."""
        while entry.plugin is None and entry.error is None:
            self._cond.wait()
        if entry.plugin is None:
            assert entry.error is not None
            raise entry.error
        return entry.plugin

    def _failed(self, entry: _Entry, error: BaseException) -> None:
        with self._cond:
            entry.error = error
            # A failed activation is not cached: the next get starts over.
            if self._entries.get(entry.name) is entry:
                del self._entries[entry.name]
            self._cond.notify_all()

    def _succeeded(self, entry: _Entry, plugin: Plugin) -> None:
        with self._cond:
            entry.plugin = plugin
            todo = self._claim(entry)
            self._cond.notify_all()
        # Outside every lock: a handler may call get() (Docker deadlocks there).
        self._run(plugin, todo)

    def _claim(self, entry: _Entry) -> list[tuple[str, Handler]]:
        """Handlers (not yet run) for ``entry``'s capabilities; call under ``_cond``."""
        assert entry.plugin is not None
        todo = []
        for capability in entry.plugin.capabilities:
            for index, handler in enumerate(self._handlers.get(capability, ())):
                if (capability, index) not in entry.handled:
                    entry.handled.add((capability, index))
                    todo.append((capability, handler))
        return todo

    @staticmethod
    def _run(plugin: Plugin, todo: list[tuple[str, Handler]]) -> None:
        for capability, handler in todo:
            try:
                handler(plugin.name, plugin.client)
            except Exception:
                log.exception("%s handler for plugin %s failed", capability, plugin.name)

    def handle(self, capability: str, callback: Handler) -> None:
        """Run ``callback(name, client)`` once for every plugin with ``capability``.

        It runs for plugins activated later (right after their activation) and
        at once for plugins already activated. Several callbacks per
        capability are allowed. Callbacks run outside the registry's locks,
        so they may call :meth:`get`; their exceptions are logged.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        capability = capability.lower()
        work: list[tuple[Plugin, list[tuple[str, Handler]]]] = []
        with self._cond:
            self._handlers.setdefault(capability, []).append(callback)
            for entry in self._entries.values():
                if entry.plugin is not None and entry.plugin.implements(capability):
                    work.append((entry.plugin, self._claim(entry)))
        for plugin, todo in work:
            self._run(plugin, todo)

    def get_all(self, capability: str) -> list[Plugin]:
        """Activate every plugin :meth:`scan` finds; return those with ``capability``.

        Activations run concurrently, once each, without retries: a plugin
        that is down, malformed or does not answer within
        ``activation_timeout`` is logged and skipped, never hiding the others.
        The result follows :meth:`scan`'s order.
        """
        scanned = self._scan()
        names = [name for name, _ in scanned]
        mine: list[tuple[_Entry, _Definition, Client]] = []
        theirs: list[_Entry] = []

        def activations() -> Iterator[tuple[Client, str]]:
            # A generator: each plugin's Activate request is on its way before
            # the next plugin is located, so the plugins work meanwhile.
            for name, socket_path in scanned:
                with self._cond:
                    entry = self._entries.get(name)
                if entry is not None:
                    theirs.append(entry)
                    continue
                try:
                    if socket_path is not None:
                        definition = _socket_definition(name, socket_path)
                    else:
                        definition = self._locate(name)
                    client = self._client(definition)
                except PluginError as exc:
                    log.warning("skipping legacy plugin %s: %s", name, exc)
                    continue
                with self._cond:
                    entry = self._entries.get(name)
                    ours = entry is None
                    if entry is None:
                        entry = self._entries[name] = _Entry(name)
                        mine.append((entry, definition, client))
                if ours:
                    yield client, "Plugin.Activate"
                else:  # a concurrent get() got there first: share theirs
                    client.close()
                    theirs.append(entry)

        replies: list[Any] = []
        try:
            replies = call_concurrently(activations(), timeout=self.activation_timeout)
        finally:
            # Settle every entry this call created, whatever happened.
            for (entry, definition, client), reply in zip(
                mine, replies or [PluginError("get_all was interrupted")] * len(mine), strict=True
            ):
                try:
                    if isinstance(reply, BaseException):
                        raise reply
                    plugin = _activated(definition, client, reply)
                except PluginError as exc:
                    client.close()
                    error = _named(definition, exc)
                    self._failed(entry, error)
                    log.warning("skipping legacy plugin %s: %s", entry.name, error)
                    continue
                self._succeeded(entry, plugin)

        found: dict[str, Plugin] = {}
        for entry, _, _ in mine:
            if entry.plugin is not None:
                found[entry.name] = entry.plugin
        for entry in theirs:
            with self._cond:
                try:
                    found[entry.name] = self._wait(entry)
                except PluginError as exc:
                    log.warning("skipping legacy plugin %s: %s", entry.name, exc)
        return [
            found[name] for name in names if name in found and found[name].implements(capability)
        ]

    async def aget(
        self, name: str, capability: str | None, *, retry_timeout: float | None = None
    ) -> Plugin:
        """Awaitable :meth:`get`, run in pluginkit's lookup threads (``pluginkit._offload``)."""
        from ._offload import offload

        return await offload(self.get, name, capability, retry_timeout=retry_timeout)

    async def aget_all(self, capability: str) -> list[Plugin]:
        """Awaitable :meth:`get_all`, run in pluginkit's lookup threads (``pluginkit._offload``)."""
        from ._offload import offload

        return await offload(self.get_all, capability)


_SKIP_VERIFY = TLSConfig(insecure_skip_verify=True)


def _socket_definition(name: str, path: str) -> _Definition:
    # Docker gives socket plugins an insecure-skip-verify TLS config (unused).
    return _Definition(name, "unix://" + path, _SKIP_VERIFY, path)


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except InvalidReferenceError:
        return False
    return True


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _activated(definition: _Definition, client: Client, reply: Any) -> Plugin:
    """Build the Plugin for a ``Plugin.Activate`` reply (``{"Implements": [...]}``)."""
    if not isinstance(reply, dict):
        raise PluginProtocolError(
            f"Plugin.Activate: reply from plugin at {definition.addr} is not a JSON object"
            f" but {_kind(reply)}"
        )
    # Go's decoder matches field names case-insensitively; a missing list means
    # "implements nothing", as in Docker.
    implements: Any = next((v for k, v in reply.items() if k.lower() == "implements"), None)
    if implements is None:
        implements = []
    if not isinstance(implements, list) or not all(isinstance(c, str) for c in implements):
        raise PluginProtocolError(
            f"Plugin.Activate: reply from plugin at {definition.addr}:"
            f' "Implements" must be a list of strings'
        )
    return Plugin(
        name=definition.name, addr=definition.addr, client=client, capabilities=implements
    )


def _named(definition: _Definition, exc: BaseException) -> BaseException:
    """``exc`` with the plugin's name in front, when its message lacks it."""
    # Errors with structured arguments (PluginCallError: method, status,
    # message) keep Docker's text; transport errors only name the address.
    if type(exc) not in (PluginConnectionError, PluginTimeoutError, PluginProtocolError):
        return exc
    named = type(exc)(f'plugin "{definition.name}": {exc}')
    named.__cause__ = exc.__cause__
    return named
