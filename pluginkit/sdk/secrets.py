"""Secret providers: :class:`SecretProvider` and the models of its endpoint.

A secret created with ``docker secret create --driver NAME SECRET`` holds no
value in the swarm: each time a task that uses it is about to start, the
worker asks the plugin ``/SecretProvider.GetSecret`` for the value, telling
it which secret, service, task and node it is for. Example::

    from pluginkit import PluginError
    from pluginkit.sdk import secrets

    class Vault(secrets.SecretProvider):
        def get_secret(self, request: secrets.SecretRequest) -> secrets.SecretResponse:
            if request.secret_name != "db-password":
                raise PluginError(f"no secret {request.secret_name!r} here")
            return secrets.SecretResponse(value="hunter2")

Raising (a :class:`~pluginkit.PluginError` or any exception) answers
HTTP 500 ``{"Err": "<message>"}``: the task fails to start with that message.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented

__all__ = ["EndpointSpec", "PortConfig", "SecretProvider", "SecretRequest", "SecretResponse"]


@attrs.frozen
class PortConfig:
    """One port of the service's endpoint; the numbers are swarmkit's enum values.

    ``protocol``: 0 tcp, 1 udp, 2 sctp. ``publish_mode``: 0 ingress, 1 host.
    """

    name: str = ""
    protocol: int = 0
    target_port: int = 0
    published_port: int = 0
    publish_mode: int = 0


@attrs.frozen
class EndpointSpec:
    """How the service is reached: ``mode`` 0 is a virtual IP, 1 DNS round robin."""

    mode: int = 0
    ports: list[PortConfig] = attrs.field(factory=list)


@attrs.frozen
class SecretRequest:
    """``SecretProvider.GetSecret``: the value of ``secret_name`` for one task.

    The engine leaves out what it does not know; those fields keep their
    empty defaults (``service_endpoint_spec`` is None then).
    """

    secret_name: str = ""
    secret_labels: dict[str, str] = attrs.field(factory=dict)
    service_hostname: str = ""
    service_id: str = ""
    service_name: str = ""
    service_labels: dict[str, str] = attrs.field(factory=dict)
    task_id: str = ""
    task_name: str = ""
    task_image: str = ""
    node_id: str = ""
    service_endpoint_spec: EndpointSpec | None = None


def _to_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@attrs.frozen
class SecretResponse:
    """The secret's ``value`` (bytes; a ``str`` is taken as UTF-8), base64 on the wire.

    ``do_not_reuse`` asks the worker to call again for every task instead of
    reusing this value (for secrets made on the fly, one per task).
    """

    value: bytes = attrs.field(default=b"", converter=_to_bytes)
    do_not_reuse: bool = False


class SecretProvider(Driver):
    """Base class of secret provider plugins (capability ``secretprovider``).

    ``get_secret`` is required.
    """

    implements: ClassVar[str] = "secretprovider"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("SecretProvider.GetSecret", "get_secret", SecretRequest),
    )

    @unimplemented
    def get_secret(self, request: SecretRequest) -> MaybeAwaitable[SecretResponse]:
        """Return the value of ``request.secret_name`` for the task described."""
        raise NotImplementedError
