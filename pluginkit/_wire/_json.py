"""The JSON codec of the wire: Docker's plugin calls carry JSON both ways.

``json.dumps``/``json.loads`` run several Python-level steps per call (option
checks, encoding detection, whitespace regexes) around their C cores; a plugin
call is a round trip where every microsecond of work counts, so these call the
C cores directly when CPython has them. Same output and errors as the
``json`` functions named in each docstring.

Two encoders, kept apart on purpose: the host client writes requests as
``json.dumps`` does (``", "`` and ``": "``) with one shared encoder and no
circular-reference check (a cycle gives RecursionError); the plugin server
writes replies compactly like Go's encoder, with the check (it runs on pool
threads, so it builds an encoder per call). :func:`json_error_reason` words
why JSON could not be decoded or encoded, for everyone.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from json.encoder import encode_basestring_ascii
from typing import Any

from .._errors import _json_error_reason as json_error_reason

__all__ = ["decode", "decode_body", "encode", "encode_compact", "json_error_reason"]

_decoder = json.JSONDecoder()
_decode_json = _decoder.decode

# Private CPython helpers, absent from typeshed (and from some Pythons).
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_make_scanner: Any = getattr(json.scanner, "c_make_scanner", None)


def _unserializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_c_encoder = (
    _c_make_encoder(
        None, _unserializable, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    if _c_make_encoder is not None
    else None
)
_c_scan = _c_make_scanner(_decoder) if _c_make_scanner is not None else None


def encode(value: Any) -> str:
    """``json.dumps(value)``, faster (a cycle raises RecursionError, not ValueError)."""
    if _c_encoder is None:  # pragma: no cover - Pythons without the C accelerator
        return json.dumps(value)
    return "".join(_c_encoder(value, 0))


def encode_compact(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"))``: compact like Go's encoder."""
    if _c_make_encoder is None:  # pragma: no cover - Pythons without the C accelerator
        return json.dumps(value, separators=(",", ":"))
    # A new encoder per call: its dict of containers being encoded (the
    # circular-reference check) must not be shared between threads.
    encoder = _c_make_encoder(
        {}, _unserializable, encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return "".join(encoder(value, 0))


def decode(text: str) -> Any:
    """``json.loads(text)``, faster for the usual reply (no leading whitespace)."""
    if _c_scan is not None:
        try:
            value, end = _c_scan(text, 0)
        except StopIteration:
            pass  # leading whitespace or invalid: the full decoder decides
        else:
            # Only JSON's four whitespace characters may follow: str.isspace
            # would also take others ("\x0b", "\xa0") that json.loads refuses.
            if end == len(text) or not text[end:].strip(" \t\n\r"):
                return value
    return _decode_json(text)


def decode_body(body: bytes) -> Any:
    """``json.loads(body)``, faster for the usual body (a UTF-8 object)."""
    # "{" then a non-NUL byte: json.loads would pick UTF-8 too (its encoding
    # detection only looks for BOMs and NUL bytes in the first four).
    if _c_scan is not None and body[:1] == b"{" and body[1:2] != b"\0":
        text = body.decode("utf-8", "surrogatepass")
        try:
            value, end = _c_scan(text, 0)
        except StopIteration:
            pass  # invalid: json.loads says why
        else:
            # Only JSON's four whitespace characters may follow (str.isspace
            # would also take others); Docker's encoder ends with a newline.
            if end == len(text) or not text[end:].strip(" \t\n\r"):
                return value
    return json.loads(body)
