"""What every typed client shares: the call table, the sync and async callers, targets.

A protocol's mapping is written once, as methods decorated with
:class:`endpoint`: each takes the user's arguments and returns a
:class:`Call` - the Docker method, the JSON request and how to read the
reply. The decorator turns such a method into a plain method on a class
built on :class:`SyncBase` (it calls :meth:`pluginkit.Client.call`) and into a
coroutine method on a class built on :class:`AsyncBase` (it awaits the
async client's ``call``), with the same parameters and a typed result::

    class _Volume:
        @endpoint
        def path(self, name: str) -> Call[str]:
            return Call("VolumeDriver.Path", {"Name": name}, mountpoint)

    class VolumeDriverClient(_Volume, SyncBase): ...       # .path(name) -> str
    class AsyncVolumeDriverClient(_Volume, AsyncBase): ...  # await .path(name) -> str
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import cattrs

from .._errors import ErrInadequateCapability, PluginCallError, PluginProtocolError
from .._plugin import Plugin
from ..sdk._convert import converter

if TYPE_CHECKING:
    from .._client import Client

__all__ = [
    "AsyncBase",
    "AsyncCaller",
    "AsyncReader",
    "Call",
    "SyncBase",
    "endpoint",
    "field_reply",
    "ignore_reply",
    "model_reply",
    "request",
]

_T = TypeVar("_T")
_M = TypeVar("_M")
_P = ParamSpec("_P")


class Call(Generic[_T]):
    """One request of a protocol and how to read its reply.

    Attributes:
        method: Docker's method name, e.g. ``"VolumeDriver.Path"``.
        args: the JSON-ready request body; ``None`` sends an empty body.
        reply: turns the decoded JSON reply into the method's result; a
            ``TypeError``/``ValueError``/cattrs error it raises is reported as
            a :class:`~pluginkit.PluginProtocolError` naming the method.
        reply_type: the model ``reply`` builds, named in those errors.
        check_err: a 200 reply carrying a non-empty ``Err`` raises
            :class:`~pluginkit.PluginCallError`, as Docker's own proxies do
            (off where the reply model has an ``err`` field of its own).
        missing: for an optional endpoint, the result when the plugin
            answers 404 (it does not implement the method), as Docker assumes.
    """

    __slots__ = ("args", "check_err", "method", "missing", "reply", "reply_type")

    def __init__(
        self,
        method: str,
        args: Any,
        reply: Callable[[Any], _T],
        *,
        reply_type: type | None = None,
        check_err: bool = True,
        missing: Callable[[], _T] | None = None,
    ) -> None:
        self.method = method
        self.missing = missing
        self.args = args
        self.reply = reply
        self.reply_type = reply_type
        self.check_err = check_err

    def failed(self, exc: PluginCallError) -> _T:
        """Return the default of an optional endpoint the plugin lacks, else re-raise ``exc``."""
        if self.missing is not None and exc.status == 404:
            return self.missing()
        raise exc

    def finish(self, data: Any, addr: str) -> _T:
        """Check and convert the decoded reply ``data`` of the plugin at ``addr``."""
        if self.check_err and isinstance(data, dict):
            err = data.get("Err")
            if isinstance(err, str) and err:
                raise PluginCallError(self.method, 200, err)
        try:
            return self.reply(data)
        except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
            what = self.reply_type.__name__ if self.reply_type is not None else "the reply"
            raise PluginProtocolError(
                f"{self.method}: reply from plugin at {addr} does not fit {what}: "
                f"{_describe(exc, self.reply_type)}"
            ) from None


def _describe(exc: Exception, model: type | None) -> str:
    if model is None or not isinstance(exc, cattrs.BaseValidationError):
        return str(exc)
    from ..sdk._driver import _describe as describe_request

    # The SDK's wording of a bad request, with Docker's field names; here it is a reply.
    return describe_request(exc, model).replace(" @ request", " @ reply")


def ignore_reply(data: Any) -> None:
    """Read a reply whose content does not matter (``{}`` from ``Create``, ``Remove``...)."""
    return


def _hook(model: type[_M]) -> Callable[[Any, type[_M]], _M]:
    # The converter's hook for the model, found once (its dispatch costs per call).
    hook = _hooks.get(model)
    if hook is None:
        hook = _hooks[model] = converter.get_structure_hook(model)
    return hook


_hooks: dict[type, Callable[[Any, Any], Any]] = {}


def model_reply(model: type[_M]) -> Callable[[Any], _M]:
    """Read a reply as ``model`` (Docker's JSON names; null and missing fields take defaults)."""

    def read(data: Any) -> _M:
        return _hook(model)(data, model)

    return read


def field_reply(model: type[_M], field: Callable[[_M], _T]) -> Callable[[Any], _T]:
    """Read a reply as ``model`` and return one of its fields (an envelope's content)."""

    def read(data: Any) -> _T:
        return field(_hook(model)(data, model))

    return read


def request(model: Any) -> Any:
    """Turn a request model into its JSON body (Docker's field names)."""
    return converter.unstructure(model)


# -- the callers ---------------------------------------------------------------


class AsyncReader(Protocol):
    """A reply body read asynchronously: ``read(size)`` returns ``b""`` at its end."""

    async def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative)."""
        ...


class AsyncCaller(Protocol):
    """What the async typed clients need from an async protocol client.

    :class:`pluginkit.AsyncClient` has it: ``call`` (JSON in, JSON out) and
    ``stream`` (an async context manager yielding the reply body).
    """

    @property
    def addr(self) -> str:
        """The plugin's address, for error messages."""
        ...

    async def call(self, method: str, args: Any = None) -> Any:
        """Call ``method`` with ``args`` as JSON; return the decoded JSON reply."""
        ...

    def stream(self, method: str, args: Any = None) -> AbstractAsyncContextManager[AsyncReader]:
        """Call ``method``; the context yields the reply body."""
        ...


class SyncBase:
    """Base of the blocking typed clients: each endpoint calls :meth:`pluginkit.Client.call`.

    Args:
        target: a :class:`~pluginkit.Plugin` (its client is used; it must
            implement the protocol's capability), a :class:`~pluginkit.Client`,
            or an address (``unix:///path.sock``, ``tcp://host:port``...) for
            which a client with default settings is made and owned.
    """

    capability: str = ""

    def __init__(self, target: Plugin | Client | str) -> None:
        from .._client import Client

        if isinstance(target, Plugin):
            _check_capability(target, self.capability)
            self.client: Client = target.client
            self._owned = False
        elif isinstance(target, Client):
            self.client, self._owned = target, False
        elif isinstance(target, str):
            self.client, self._owned = Client(target), True
        else:
            raise TypeError(
                f"{type(self).__name__} takes a Plugin, a Client or an address, "
                f"not {type(target).__name__}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client.addr!r})"

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client when this object made it (from an address); else do nothing."""
        if self._owned:
            self.client.close()

    def _run(self, call: Call[_T]) -> _T:
        try:
            data = self.client.call(call.method, call.args)
        except PluginCallError as exc:
            return call.failed(exc)
        return call.finish(data, self.client.addr)


class AsyncBase:
    """Base of the asyncio typed clients: each endpoint awaits the async client's ``call``.

    Args:
        target: a :class:`~pluginkit.Plugin` (its ``async_client`` is used; it
            must implement the protocol's capability), an async client
            (:class:`pluginkit.AsyncClient` or anything with its
            ``call``/``stream``), or an address for which an
            :class:`pluginkit.AsyncClient` is made and owned.
    """

    capability: str = ""

    def __init__(self, target: Plugin | AsyncCaller | str) -> None:
        from .._client import Client

        if isinstance(target, Client):
            raise TypeError(
                f"{type(self).__name__} needs an async client; "
                f"a Client goes to {type(self).__name__.removeprefix('Async')}"
            )
        if isinstance(target, Plugin):
            _check_capability(target, self.capability)
            self.client: AsyncCaller = target.async_client
            self._owned = False
        elif isinstance(target, str):
            from .._async_client import AsyncClient

            self.client, self._owned = AsyncClient(target), True
        elif callable(getattr(target, "call", None)):
            self.client, self._owned = target, False
        else:
            raise TypeError(
                f"{type(self).__name__} takes a Plugin, an AsyncClient or an address, "
                f"not {type(target).__name__}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client.addr!r})"

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client when this object made it (from an address); else do nothing."""
        if self._owned:
            await _close_async(self.client)

    async def _run(self, call: Call[_T]) -> _T:
        try:
            data = await self.client.call(call.method, call.args)
        except PluginCallError as exc:
            return call.failed(exc)
        return call.finish(data, self.client.addr)


_S = TypeVar("_S", bound=SyncBase)
_A = TypeVar("_A", bound=AsyncBase)


def _check_capability(plugin: Plugin, capability: str) -> None:
    if capability and not plugin.implements(capability):
        raise ErrInadequateCapability(plugin.name, capability)


async def _close_async(client: Any) -> None:
    await client.aclose()


# -- the decorator -----------------------------------------------------------------


class endpoint(Generic[_P, _T]):
    """Make a method returning a :class:`Call` a protocol method of both client kinds.

    On a :class:`SyncBase` instance the attribute is a function with the
    builder's parameters returning the reply; on an :class:`AsyncBase`
    instance, a coroutine function returning it.
    """

    def __init__(self, build: Callable[Concatenate[Any, _P], Call[_T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__
        self.__wrapped__ = build

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> endpoint[_P, _T]: ...

    @overload
    def __get__(self, obj: SyncBase, owner: type[Any]) -> Callable[_P, _T]: ...

    @overload
    def __get__(
        self, obj: AsyncBase, owner: type[Any]
    ) -> Callable[_P, Coroutine[Any, Any, _T]]: ...

    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build = self.build
        if isinstance(obj, AsyncBase):
            runner = obj

            async def call_async(*args: _P.args, **kwargs: _P.kwargs) -> _T:
                return await runner._run(build(runner, *args, **kwargs))

            bound: Callable[..., Any] = call_async
        elif isinstance(obj, SyncBase):
            sync_runner = obj

            def call_sync(*args: _P.args, **kwargs: _P.kwargs) -> _T:
                return sync_runner._run(build(sync_runner, *args, **kwargs))

            bound = call_sync
        else:
            raise TypeError(f"{owner.__name__} is neither a sync nor an async client")
        bound.__name__ = self.__name__
        bound.__qualname__ = f"{owner.__name__}.{self.__name__}"
        bound.__doc__ = self.__doc__
        # Kept on the instance: later lookups find it there and skip this method.
        obj.__dict__[self.__name__] = bound
        return bound
