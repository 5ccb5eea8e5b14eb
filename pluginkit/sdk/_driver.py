"""The base of the typed drivers: endpoints as methods, attrs models on both sides.

A driver class lists its endpoints (Docker method name, Python method name,
request model, default reply). :meth:`Driver.register` adds a handler per
endpoint to a :class:`PluginServer`; each handler builds the request model
from the JSON body, calls the method and turns the returned model back into
Docker's JSON. An endpoint the subclass does not implement either answers a
default (what Docker assumes for an optional endpoint, e.g. a volume
driver's ``Capabilities`` -> local scope) or is left out, so that the server
answers 404 as a Go plugin without that endpoint would.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeAlias, TypeVar, Union

import attrs
import cattrs
from cattrs.v import format_exception

from ._async import is_async_function
from ._convert import WrongTypeError, converter, wire_name
from ._server import InvalidRequestError, PluginServer

__all__ = ["Driver", "Endpoint", "MaybeAwaitable", "unimplemented"]

_F = TypeVar("_F", bound=Callable[..., Any])
_R = TypeVar("_R")

#: What an endpoint method returns: the reply, or an awaitable of it (an
#: ``async def`` method). Base classes annotate with it so that a subclass
#: may override with either a plain or an ``async def`` method.
MaybeAwaitable: TypeAlias = Union[_R, Awaitable[_R]]  # noqa: UP007 - a generic alias


def unimplemented(fn: _F) -> _F:
    """Mark a base-class endpoint method as one a subclass must override to serve it."""
    fn.__pluginkit_unimplemented__ = True  # type: ignore[attr-defined]
    return fn


@attrs.frozen
class Endpoint:
    """One endpoint of a driver type.

    Attributes:
        method: Docker's method name, e.g. ``"VolumeDriver.Create"``.
        attr: The Python method implementing it, e.g. ``"create"``.
        request: The request model, or None when the endpoint takes no body.
        required: A required endpoint the subclass does not implement is
            not served (404); an optional one answers the base class's reply.
        reply: Turns what the method returns into the handler's reply; the
            default gives models to the converter (Docker's JSON). A
            function returning an iterator of bytes streams the reply.
    """

    method: str
    attr: str
    request: type[Any] | None
    required: bool = True
    reply: Callable[[Any], Any] | None = None


class Driver:
    """Base class of the typed drivers; subclass one of its subclasses.

    ``implements`` is the capability announced in ``Plugin.Activate``;
    ``endpoints`` the methods served; ``default_name`` the plugin name
    :meth:`server` uses when none is given.
    """

    implements: ClassVar[str] = ""
    endpoints: ClassVar[tuple[Endpoint, ...]] = ()
    default_name: ClassVar[str | None] = None

    def server(
        self,
        *,
        name: str | None = None,
        threads: int = 0,
        max_body: int = 64 * 1024 * 1024,
        stop_timeout: float = 10.0,
        read_timeout: float | None = 60.0,
        max_connections: int | None = None,
        aliases: Iterable[str] = (),
    ) -> PluginServer:
        """Make a :class:`PluginServer` that serves this driver.

        Args:
            name: The plugin's name (default socket
                ``/run/docker/plugins/<name>.sock``); default ``default_name``.
            threads: 0 runs handlers inline in the I/O loop, N > 0 in N threads.
            max_body: The largest request body accepted.
            stop_timeout: How long ``stop()`` waits for in-flight requests.
            read_timeout: How long a client may take to send a whole request
                (None: forever).
            max_connections: The most connections held at once (None: from
                the file descriptor limit).
            aliases: More plugin names served by the same server.
        """
        server = PluginServer(
            [],
            name=name if name is not None else self.default_name,
            threads=threads,
            max_body=max_body,
            stop_timeout=stop_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
            aliases=aliases,
        )
        self.register(server)
        return server

    def register(self, server: PluginServer) -> None:
        """Add this driver's endpoints and capability to ``server``.

        Several drivers can share one server (a network plugin with its own
        IPAM driver, for example).
        """
        if not self.implements:
            raise TypeError(f"{type(self).__name__} does not say what it implements")
        server.add_capability(self.implements)
        self._pluginkit_server = server
        for endpoint in self.endpoints:
            if endpoint.required and not self._overrides(endpoint.attr):
                continue
            server.add_handler(endpoint.method, self._handler(endpoint))

    _pluginkit_server: PluginServer | None = None

    def _await(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` on the event loop of the server this driver serves on; wait."""
        server = self._pluginkit_server
        if server is None:
            raise RuntimeError(f"{type(self).__name__} is not registered with a server")
        return server._await(awaitable)

    def implemented(self) -> list[str]:
        """Return the Docker method names this driver answers."""
        return [e.method for e in self.endpoints if not e.required or self._overrides(e.attr)]

    def _overrides(self, attr: str) -> bool:
        return not getattr(getattr(type(self), attr, None), "__pluginkit_unimplemented__", False)

    def _handler(self, endpoint: Endpoint) -> Callable[[Any], Any]:
        method: Callable[..., Any] = getattr(self, endpoint.attr)
        request_type = endpoint.request
        name = endpoint.method
        unstructure = endpoint.reply or converter.unstructure

        def reply(result: Any) -> Any:
            # An async method's coroutine: the server awaits it, then converts.
            if hasattr(type(result), "__await__"):
                return _then(result, unstructure)
            return unstructure(result)

        if request_type is None:

            def handle_no_body(body: Any) -> Any:
                return reply(method())

            if is_async_function(method):
                handle_no_body._pluginkit_async = True  # type: ignore[attr-defined]
            return handle_no_body

        structure = converter.structure

        def handle(body: Any) -> Any:
            try:
                request = structure(body, request_type)
            except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
                raise InvalidRequestError(
                    f"invalid {name} request: {_describe(exc, request_type)}"
                ) from exc
            return reply(method(request))

        if is_async_function(method):
            handle._pluginkit_async = True  # type: ignore[attr-defined]
        return handle


async def _then(awaitable: Awaitable[Any], convert: Callable[[Any], Any]) -> Any:
    return convert(await awaitable)


def _describe(exc: Exception, request_type: type) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        # cattrs names the Python fields; the plugin's caller sent Docker's names.
        return "; ".join(
            _on_the_wire(line, request_type)
            for line in cattrs.transform_error(exc, path="request", format_exception=_format)
        )
    return str(exc)


# One step of a cattrs error path: ".field" or "[index]".
_STEP = re.compile(r"\.([A-Za-z_]\w*)|(\[[^\]]*\])")


def _on_the_wire(line: str, request_type: type) -> str:
    """Rewrite the path of ``"<message> @ request.a_b[0].c"`` with Docker's JSON names."""
    message, sep, path = line.rpartition(" @ ")
    if not sep or not path.startswith("request"):
        return line
    parts = ["request"]
    current: Any = request_type
    for step in _STEP.finditer(path, len("request")):
        name, index = step.groups()
        if index is not None:
            parts.append(index)
            current = _element_type(current)
            continue
        field = _field(current, name)
        parts.append("." + (wire_name(field) if field is not None else name))
        current = field.type if field is not None else None
    return f"{message} @ {''.join(parts)}"


def _attrs_class(type_: Any) -> type | None:
    if attrs.has(type_):
        return type_
    return next((arg for arg in typing.get_args(type_) if attrs.has(arg)), None)


def _field(type_: Any, name: str) -> attrs.Attribute[Any] | None:
    cls = _attrs_class(type_)
    if cls is None:
        return None
    attrs.resolve_types(cls)
    return attrs.fields_dict(cls).get(name)


def _element_type(type_: Any) -> Any:
    args = [arg for arg in typing.get_args(type_) if arg is not type(None)]
    if len(args) == 1 and typing.get_args(args[0]):  # Optional[list[X]] and the like
        args = list(typing.get_args(args[0]))
    return args[-1] if args else None  # list[X] -> X, dict[K, V] -> V


def _format(exc: BaseException, type_: type | None) -> str:
    text = format_exception(exc, type_)
    if isinstance(exc, WrongTypeError):
        text += f" (got {exc.got})"
    return text
