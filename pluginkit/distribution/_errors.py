"""The errors of registry and bundle operations.

::

    PluginError
     └── RegistryError                         any registry or bundle problem
          ├── RegistryNotFoundError(LookupError)   repository, tag or blob not found
          ├── RegistryUnreachableError(ConnectionError)  cannot reach registry HOST: ...
          ├── RegistryAuthError(PermissionError)   authentication required / denied
          ├── NotAPluginError                      did not find plugin config for ...
          ├── BlobError(ValueError)                digest mismatch, truncated blob, bad JSON
          └── LayerError(ValueError)               a layer escapes its root or is too large
"""

from __future__ import annotations

from .._errors import PluginError

__all__ = [
    "BlobError",
    "LayerError",
    "NotAPluginError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryUnreachableError",
]


class RegistryError(PluginError):
    """A registry or bundle operation failed (the message says which and why)."""


class RegistryNotFoundError(RegistryError, LookupError):
    """The registry does not know the repository, tag, digest or blob."""


class RegistryUnreachableError(RegistryError, ConnectionError):
    """The registry could not be reached (``cannot reach registry HOST: REASON``)."""


class RegistryAuthError(RegistryError, PermissionError):
    """The registry wants credentials, or refused the ones given."""


class NotAPluginError(RegistryError):
    """The reference names an image that is not a plugin (Docker's wording)."""


class BlobError(RegistryError, ValueError):
    """A manifest, config or layer is not what its digest or size promises, or not JSON."""


class LayerError(RegistryError, ValueError):
    """A layer holds a path that escapes the rootfs, a special file, or unpacks too large."""
