"""The SDK server's HTTP/1.1 pieces now live in the wire layer (:mod:`pluginkit._wire`)."""

from __future__ import annotations

from .._wire._serverside import (
    CONTENT_TYPE,
    HTTPError,
    Request,
    RequestParser,
    chunk,
    response_head,
)

__all__ = [
    "CONTENT_TYPE",
    "HTTPError",
    "Request",
    "RequestParser",
    "chunk",
    "response_head",
]
