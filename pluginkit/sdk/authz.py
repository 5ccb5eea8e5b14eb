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

import base64
from typing import Any, ClassVar, NewType

import attrs

from ._convert import converter, json_name
from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented
from ._server import StatusReply

__all__ = ["AuthzPlugin", "AuthzRequest", "AuthzResponse", "PEMCertificate"]

#: One certificate of the client's TLS chain, as PEM text
#: (``-----BEGIN CERTIFICATE-----...``).
PEMCertificate = NewType("PEMCertificate", str)


# Docker's PeerCertificate marshals the PEM as a Go []byte: base64 on the wire.
def _structure_pem(value: Any, _: type) -> PEMCertificate:
    if not isinstance(value, str):
        raise TypeError(f"expected base64 text, got {type(value).__name__}")
    return PEMCertificate(base64.b64decode(value, validate=True).decode("ascii"))


converter.register_structure_hook(PEMCertificate, _structure_pem)
converter.register_unstructure_hook(
    PEMCertificate, lambda pem: base64.b64encode(pem.encode("ascii")).decode("ascii")
)


@attrs.frozen
class AuthzRequest:
    """What the engine tells the plugin about one API call (and, for AuthZRes, its response).

    ``request_peer_certificates`` are the PEM texts of the client's TLS chain
    (Docker sends each as base64 of the PEM; they arrive decoded).
    """

    user: str = ""
    user_authn_method: str = attrs.field(default="", metadata=json_name("UserAuthNMethod"))
    request_method: str = ""
    request_uri: str = ""
    request_body: bytes = b""
    request_headers: dict[str, str] = attrs.field(factory=dict)
    request_peer_certificates: list[PEMCertificate] = attrs.field(factory=list)
    response_status_code: int = 0
    response_body: bytes = b""
    response_headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class AuthzResponse:
    """The verdict: ``allow``, a message for the user (``msg``) or an error (``err``).

    A verdict with ``err`` is sent with HTTP 500, as go-plugins-helpers does:
    the engine then refuses the API request (whatever ``allow`` says) with
    ``plugin NAME failed with error: AuthZPlugin.AuthZReq: <err>``.
    """

    allow: bool
    msg: str = ""
    err: str = ""


def _verdict(response: AuthzResponse) -> Any:
    body = converter.unstructure(response)
    if isinstance(response, AuthzResponse) and response.err:
        return StatusReply(500, body)
    return body


class AuthzPlugin(Driver):
    """Base class of authorization plugins (capability ``authz``).

    ``authz_request`` is required; ``authz_response`` allows every response
    by default (the request was allowed already).
    """

    implements: ClassVar[str] = "authz"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("AuthZPlugin.AuthZReq", "authz_request", AuthzRequest, reply=_verdict),
        Endpoint(
            "AuthZPlugin.AuthZRes", "authz_response", AuthzRequest, required=False, reply=_verdict
        ),
    )

    @unimplemented
    def authz_request(self, request: AuthzRequest) -> MaybeAwaitable[AuthzResponse]:
        """Decide whether the engine may run an API request."""
        raise NotImplementedError

    def authz_response(self, request: AuthzRequest) -> MaybeAwaitable[AuthzResponse]:
        """Decide whether the engine may return a response (default: allow)."""
        return AuthzResponse(allow=True)
