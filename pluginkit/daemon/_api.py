"""What dockerd's API layer does around every handler: versions, filters, errors.

Texts and status codes follow dockerd 20.10 (``api/server/middleware/version.go``,
``api/server/httputils``, ``api/types/filters``, ``errdefs``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from .._errors import (
    ErrNotFound,
    InstallLimitError,
    InvalidConfigError,
    InvalidReferenceError,
    PluginEnabledError,
    PluginError,
    PluginExistsError,
    PluginInUseError,
    PrivilegesNotGrantedError,
)

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "ApiError",
    "Filters",
    "parse_filters",
    "parse_timestamp",
    "split_version",
    "status_of",
]

API_VERSION = "1.41"
"""The Engine API version served (dockerd 20.10's)."""
MIN_API_VERSION = "1.12"
"""The oldest version accepted, as dockerd on Linux."""

_VERSIONED = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")


class ApiError(Exception):
    """An error answered as ``{"message": ...}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        try:
            parts.append(int(part))
        except ValueError:
            parts.append(0)
    return tuple(parts)


def split_version(path: str) -> tuple[str | None, str]:
    """``/v1.41/plugins`` -> (``"1.41"``, ``/plugins``); check the version like dockerd.

    Raises:
        ApiError: 400 with dockerd's text for a version out of range.
    """
    match = _VERSIONED.match(path)
    if match is None:
        return None, path
    version, rest = match.group(1), match.group(2)
    if _version_key(version) < _version_key(MIN_API_VERSION):
        raise ApiError(
            400,
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version",
        )
    if _version_key(version) > _version_key(API_VERSION):
        raise ApiError(
            400,
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}",
        )
    return version, rest


def status_of(exc: BaseException) -> int:
    """Return the HTTP status dockerd answers for the same failure (errdefs' mapping)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, ErrNotFound):
        return 404
    if isinstance(exc, (PluginEnabledError, PluginInUseError, PluginExistsError)):
        return 409
    if isinstance(
        exc,
        (InvalidConfigError, InvalidReferenceError, PrivilegesNotGrantedError, InstallLimitError),
    ):
        return 400
    if isinstance(exc, PluginError) and str(exc).startswith("plugin is already disabled"):
        return 409  # dockerd wraps its "disabled" conflict error
    return 500


class Filters:
    """Docker's ``filters.Args``: key -> set of values, with its match rules."""

    def __init__(self, fields: Mapping[str, set[str]] | None = None) -> None:
        self.fields: dict[str, set[str]] = {k: set(v) for k, v in (fields or {}).items()}

    def get(self, key: str) -> set[str]:
        """Return the values given for ``key`` (empty when none)."""
        return self.fields.get(key, set())

    def contains(self, key: str) -> bool:
        """Tell whether ``key`` was given."""
        return key in self.fields

    def exact(self, key: str, value: str) -> bool:
        """``ExactMatch``: no values for ``key``, or ``value`` is one of them."""
        values = self.fields.get(key)
        return not values or value in values

    def fuzzy(self, key: str, value: str) -> bool:
        """``FuzzyMatch``: no values, an exact match, or a value that is a prefix."""
        values = self.fields.get(key)
        if not values or value in values:
            return True
        return any(value.startswith(v) for v in values)


def _go_json_error(exc: json.JSONDecodeError, text: str) -> str:
    if not text.strip():
        return "unexpected end of JSON input"
    char = text[exc.pos] if exc.pos < len(text) else ""
    if char:
        return f"invalid character {char!r} looking for beginning of value"
    return "unexpected end of JSON input"


def parse_filters(text: str | None) -> Filters:
    """Parse the ``filters`` query parameter (``{"k": {"v": true}}`` or legacy ``{"k": ["v"]}``).

    Raises:
        ApiError: 500 with Go's JSON error text, as dockerd.
    """
    if not text:
        return Filters()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(500, _go_json_error(exc, text)) from None
    if not isinstance(raw, dict):
        raise ApiError(
            500, "json: cannot unmarshal value into Go value of type map[string]map[string]bool"
        )
    fields: dict[str, set[str]] = {}
    for key, values in raw.items():
        if isinstance(values, dict):
            fields[str(key)] = {str(v) for v, on in values.items() if on}
        elif isinstance(values, list):
            fields[str(key)] = {str(v) for v in values}
        else:
            raise ApiError(
                500, "json: cannot unmarshal value into Go value of type map[string]bool"
            )
    return Filters(fields)


def parse_timestamp(text: str | None) -> float | None:
    """Parse ``since``/``until``, ``SECONDS[.NANOS]`` as Docker's CLI sends (``None`` when empty).

    Raises:
        ApiError: 500 with Go's ``strconv`` text, as dockerd.
    """
    if not text:
        return None
    seconds, dot, fraction = text.partition(".")
    if not re.fullmatch(r"[+-]?[0-9]+", seconds):
        raise ApiError(500, f'strconv.ParseInt: parsing "{seconds}": invalid syntax')
    if dot and not re.fullmatch(r"[0-9]+", fraction):
        raise ApiError(500, f'strconv.ParseInt: parsing "{fraction}": invalid syntax')
    value = float(int(seconds))
    if fraction:
        value += int(fraction) / 10 ** len(fraction)
    return value
