"""Authorization plugins: :class:`AuthzPlugin` and its request/response models.

The engine (started with ``--authorization-plugin=NAME``) asks
``/AuthZPlugin.AuthZReq`` before each API request and
``/AuthZPlugin.AuthZRes`` before returning the response. Bodies are bytes
(base64 on the wire). Example::

    from pluginkit.sdk import authz

    class NoExec(authz.AuthzPlugin):
        def authz_request(self, request: authz.AuthzRequest) -> authz.AuthzResponse:
            if request.request_uri.endswith("/exec"):
                return authz.AuthzResponse(allow=False, msg="exec is not allowed")
            return authz.AuthzResponse(allow=True)
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._convert import json_name
from ._driver import Driver, Endpoint, unimplemented

__all__ = ["AuthzPlugin", "AuthzRequest", "AuthzResponse"]


@attrs.frozen
class AuthzRequest:
    """What the engine tells the plugin about one API call (and, for AuthZRes, its response).

    ``request_peer_certificates`` are PEM texts of the client's TLS chain.
    """

    user: str = ""
    user_authn_method: str = attrs.field(default="", metadata=json_name("UserAuthNMethod"))
    request_method: str = ""
    request_uri: str = ""
    request_body: bytes = b""
    request_headers: dict[str, str] = attrs.field(factory=dict)
    request_peer_certificates: list[str] = attrs.field(factory=list)
    response_status_code: int = 0
    response_body: bytes = b""
    response_headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class AuthzResponse:
    """The verdict: ``allow``, a message for the user (``msg``) or an error (``err``)."""

    allow: bool
    msg: str = ""
    err: str = ""


class AuthzPlugin(Driver):
    """Base class of authorization plugins (capability ``authz``).

    ``authz_request`` is required; ``authz_response`` allows every response
    by default (the request was allowed already).
    """

    implements: ClassVar[str] = "authz"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("AuthZPlugin.AuthZReq", "authz_request", AuthzRequest),
        Endpoint("AuthZPlugin.AuthZRes", "authz_response", AuthzRequest, required=False),
    )

    @unimplemented
    def authz_request(self, request: AuthzRequest) -> AuthzResponse:
        """Decide whether the engine may run an API request."""
        raise NotImplementedError

    def authz_response(self, request: AuthzRequest) -> AuthzResponse:
        """Decide whether the engine may return a response (default: allow)."""
        return AuthzResponse(allow=True)
