"""What the sync and the async client share: options, request heads, errors, the retry step.

Everything here is free of I/O; :class:`~pluginkit.Client` and
:class:`~pluginkit.AsyncClient` add the sockets, so both give the same
replies, raise the same errors with the same texts, and retry by the same
rule (:mod:`pluginkit._wire._retry`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from ._bodies import FileBody
from ._errors import PluginConnectionError, PluginError, PluginProtocolError, PluginTimeoutError
from ._pool import ConnectFailed, reason
from ._tls import TLSConfig
from ._wire._address import parse_address
from ._wire._clientside import UNIX_HOST_LINE, request_prefix
from ._wire._json import decode, json_error_reason
from ._wire._retry import check_retry_timeout, check_timeout, retry_delay

__all__ = ["DEFAULT_MAX_RESPONSE_SIZE", "UNSET", "ClientBase", "Unset"]

log = logging.getLogger("pluginkit.client")

#: The largest reply body :meth:`Client.call` and :meth:`Client.send_file` accept.
DEFAULT_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024


class Unset:
    """Marks a per-call option that was not given (``None`` means "no timeout")."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Final = Unset()


class ClientBase:
    """The constructor, options and error wording of both clients (no I/O)."""

    def __init__(
        self,
        addr: str,
        *,
        tls: TLSConfig | None = None,
        timeout: float | None = None,
        retry_timeout: float = 30.0,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        backoff_unit: float = 1.0,
    ) -> None:
        self._address = parse_address(addr)
        if tls is not None and not isinstance(tls, TLSConfig):
            raise TypeError(f"tls must be a TLSConfig, not {type(tls).__name__}")
        check_timeout("timeout", timeout)
        check_retry_timeout(retry_timeout)
        if max_response_size <= 0:
            raise ValueError(f"max_response_size must be > 0, not {max_response_size!r}")
        if not backoff_unit > 0:
            raise ValueError(f"backoff_unit must be > 0, not {backoff_unit!r}")
        self.addr = addr
        self.tls = tls
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.max_response_size = max_response_size
        self.backoff_unit = backoff_unit
        self._use_tls = self._address.tls or (tls is not None and self._address.unix_path is None)
        self._host_line = (
            UNIX_HOST_LINE
            if self._address.unix_path is not None
            else b"Host: " + self._address.host_header.encode("idna") + b"\r\n"
        )
        self._prefixes: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.addr!r})"

    def _options(
        self, timeout: float | Unset | None, retry_timeout: float | Unset
    ) -> tuple[float | None, float]:
        if isinstance(timeout, Unset):
            timeout = self.timeout
        else:
            check_timeout("timeout", timeout)
        if isinstance(retry_timeout, Unset):
            retry_timeout = self.retry_timeout
        else:
            check_retry_timeout(retry_timeout)
        return timeout, retry_timeout

    def _decode(self, method: str, data: bytes) -> Any:
        if not data:
            return None
        try:
            # JSON on the wire is UTF-8 (RFC 8259; Go's decoder assumes it too).
            return decode(data.decode())
        except (ValueError, RecursionError) as exc:
            raise PluginProtocolError(
                f"{method}: reply from plugin at {self.addr} is not JSON: {json_error_reason(exc)}"
                f" (reply starts with {data[:60]!r})"
            ) from None

    def _prefix(self, method: str) -> bytes:
        prefix = self._prefixes.get(method)
        if prefix is None:
            prefix = request_prefix(method, self._host_line)
            if len(self._prefixes) < 256:
                self._prefixes[method] = prefix
        return prefix

    def _request_head(self, method: str, body: bytes | FileBody) -> bytes:
        prefix = self._prefix(method)
        if isinstance(body, bytes):
            return prefix + b"Content-Length: %d\r\n\r\n" % len(body)
        if body.length is not None:
            return prefix + b"Content-Length: %d\r\n\r\n" % body.length
        return prefix + b"Transfer-Encoding: chunked\r\n\r\n"

    def _closed_error(self, method: str) -> PluginConnectionError:
        return PluginConnectionError(
            f"{method}: cannot call plugin at {self.addr}: client is closed"
        )

    def _protocol_error(self, method: str, detail: str) -> PluginProtocolError:
        return PluginProtocolError(f"{method}: invalid reply from plugin at {self.addr}: {detail}")

    def _too_large_error(self, method: str, size: int) -> PluginProtocolError:
        return self._protocol_error(
            method,
            f"the reply ({size} bytes or more) is larger than the limit of "
            f"{self.max_response_size} bytes (max_response_size)",
        )

    def _timeout_error(self, method: str, timeout: float | None) -> PluginTimeoutError:
        return PluginTimeoutError(
            f"{method}: plugin at {self.addr} did not answer within {timeout:g} s"
        )

    def _reply_error(self, method: str, timeout: float | None, exc: Exception) -> PluginError:
        """Return the error to raise when reading a reply failed with ``exc``.

        A timeout is the call's deadline passing; a broken connection and a
        malformed reply (``BadReply``) are protocol errors naming ``exc``.
        """
        if isinstance(exc, TimeoutError):
            return self._timeout_error(method, timeout)
        if isinstance(exc, OSError):
            return self._protocol_error(method, f"connection broke mid-reply: {exc}")
        return self._protocol_error(method, str(exc))

    def _retry_delay(
        self,
        failed: ConnectFailed,
        method: str,
        retries: int,
        start: float,
        retry_timeout: float,
        body: bytes | FileBody,
    ) -> float:
        """Return the delay before the next attempt, or raise when Docker's rule says stop."""
        elapsed = time.monotonic() - start
        rewound = isinstance(body, bytes) or body.rewind()
        delay = retry_delay(retries, elapsed, retry_timeout, self.backoff_unit)
        if failed.sent:
            what = f"the connection to plugin at {self.addr} broke before any reply"
        else:
            what = f"cannot connect to plugin at {self.addr}"
        if not failed.retry or not rewound or delay is None:
            detail = f" (gave up after {retries + 1} attempts)" if retries else ""
            raise PluginConnectionError(
                f"{method}: {what}: {reason(failed.cause)}{detail}"
            ) from failed.cause
        # Docker re-sends in this case too (its TestFailOnce); say so, since
        # the plugin may have acted on the request it did not answer.
        again = "sending the request again" if failed.sent else "retrying"
        log.warning("%s: %s: %s, %s in %g s", method, what, reason(failed.cause), again, delay)
        return delay
