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

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
import cattrs

from ._convert import converter
from ._server import InvalidRequestError, PluginServer

__all__ = ["Driver", "Endpoint", "unimplemented"]

_F = TypeVar("_F", bound=Callable[..., Any])


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
    """

    method: str
    attr: str
    request: type[Any] | None
    required: bool = True


class Driver:
    """Base class of the typed drivers; subclass one of its subclasses.

    ``implements`` is the capability announced in ``Plugin.Activate``;
    ``endpoints`` the methods served.
    """

    implements: ClassVar[str] = ""
    endpoints: ClassVar[tuple[Endpoint, ...]] = ()

    def server(
        self,
        *,
        name: str | None = None,
        threads: int = 0,
        max_body: int = 64 * 1024 * 1024,
        stop_timeout: float = 10.0,
    ) -> PluginServer:
        """Make a :class:`PluginServer` that serves this driver.

        Args:
            name: The plugin's name (default socket ``/run/docker/plugins/<name>.sock``).
            threads: 0 runs handlers inline in the I/O loop, N > 0 in N threads.
            max_body: The largest request body accepted.
            stop_timeout: How long ``stop()`` waits for in-flight requests.
        """
        server = PluginServer(
            [], name=name, threads=threads, max_body=max_body, stop_timeout=stop_timeout
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
        for endpoint in self.endpoints:
            if endpoint.required and not self._overrides(endpoint.attr):
                continue
            server.add_handler(endpoint.method, self._handler(endpoint))

    def implemented(self) -> list[str]:
        """Return the Docker method names this driver answers."""
        return [e.method for e in self.endpoints if not e.required or self._overrides(e.attr)]

    def _overrides(self, attr: str) -> bool:
        return not getattr(getattr(type(self), attr, None), "__pluginkit_unimplemented__", False)

    def _handler(self, endpoint: Endpoint) -> Callable[[Any], Any]:
        method: Callable[..., Any] = getattr(self, endpoint.attr)
        request_type = endpoint.request
        name = endpoint.method
        unstructure = converter.unstructure

        if request_type is None:

            def handle_no_body(body: Any) -> Any:
                return unstructure(method())

            return handle_no_body

        structure = converter.structure

        def handle(body: Any) -> Any:
            try:
                request = structure(body, request_type)
            except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
                raise InvalidRequestError(f"invalid {name} request: {_describe(exc)}") from exc
            return unstructure(method(request))

        return handle


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="request"))
    return str(exc)
