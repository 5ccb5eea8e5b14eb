"""Typed clients of authorization plugins: :class:`AuthzClient` and its async twin.

Both calls send an :class:`~pluginkit.sdk.authz.AuthzRequest` (bodies as
base64, peer certificates as base64 of their PEM, as the engine does) and
return the plugin's :class:`~pluginkit.sdk.authz.AuthzResponse`. Its ``err``
is part of the verdict (the engine tells a denial from a plugin error), so
a 200 reply with ``Err`` is returned, not raised.
"""

from __future__ import annotations

from ..sdk import authz as models
from ._base import AsyncBase, Call, SyncBase, endpoint, model_reply
from ._base import request as to_json

__all__ = ["AsyncAuthzClient", "AuthzClient"]


class _Authz:
    """The ``authz`` protocol, once for both clients."""

    capability = "authz"

    @endpoint
    def authz_request(self, request: models.AuthzRequest) -> Call[models.AuthzResponse]:
        """Ask whether the engine may run the API request described."""
        return _verdict("AuthZPlugin.AuthZReq", request)

    @endpoint
    def authz_response(self, request: models.AuthzRequest) -> Call[models.AuthzResponse]:
        """Ask whether the engine may return the response described."""
        return _verdict("AuthZPlugin.AuthZRes", request)


def _verdict(method: str, body: models.AuthzRequest) -> Call[models.AuthzResponse]:
    if not isinstance(body, models.AuthzRequest):
        raise TypeError(f"{method} takes an AuthzRequest, not {type(body).__name__}")
    return Call(
        method,
        to_json(body),
        model_reply(models.AuthzResponse),
        reply_type=models.AuthzResponse,
        check_err=False,
    )


class AuthzClient(_Authz, SyncBase):
    """Call an authorization plugin with typed requests and verdicts, blocking.

    Takes a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an
    address; errors are the client's.
    """


class AsyncAuthzClient(_Authz, AsyncBase):
    """:class:`AuthzClient` for asyncio: the same methods, as coroutines."""
