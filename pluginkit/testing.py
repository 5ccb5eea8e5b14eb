"""Helpers for testing code that uses pluginkit, without Docker or plugin processes.

:class:`FakeRuntime` is a :class:`~pluginkit.runtime.Runtime` that serves
each "plugin" in-process, on a real unix socket at the path the manager
expects (one event loop thread serves them all). Give it to a
:class:`~pluginkit.Manager` and say what each plugin answers::

    from pluginkit import Manager
    from pluginkit.testing import FakeCall, FakeRuntime, wait_running

    def get(request):
        return {"Volume": {"Name": request["Name"], "Mountpoint": "/mnt"}}

    fake = FakeRuntime()
    fake.set_handlers("acme/vol", {"VolumeDriver.Get": get})
    with Manager(tmp_path, runtime=fake, legacy=None) as manager:
        manager.create("acme/vol", context_dir)
        manager.enable("acme/vol")
        plugin = manager.get("acme/vol")
        assert plugin.client.call("VolumeDriver.Get", {"Name": "v"})["Volume"]["Name"] == "v"
        assert fake.calls("acme/vol") == [FakeCall("VolumeDriver.Get", {"Name": "v"})]
        fake.crash("acme/vol", exit_code=2)  # the manager sees an exit and restarts it
        wait_running(manager, "acme/vol")  # lookups find it again

    fake.shutdown()

:func:`write_plugin_dir` writes the plugin directory (``config.json`` and
``rootfs/``) that :meth:`~pluginkit.Manager.create` takes.

The other way round, for tests of a plugin written with :mod:`pluginkit.sdk`:
:func:`serve_plugin` serves it on a private socket and hands you a
:class:`~pluginkit.Client` that talks to it as the engine would::

    with serve_plugin(MyVolumeDriver()) as client:
        assert client.call("VolumeDriver.Create", {"Name": "v"}) == {}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._errors import ErrDisabled, PluginError, RuntimeStartError, _json_error_reason
from ._fakehub import Answer, FakeHub, Listener, bind_unix
from .runtime._base import ExitCallback, PluginExit, RuntimeSpec
from .runtime._dispatch import ExitDispatcher
from .sdk import InvalidRequestError, PluginServer

if TYPE_CHECKING:
    from ._client import Client
    from ._manager import Manager
    from ._plugin import Plugin
    from .sdk import Driver

__all__ = [
    "FakeCall",
    "FakeRuntime",
    "Handler",
    "serve_plugin",
    "wait_running",
    "write_plugin_dir",
]

_log = logging.getLogger("pluginkit.testing")
_sdk_log = logging.getLogger("pluginkit.sdk")  # handler errors are logged as the SDK does

# How long crash() waits for the on_exit call it caused to return.
_CRASH_WAIT = 10.0

Handler = Callable[[Any], Any]
"""A fake plugin's answer to one method: decoded JSON request in, JSON-able reply out."""


@attrs.frozen
class FakeCall:
    """One call a fake plugin received: the method and the decoded JSON request."""

    method: str
    request: Any


def _key(name: str) -> str:
    """Normalise a plugin name: a name without a tag means ``name:latest``."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


@attrs.define
class _Behaviour:
    """What the test said about one plugin name."""

    handlers: dict[str, Handler] = attrs.Factory(dict)
    implements: tuple[str, ...] | None = None
    start_delay: float | None = None
    fail_error: Exception | None = None
    fail_times: int | None = 0
    early_exit: tuple[int | None, str] | None = None
    early_exit_times: int | None = 0
    calls: list[FakeCall] = attrs.Factory(list)
    started: int = 0
    last_spec: RuntimeSpec | None = None


class _FakePlugin:
    """One running fake plugin: a socket served by the fake's loop after the start delay."""

    def __init__(self, spec: RuntimeSpec, on_exit: ExitCallback | None) -> None:
        self.spec = spec
        self.on_exit = on_exit
        self.listener: Listener | None = None  # once listening (set in the loop thread)
        self.cancel = threading.Event()
        self.timer: asyncio.TimerHandle | None = None  # the start delay running


class FakeRuntime:
    """A runtime serving plugins in-process on real unix sockets, for tests.

    Each started plugin listens on a real unix socket at
    ``spec.socket_path``, answering with the handlers given to
    :meth:`set_handlers` for its name, so clients, lookups and the manager's
    readiness wait run their real code paths. All the plugins of one fake
    are served by one event loop thread, and their handlers run in one
    fixed pool of ``workers`` threads: a test can run thousands of fake
    plugins (1,000 enabled ones take a few dozen threads and tens of MB).
    ``Plugin.Activate`` answers ``{"Implements": [...]}``: the ``implements`` given to
    :meth:`set_handlers`, else the prefixes of the handled methods
    (``"VolumeDriver.Get"`` -> ``"VolumeDriver"``).

    **Names.** Plugins are named as the manager names them in
    ``spec.name``, ``name:tag``; a name given without a tag means
    ``name:latest`` (``"acme/vol"`` and ``"acme/vol:latest"`` are the same
    plugin). Settings made for a name apply to every later start of it.

    **Exits.** :meth:`crash` makes a plugin exit as if it had died: its socket
    goes away and ``on_exit`` receives the exit code given. :meth:`stop`
    reports exit code ``0``. As with real runtimes, ``on_exit`` runs in a
    thread of the runtime, one exit after the other, never inside the call
    that caused it.

    **Live restore.** Like real plugin processes, fake plugins outlive the
    manager: :meth:`close` stops reporting exits but keeps them serving, and
    giving the same ``FakeRuntime`` to a new manager lets :meth:`restore`
    re-attach to them. The fake stays usable after :meth:`close`; call
    :meth:`shutdown` (or use it as a context manager) at the end of a test to
    stop every fake plugin.

    Args:
        start_delay: Default seconds between :meth:`start` and the socket
            listening, for every plugin (see :meth:`set_start_delay`).
        workers: How many handler calls may run at once, over all plugins
            (a handler may block; the others keep being served).
    """

    def __init__(self, *, start_delay: float = 0.0, workers: int = 16) -> None:
        if start_delay < 0:
            raise ValueError(f"start_delay must be >= 0, not {start_delay!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, not {workers!r}")
        self._start_delay = start_delay
        self._workers = workers
        self._hub: FakeHub | None = None
        self._lock = threading.Lock()
        self._listening = threading.Condition(self._lock)  # notified when a plugin listens
        self._behaviour: dict[str, _Behaviour] = {}
        self._running: dict[str, _FakePlugin] = {}  # by plugin id
        self._exits = ExitDispatcher("pluginkit-fake-exits", _log)

    def __repr__(self) -> str:
        return f"<FakeRuntime running={self.running()!r}>"

    def __enter__(self) -> FakeRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- what the test says ------------------------------------------------------

    def set_handlers(
        self,
        name: str,
        handlers: Mapping[str, Handler],
        *,
        implements: Iterable[str] | None = None,
    ) -> None:
        """Say what the plugin ``name`` answers, from its next start on.

        Args:
            name: The plugin's name (``name`` or ``name:tag``).
            handlers: Method name (``"VolumeDriver.Get"``) -> function taking
                the decoded JSON request (``None`` for an empty body) and
                returning the JSON-able reply (``None`` sends ``{}``). A
                function that raises answers HTTP 500 ``{"Err": "<message>"}``.
            implements: What ``Plugin.Activate`` announces; default the
                method prefixes of ``handlers``.
        """
        for method in handlers:
            if not isinstance(method, str) or "." not in method:
                raise ValueError(f"handler method must look like 'Driver.Method', not {method!r}")
        with self._lock:
            behaviour = self._get(name)
            behaviour.handlers = dict(handlers)
            behaviour.implements = None if implements is None else tuple(implements)

    def set_start_delay(self, name: str, seconds: float) -> None:
        """Make the plugin ``name`` listen only ``seconds`` after each start."""
        if seconds < 0:
            raise ValueError(f"start delay must be >= 0, not {seconds!r}")
        with self._lock:
            self._get(name).start_delay = seconds

    def fail_start(
        self, name: str, error: Exception | None = None, *, times: int | None = 1
    ) -> None:
        """Make the next ``times`` starts of ``name`` raise (``None``: every start).

        Args:
            name: The plugin's name.
            error: What :meth:`start` raises; default a
                :class:`~pluginkit.RuntimeStartError`
                ``fake plugin NAME failed to start``.
            times: How many starts fail; ``None`` for all until
                ``fail_start(name, times=0)``.
        """
        with self._lock:
            behaviour = self._get(name)
            behaviour.fail_error = error
            behaviour.fail_times = times

    def exit_on_start(
        self,
        name: str,
        exit_code: int | None = 1,
        stderr_tail: str = "",
        *,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` starts of ``name`` die before listening.

        :meth:`start` succeeds, the socket never appears and ``on_exit``
        receives ``exit_code`` and ``stderr_tail`` (after the start delay):
        a plugin process that crashes at start-up.

        Args:
            name: The plugin's name.
            exit_code: The exit status reported.
            stderr_tail: The last stderr lines reported.
            times: How many starts die; ``None`` for all until
                ``exit_on_start(name, times=0)``.
        """
        with self._lock:
            behaviour = self._get(name)
            behaviour.early_exit = (exit_code, stderr_tail)
            behaviour.early_exit_times = times

    def crash(
        self, name: str, exit_code: int | None = 1, stderr_tail: str = "", *, wait: bool = True
    ) -> None:
        """Make the running plugin ``name`` exit as if it died.

        ``on_exit`` receives ``PluginExit(id, exit_code, stderr_tail)`` from
        the runtime's thread, as always. When this returns, the socket is gone
        and that call has returned, so a manager has seen the exit: its
        ``exit`` event is out, lookups raise :class:`~pluginkit.ErrDisabled`
        and a restart is scheduled (:func:`wait_running` waits for it). The
        wait is at most 10 s; it is skipped when ``crash`` is called from the
        runtime's thread itself (inside ``on_exit`` or an ``exit`` event
        callback), and with ``wait=False``: then ``on_exit`` may run after
        this returns, for a test that acts while the manager is busy with the
        exit.

        Raises:
            LookupError: No plugin of that name is running.
        """
        key = _key(name)
        with self._lock:
            plugin = next((p for p in self._running.values() if _key(p.spec.name) == key), None)
            if plugin is None:
                raise LookupError(f"fake plugin {key} is not running")
            del self._running[plugin.spec.id]
        delivered = self._end(plugin, exit_code, stderr_tail)
        if wait and delivered is not None and not self._exits.in_thread():
            delivered.wait(_CRASH_WAIT)

    # -- introspection -------------------------------------------------------------

    def running(self) -> list[str]:
        """Return the names (``name:tag``) of the running fake plugins, sorted."""
        with self._lock:
            return sorted(p.spec.name for p in self._running.values())

    def calls(self, name: str) -> list[FakeCall]:
        """Return the calls the plugin ``name`` received (all its runs), oldest first."""
        with self._lock:
            return list(self._get(name).calls)

    def started_count(self, name: str) -> int:
        """How many times the plugin ``name`` was started (failed starts included)."""
        with self._lock:
            return self._get(name).started

    def last_spec(self, name: str) -> RuntimeSpec | None:
        """Return the spec of the latest start of ``name`` (to check env, args, mounts...)."""
        with self._lock:
            return self._get(name).last_spec

    def wait_listening(self, name: str, timeout: float = 10.0) -> None:
        """Block until the plugin ``name`` is serving on its socket.

        This is the fake's side only: a manager finds out a moment later
        (it polls the socket), so a lookup made right after this returns
        may still raise :class:`~pluginkit.ErrDisabled`. To wait until the
        manager hands the plugin out again, e.g. after :meth:`crash`, use
        :func:`wait_running`.

        Raises:
            TimeoutError: It is not serving after ``timeout`` seconds.
        """
        key = _key(name)
        with self._listening:
            if not self._listening.wait_for(
                lambda: any(
                    _key(p.spec.name) == key and p.listener is not None
                    for p in self._running.values()
                ),
                timeout,
            ):
                raise TimeoutError(f"fake plugin {key} is not listening after {timeout} s")

    # -- the Runtime protocol ---------------------------------------------------------

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        """Start serving the fake plugin of ``spec.name`` on ``spec.socket_path``.

        Returns at once. Without a start delay the socket listens when this
        returns (its connections are served once the loop gets to them); with
        one, after the delay.

        Raises:
            RuntimeStartError: The plugin runs already, or :meth:`fail_start`
                asked for it (or the error given there).
        """
        with self._lock:
            behaviour = self._get(spec.name)
            behaviour.started += 1
            behaviour.last_spec = spec
            if spec.id in self._running:
                raise RuntimeStartError(f"plugin {spec.name} is already running")
            if behaviour.fail_times != 0:
                if behaviour.fail_times is not None:
                    behaviour.fail_times -= 1
                raise behaviour.fail_error or RuntimeStartError(
                    f"fake plugin {_key(spec.name)} failed to start"
                )
            early_exit = None
            if behaviour.early_exit_times != 0:
                if behaviour.early_exit_times is not None:
                    behaviour.early_exit_times -= 1
                early_exit = behaviour.early_exit
            delay = self._start_delay if behaviour.start_delay is None else behaviour.start_delay
            plugin = _FakePlugin(spec, on_exit)
            self._running[spec.id] = plugin
            if self._hub is None:
                self._hub = FakeHub(self._workers)
            hub = self._hub
        sock = None
        if not delay and early_exit is None:
            # Listening before start() returns, like a plugin that is quick to
            # start: the manager's first readiness check finds it, instead of
            # waiting for the loop thread's turn (~1 ms a plugin at restore).
            # Any failure is left to the loop, which reports it as an exit.
            with contextlib.suppress(Exception):
                sock = _listen(spec)
        hub.soon(lambda: self._schedule(hub, plugin, delay, early_exit, sock))

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        """Stop the fake plugin: its socket is gone on return; ``on_exit`` gets code 0.

        ``grace`` is accepted for the protocol and not used: fake plugins
        always stop at once. Stopping a plugin that is not running does nothing.
        """
        with self._lock:
            plugin = self._running.pop(plugin_id, None)
        if plugin is not None:
            self._end(plugin, 0, "")

    def is_running(self, plugin_id: str) -> bool:
        """Tell whether the fake plugin runs (started, not yet stopped or crashed)."""
        with self._lock:
            return plugin_id in self._running

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        """Re-attach to a fake plugin still running from an earlier manager.

        Returns ``True`` (and reports its later exits to ``on_exit``) when
        the plugin of ``spec.id`` runs in this fake, else ``False``.
        """
        with self._lock:
            plugin = self._running.get(spec.id)
            if plugin is None:
                return False
            plugin.on_exit = on_exit
            return True

    def discard(self, plugin_id: str) -> None:
        """Stop the fake plugin if it runs; the calls recorded for its name are kept."""
        self.stop(plugin_id)

    def close(self) -> None:
        """Stop reporting exits; the fake plugins keep serving (live restore).

        Exits already under way are still reported. The fake can be given to
        a new manager afterwards.
        """
        with self._lock:
            for plugin in self._running.values():
                plugin.on_exit = None
        self._exits.close()

    def shutdown(self) -> None:
        """Stop every fake plugin without reporting the exits; for test teardown.

        The loop and handler threads end too; a later :meth:`start` makes new ones.
        """
        self.close()
        with self._lock:
            plugins = list(self._running.values())
            self._running.clear()
        for plugin in plugins:
            self._end(plugin, None, "")
        with self._lock:
            hub, self._hub = self._hub, None
        if hub is not None:
            hub.shutdown()

    # -- internals ----------------------------------------------------------------

    def _get(self, name: str) -> _Behaviour:
        key = _key(name)
        behaviour = self._behaviour.get(key)
        if behaviour is None:
            behaviour = self._behaviour[key] = _Behaviour()
        return behaviour

    def _schedule(
        self,
        hub: FakeHub,
        plugin: _FakePlugin,
        delay: float,
        early_exit: tuple[int | None, str] | None,
        sock: socket.socket | None = None,
    ) -> None:
        """Loop thread: bring the plugin up now, or after its start delay.

        ``sock``: its socket, already listening (made by :meth:`start`).
        """
        if plugin.cancel.is_set():
            # Stopped or crashed before it began starting.
            if sock is not None:
                _drop_socket(sock, plugin.spec)
            return
        if delay:
            plugin.timer = hub.later(delay, lambda: self._bring_up(hub, plugin, early_exit))
        else:
            self._bring_up(hub, plugin, early_exit, sock)

    def _bring_up(
        self,
        hub: FakeHub,
        plugin: _FakePlugin,
        early_exit: tuple[int | None, str] | None,
        sock: socket.socket | None = None,
    ) -> None:
        """Loop thread: listen on the plugin's socket (or die as asked)."""
        plugin.timer = None
        if plugin.cancel.is_set():
            return  # stopped or crashed while "starting"
        if early_exit is not None:
            with self._lock:
                if self._running.get(plugin.spec.id) is not plugin:
                    return
                del self._running[plugin.spec.id]
            self._end(plugin, *early_exit)
            return
        try:
            answer, activate = self._answerer(plugin.spec)
            if sock is None:
                sock = _listen(plugin.spec)
            listener = hub.serve(
                os.fspath(plugin.spec.socket_path),
                sock,
                answer,
                {"Plugin.Activate": (200, activate)},
            )
        except Exception as exc:
            # Like a plugin process that cannot listen: it dies, saying why.
            _log.exception("fake plugin %s cannot serve", plugin.spec.name)
            if sock is not None:
                _drop_socket(sock, plugin.spec)
            with self._lock:
                if self._running.get(plugin.spec.id) is not plugin:
                    return
                del self._running[plugin.spec.id]
            self._end(plugin, 1, f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            plugin.listener = listener
            self._listening.notify_all()

    def _answerer(self, spec: RuntimeSpec) -> tuple[Answer, bytes]:
        """Build what the plugin of ``spec`` answers, from its name's current settings.

        Returns the answer to every other method, and the ``Plugin.Activate``
        body (fixed for this start: the hub answers it without the pool).
        """
        with self._lock:
            behaviour = self._get(spec.name)
            handlers = dict(behaviour.handlers)
            implements = behaviour.implements
            calls = behaviour.calls
        if implements is None:
            implements = tuple(dict.fromkeys(method.split(".", 1)[0] for method in handlers))
        activate = json.dumps({"Implements": list(implements)}).encode()

        def answer(method: str, body: bytes) -> tuple[int, bytes]:
            handler = handlers.get(method)
            if handler is None:
                return _error(404, f"plugin does not implement method {method!r}")
            request: Any = None
            if body and not body.isspace():
                try:
                    request = json.loads(body)
                except (ValueError, RecursionError) as exc:
                    reason = _json_error_reason(exc)
                    return _error(400, f"{method}: request body is not valid JSON: {reason}")
            with self._lock:
                calls.append(FakeCall(method, request))
            try:
                result = handler(request)
            except Exception as exc:
                if isinstance(exc, PluginError):
                    _sdk_log.debug("%s failed: %s", method, exc)
                else:
                    _sdk_log.exception("handler for %s raised", method)
                status = 400 if isinstance(exc, InvalidRequestError) else 500
                return _error(status, str(exc) or type(exc).__name__)
            return _reply(method, result)

        return answer, activate

    def _end(
        self, plugin: _FakePlugin, exit_code: int | None, stderr_tail: str
    ) -> threading.Event | None:
        """Take a plugin down (already removed from ``_running``) and report its exit.

        Returns an event set once ``on_exit`` has returned, or ``None`` when
        there is nothing to report to.
        """
        plugin.cancel.set()
        with self._lock:
            hub = self._hub
        if hub is not None:
            hub.call(lambda: self._down(hub, plugin))  # the socket is gone on return
        with self._lock:
            on_exit = plugin.on_exit
        if on_exit is None:
            return None
        delivered = threading.Event()

        def deliver(exit_: PluginExit) -> None:
            try:
                on_exit(exit_)
            finally:
                delivered.set()

        self._exits.post(deliver, PluginExit(plugin.spec.id, exit_code, stderr_tail))
        return delivered

    def _down(self, hub: FakeHub, plugin: _FakePlugin) -> None:
        """Loop thread: cancel a pending start and close the plugin's socket."""
        if plugin.timer is not None:
            plugin.timer.cancel()
            plugin.timer = None
        with self._lock:
            listener, plugin.listener = plugin.listener, None
        if listener is not None:
            hub.close(listener)  # fake plugins end at once, cutting calls short


def _listen(spec: RuntimeSpec) -> socket.socket:
    """Make the socket directory of ``spec`` and a socket listening there (any thread)."""
    spec.socket_dir.mkdir(parents=True, exist_ok=True)
    return bind_unix(os.fspath(spec.socket_path))


def _drop_socket(sock: socket.socket, spec: RuntimeSpec) -> None:
    """Close a socket made for a plugin that will not serve, and remove its file.

    The file is ours while the socket listens: nobody else can bind its path.
    """
    sock.close()
    with contextlib.suppress(OSError):
        os.unlink(spec.socket_path)


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"Err": message}).encode()


def _reply(method: str, result: Any) -> tuple[int, bytes]:
    """Encode a handler's result as the body of a 200 answer (as the SDK server does)."""
    if result is None:
        return 200, b"{}"
    if isinstance(result, (bytes, bytearray, memoryview)):
        return 200, bytes(result)
    try:
        if attrs.has(type(result)):
            from .sdk._convert import converter

            result = converter.unstructure(result)
        return 200, json.dumps(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        reason = _json_error_reason(exc)
        _sdk_log.error("handler for %s returned a value that is not JSON: %s", method, reason)
        return _error(500, f"{method}: the plugin's reply is not JSON: {reason}")


# -- helpers for tests that drive a Manager -------------------------------------


def write_plugin_dir(
    path: str | os.PathLike[str],
    *,
    types: Iterable[str] = ("docker.volumedriver/1.0",),
    socket: str = "plugin.sock",
    entrypoint: Iterable[str] = ("/plugin",),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a plugin directory - ``config.json`` and an empty ``rootfs/`` - and return it.

    The directory is what :meth:`~pluginkit.Manager.create` and
    :meth:`~pluginkit.Manager.install` take; with a :class:`FakeRuntime`
    nothing in ``rootfs/`` is ever run, so it stays empty. The
    ``config.json`` has Docker's keys ``Description``, ``Entrypoint`` and
    ``Interface`` (``Types``, ``Socket``) from the arguments, plus the
    top-level keys of ``config`` (``{"Env": [...], "Mounts": [...]}``), which
    replace those of the same name in any case (``"interface"`` replaces
    ``Interface``). The config is checked before anything is written.

    Args:
        path: The directory to write (created, with its parents, if missing).
        types: ``Interface.Types``: what the plugin implements.
        socket: ``Interface.Socket``: the socket file name.
        entrypoint: ``Entrypoint``.
        config: More top-level ``config.json`` keys, in Docker's format.

    Raises:
        InvalidConfigError: The resulting ``config.json`` is not valid.
    """
    from ._config import parse_config  # the config models are slow to import

    base: dict[str, Any] = {
        "Description": "a plugin for tests",
        "Entrypoint": list(entrypoint),
        "Interface": {"Types": list(types), "Socket": socket},
    }
    extra = dict(config or {})
    overridden = {key.lower() for key in extra}
    data = {k: v for k, v in base.items() if k.lower() not in overridden} | extra
    directory = Path(path)
    parse_config(data, source=os.fspath(directory / "config.json"))
    (directory / "rootfs").mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    return directory


def wait_running(
    manager: Manager,
    name: str,
    capability: str | None = None,
    *,
    timeout: float = 10.0,
) -> Plugin:
    """Block until ``manager``'s lookups hand out the plugin ``name``; return it.

    After a crash (:meth:`FakeRuntime.crash`, or a real one) the manager
    restarts the plugin after the restart policy's delay and waits for its
    socket; until then lookups raise :class:`~pluginkit.ErrDisabled`
    (``found but not running``). This polls
    :meth:`~pluginkit.Manager.lookup_with_capability` - from 1 ms, backing
    off to 20 ms - until it succeeds. It works with any runtime.

    Args:
        manager: The manager running the plugin.
        name: The plugin's name (``name`` or ``name:tag``), id or id prefix.
        capability: The capability to look it up with; default its first.
        timeout: Seconds to wait.

    Returns:
        The plugin, as :meth:`~pluginkit.Manager.lookup_with_capability`
        returns it.

    Raises:
        TimeoutError: The plugin is not running after ``timeout`` seconds;
            the message ends with why the last lookup failed.
        ErrNotFound: The manager has no such plugin (at once).
        ErrInadequateCapability: It lacks ``capability`` (at once).
        ValueError: ``capability`` is ``None`` and the plugin has no capability.
    """
    plugin = manager.get(name)
    if capability is None:
        if not plugin.capabilities:
            raise ValueError(f"plugin {plugin.name} has no capability to look it up with")
        capability = plugin.capabilities[0]
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return manager.lookup_with_capability(plugin.name, capability)
        except ErrDisabled as exc:  # disabled or down: it may come (back) up
            why = str(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"plugin {plugin.name} is not running after {timeout:g} s: {why}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


@contextlib.contextmanager
def serve_plugin(plugin: Driver | PluginServer, *, threads: int = 0) -> Iterator[Client]:
    """Serve a plugin written with the SDK on a private unix socket; yield a client of it.

    ``plugin`` is a typed driver (its :meth:`~pluginkit.sdk.Driver.server` is
    made with ``threads``) or a :class:`~pluginkit.sdk.PluginServer` that is
    not serving yet. The client talks to it as Docker's engine does (see
    :class:`~pluginkit.Client`; a non-200 reply raises
    :class:`~pluginkit.PluginCallError`). On exit the client is closed, the
    server stopped and the socket's directory removed.
    """
    from ._client import Client

    server = plugin if isinstance(plugin, PluginServer) else plugin.server(threads=threads)
    # /tmp, not a test's tmp_path: a unix socket path must fit in 107 bytes.
    directory = tempfile.mkdtemp(prefix="pk-plugin-", dir="/tmp")
    try:
        server.start(os.path.join(directory, "plugin.sock"))
        try:
            with Client(f"unix://{directory}/plugin.sock", retry_timeout=0) as client:
                yield client
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
