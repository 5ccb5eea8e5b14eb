"""TLS settings of ``https://`` plugins; :mod:`ssl` is imported only when TLS is used."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import attrs

from ._errors import InvalidConfigError

if TYPE_CHECKING:
    import ssl

__all__ = ["TLSConfig", "ssl_context"]


@attrs.frozen
class TLSConfig:
    """TLS settings for ``https://`` plugins, as in Docker's spec ``.json`` files.

    Attributes:
        ca_file: PEM bundle of extra certificate authorities (added to the
            system's, as Docker does).
        cert_file: PEM client certificate (may hold the key too).
        key_file: PEM key of the client certificate.
        insecure_skip_verify: do not verify the server's certificate or name.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """Build the :class:`ssl.SSLContext` these settings describe.

        Raises:
            InvalidConfigError: a file is missing or does not hold what it should.
        """
        return ssl_context(self)


@functools.lru_cache(maxsize=32)
def ssl_context(config: TLSConfig | None) -> ssl.SSLContext:
    """Build the context for ``config`` (``None``: the system's CAs), once per configuration.

    Cached: building a context loads the system's CAs (milliseconds), and
    many plugins share one configuration.
    """
    import ssl  # here: a plugin without TLS never pays for it

    context = ssl.create_default_context()
    if config is None:
        return context
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.ca_file:
        try:
            context.load_verify_locations(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(
                f"cannot load CA file {config.ca_file}: {exc}", path=config.ca_file
            ) from exc
    if config.key_file and not config.cert_file:
        raise InvalidConfigError("TLS key_file given without cert_file", field="cert_file")
    if config.cert_file:
        try:
            context.load_cert_chain(config.cert_file, config.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(
                f"cannot load client certificate {config.cert_file}: {exc}",
                path=config.cert_file,
            ) from exc
    return context
