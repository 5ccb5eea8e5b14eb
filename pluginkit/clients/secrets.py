"""Typed clients of secret providers: :class:`SecretProviderClient` and its async twin.

``get_secret`` sends a :class:`~pluginkit.sdk.secrets.SecretRequest` (what a
swarm worker tells the plugin) and returns the
:class:`~pluginkit.sdk.secrets.SecretResponse` (``value`` as bytes).
"""

from __future__ import annotations

from ..sdk import secrets as models
from ._base import AsyncBase, Call, SyncBase, endpoint, model_reply
from ._base import request as to_json

__all__ = ["AsyncSecretProviderClient", "SecretProviderClient"]


class _SecretProvider:
    """The ``secretprovider`` protocol, once for both clients."""

    capability = "secretprovider"

    @endpoint
    def get_secret(self, request: models.SecretRequest) -> Call[models.SecretResponse]:
        """Ask the value of ``request.secret_name`` for the task described."""
        if not isinstance(request, models.SecretRequest):
            raise TypeError(
                f"SecretProvider.GetSecret takes a SecretRequest, not {type(request).__name__}"
            )
        return Call(
            "SecretProvider.GetSecret",
            to_json(request),
            model_reply(models.SecretResponse),
            reply_type=models.SecretResponse,
        )


class SecretProviderClient(_SecretProvider, SyncBase):
    """Call a secret provider plugin with typed requests and replies, blocking.

    Takes a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an
    address; errors are the client's (:class:`~pluginkit.PluginCallError`
    also for a 200 reply with a non-empty ``Err``, which swarmkit treats as
    an error too).
    """


class AsyncSecretProviderClient(_SecretProvider, AsyncBase):
    """:class:`SecretProviderClient` for asyncio: the same methods, as coroutines."""
