"""AsyncManager: the :class:`~pluginkit.Manager` for asyncio programs.

The slow operations (``create``, ``install``, ``privileges``, ``enable``,
``disable``, ``remove``, ``set``, ``upgrade``, ``push``, ``save``, ``load``,
``shutdown``) are coroutines; each runs the thread-safe
:class:`~pluginkit.Manager`'s method in the manager's own small thread pool
(:attr:`AsyncManager.workers` threads; see :mod:`pluginkit._offload` for why
not the loop's default executor), so the event loop keeps running while a
plugin starts. Lookups (``get``, ``list``, ``inspect``,
``lookup_with_capability``, ``find_with_capability``, ``use``, ``handle``)
stay plain methods: they read the manager's in-memory state under a short
lock. (The two capability lookups may ask the legacy registry, which
activates plugins: their awaitable forms are
:func:`pluginkit.alookup_with_capability` and
:func:`pluginkit.afind_with_capability` with ``manager=``.)
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ._manager import Manager
from ._offload import Offloader
from ._plugin import Plugin

if TYPE_CHECKING:
    from pathlib import Path

    from ._client import Client
    from ._config import Privilege
    from ._legacy import LegacyRegistry
    from .runtime import Runtime

__all__ = ["AsyncManager"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R")


def _takes_args_of(
    _: Callable[Concatenate[Any, _P], Any],
) -> Callable[[Callable[..., _R]], Callable[Concatenate[Any, _P], _R]]:
    """Give a forwarding method the parameters of the method it forwards to (for type checkers)."""

    def same(fn: Callable[..., _R]) -> Callable[Concatenate[Any, _P], _R]:
        return fn

    return same


def _static_takes_args_of(
    _: Callable[Concatenate[Any, _P], Any],
) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
    """Give a forwarding static method the parameters of a method (without its ``self``)."""

    def same(fn: Callable[..., _R]) -> Callable[_P, _R]:
        return fn

    return same


class AsyncManager:
    """The :class:`~pluginkit.Manager`, for asyncio: slow operations are coroutines.

    Takes the same arguments as :class:`~pluginkit.Manager` (and builds one:
    :attr:`manager`). Building it restores the plugins enabled before, as
    ``Manager`` does, which can take a while: inside a running event loop
    prefer ``await AsyncManager.open(...)``, which builds it in a thread.
    ``async with`` shuts it down on exit::

        async with await AsyncManager.open(root) as manager:
            await manager.install("./myplugin", grant=True)
            await manager.enable("myplugin")
            plugin = manager.get("myplugin")

    Each coroutine runs the manager's method in this manager's pool of
    :attr:`workers` threads; more operations wait in its queue without
    blocking the loop. Callbacks (``on_event``, ``grant`` functions,
    ``handle`` callbacks) run in the threads the manager uses, not in the
    event loop: use ``loop.call_soon_threadsafe`` to get back to it.
    Cancelling an awaiting coroutine drops an operation still queued; one
    already running finishes.
    """

    workers: int = 8
    """How many manager operations run at once; set it on the class or a subclass."""

    @_takes_args_of(Manager.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._setup(Manager(*args, **kwargs))

    def _setup(self, manager: Manager) -> None:
        self._manager = manager
        self._pool = Offloader(f"pluginkit-manager-{os.path.basename(manager.root)}", self.workers)

    @classmethod
    def from_manager(cls, manager: Manager) -> AsyncManager:
        """Wrap an existing :class:`~pluginkit.Manager` (both then drive the same plugins)."""
        if not isinstance(manager, Manager):
            raise TypeError(f"from_manager takes a Manager, not {type(manager).__name__}")
        self = cls.__new__(cls)
        self._setup(manager)
        return self

    @staticmethod
    @_static_takes_args_of(Manager.__init__)
    async def open(*args: Any, **kwargs: Any) -> AsyncManager:
        """Build an :class:`AsyncManager` in a thread: ``await AsyncManager.open(root, ...)``.

        The arguments are :class:`~pluginkit.Manager`'s; restoring the
        plugins enabled before does not block the event loop.
        """
        pool = Offloader("pluginkit-manager-open", 1)
        try:
            manager = await pool.run(Manager, *args, **kwargs)
        finally:
            pool.close()
        return AsyncManager.from_manager(manager)

    @property
    def manager(self) -> Manager:
        """The blocking :class:`~pluginkit.Manager` this one drives."""
        return self._manager

    @property
    def root(self) -> Path:
        """The state directory, resolved."""
        return self._manager.root

    @property
    def run_root(self) -> Path:
        """The socket directory, resolved."""
        return self._manager.run_root

    @property
    def runtime(self) -> Runtime:
        """The runtime that runs the plugins."""
        return self._manager.runtime

    @property
    def legacy(self) -> LegacyRegistry | None:
        """The legacy registry lookups fall back to, or ``None``."""
        return self._manager.legacy

    def __repr__(self) -> str:
        return f"<AsyncManager root={str(self._manager.root)!r}>"

    async def __aenter__(self) -> AsyncManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def _run(
        self, method: Callable[Concatenate[Manager, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        return await self._pool.run(method, self._manager, *args, **kwargs)

    # -- slow operations: coroutines ----------------------------------------

    async def create(self, name: str, context_dir: str | os.PathLike[str]) -> Plugin:
        """Awaitable :meth:`Manager.create <pluginkit.Manager.create>`."""
        return await self._run(Manager.create, name, context_dir)

    async def privileges(self, source: str | os.PathLike[str]) -> builtins.list[Privilege]:
        """Awaitable :meth:`Manager.privileges <pluginkit.Manager.privileges>` (it may unpack an archive or ask a registry)."""  # noqa: E501
        return await self._run(Manager.privileges, source)

    @_takes_args_of(Manager.install)
    async def install(self, *args: Any, **kwargs: Any) -> Plugin:
        """Awaitable :meth:`Manager.install <pluginkit.Manager.install>`; a ``grant`` function runs in a manager thread."""  # noqa: E501
        return await self._pool.run(self._manager.install, *args, **kwargs)

    async def enable(self, name: str, *, timeout: float = 30.0) -> None:
        """Awaitable :meth:`Manager.enable <pluginkit.Manager.enable>`: the loop runs while the plugin starts."""  # noqa: E501
        await self._run(Manager.enable, name, timeout=timeout)

    async def disable(self, name: str, *, force: bool = False) -> None:
        """Awaitable :meth:`Manager.disable <pluginkit.Manager.disable>`."""
        await self._run(Manager.disable, name, force=force)

    async def remove(self, name: str, *, force: bool = False) -> None:
        """Awaitable :meth:`Manager.remove <pluginkit.Manager.remove>`."""
        await self._run(Manager.remove, name, force=force)

    async def set(self, name: str, args: Sequence[str]) -> None:
        """Awaitable :meth:`Manager.set <pluginkit.Manager.set>`."""
        await self._run(Manager.set, name, args)

    @_takes_args_of(Manager.upgrade)
    async def upgrade(self, *args: Any, **kwargs: Any) -> Plugin:
        """Awaitable :meth:`Manager.upgrade <pluginkit.Manager.upgrade>` (fetches from a registry)."""  # noqa: E501
        return await self._pool.run(self._manager.upgrade, *args, **kwargs)

    async def push(self, name: str, ref: str | None = None) -> str:
        """Awaitable :meth:`Manager.push <pluginkit.Manager.push>`; returns the manifest's digest."""  # noqa: E501
        return await self._run(Manager.push, name, ref)

    async def save(self, name: str, file: str | os.PathLike[str]) -> str:
        """Awaitable :meth:`Manager.save <pluginkit.Manager.save>`; returns the manifest's digest."""  # noqa: E501
        return await self._run(Manager.save, name, file)

    @_takes_args_of(Manager.load)
    async def load(self, *args: Any, **kwargs: Any) -> Plugin:
        """Awaitable :meth:`Manager.load <pluginkit.Manager.load>`; a ``grant`` function runs in a manager thread."""  # noqa: E501
        return await self._pool.run(self._manager.load, *args, **kwargs)

    async def shutdown(self) -> None:
        """Awaitable :meth:`Manager.shutdown <pluginkit.Manager.shutdown>`; then the pool's threads end."""  # noqa: E501
        try:
            await self._run(Manager.shutdown)
        finally:
            self._pool.close()

    # -- lookups: plain methods -----------------------------------------------

    def get(self, name: str) -> Plugin:
        """:meth:`Manager.get <pluginkit.Manager.get>`."""
        return self._manager.get(name)

    def list(
        self, *, capability: str | None = None, enabled: bool | None = None
    ) -> builtins.list[Plugin]:
        """:meth:`Manager.list <pluginkit.Manager.list>`."""
        return self._manager.list(capability=capability, enabled=enabled)

    def inspect(self, name: str) -> dict[str, Any]:
        """:meth:`Manager.inspect <pluginkit.Manager.inspect>`."""
        return self._manager.inspect(name)

    def lookup_with_capability(self, name: str, capability: str) -> Plugin:
        """:meth:`Manager.lookup_with_capability <pluginkit.Manager.lookup_with_capability>`."""
        return self._manager.lookup_with_capability(name, capability)

    def find_with_capability(self, capability: str) -> builtins.list[Plugin]:
        """:meth:`Manager.find_with_capability <pluginkit.Manager.find_with_capability>`."""
        return self._manager.find_with_capability(capability)

    @contextlib.contextmanager
    def use(self, name: str, capability: str) -> Iterator[Plugin]:
        """:meth:`Manager.use <pluginkit.Manager.use>`: a plain ``with`` block."""
        with self._manager.use(name, capability) as plugin:
            yield plugin

    def handle(self, capability: str, callback: Callable[[str, Client], None]) -> None:
        """:meth:`Manager.handle <pluginkit.Manager.handle>` (callbacks run in manager threads)."""
        self._manager.handle(capability, callback)
