"""The exceptions pluginkit raises on purpose.

Every error derives from :class:`PluginError`; where a builtin exception
means the same thing, the error subclasses it too, so callers can catch
either::

    PluginError(Exception)
     ├── ErrNotFound(LookupError)            plugin "NAME" not found
     │    └── ErrDisabled                    plugin "NAME" found but disabled
     ├── ErrInadequateCapability             plugin "NAME" found, but not with "CAP" capability
     ├── PluginCallError                     the plugin answered non-200
     ├── PluginProtocolError                 the reply is not valid (not JSON, too large, ...)
     ├── PluginConnectionError(ConnectionError)   transport failed after the retries
     ├── PluginTimeoutError(TimeoutError)    a deadline passed
     ├── PluginInUseError                    plugin NAME is in use
     ├── PluginEnabledError                  plugin NAME is enabled
     ├── PluginDisabledError                 plugin NAME found but disabled (disable twice)
     ├── PluginExistsError                   plugin NAME already exists
     ├── PrivilegesNotGrantedError           incorrect privileges
     ├── InvalidConfigError(ValueError)      config.json / spec file / settings are wrong
     │    ├── InvalidArchiveError            a plugin archive is corrupt, truncated or unsafe
     │    └── InstallLimitError              an install passes a limit (bytes, entries, depth)
     ├── InvalidReferenceError(ValueError)   a plugin name does not parse
     ├── RuntimeStartError                   a runtime could not start a plugin
     └── RootInUseError                      another live manager owns the root

Messages reuse the Docker engine's texts where Docker has one for the same
situation, so that users and scripts that know Docker recognise them.
"""

from __future__ import annotations

__all__ = [
    "ErrDisabled",
    "ErrInadequateCapability",
    "ErrNotFound",
    "InstallLimitError",
    "InvalidArchiveError",
    "InvalidConfigError",
    "InvalidReferenceError",
    "PluginCallError",
    "PluginConnectionError",
    "PluginDisabledError",
    "PluginEnabledError",
    "PluginError",
    "PluginExistsError",
    "PluginInUseError",
    "PluginProtocolError",
    "PluginTimeoutError",
    "PrivilegesNotGrantedError",
    "RootInUseError",
    "RuntimeStartError",
]


class PluginError(Exception):
    """Root of every exception pluginkit raises on purpose."""


class ErrNotFound(PluginError, LookupError):
    """No plugin of that name exists (or none has the capability asked for)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message if message is not None else f'plugin "{name}" not found')

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, str(self)))


class ErrDisabled(ErrNotFound):
    """A managed plugin of that name exists but is disabled.

    Lookups do not fall back to a legacy plugin of the same name in this case,
    exactly as the Docker engine does.
    """

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(
            name, message if message is not None else f'plugin "{name}" found but disabled'
        )


class ErrInadequateCapability(PluginError):
    """The plugin exists but does not implement the capability asked for."""

    def __init__(self, name: str, capability: str) -> None:
        self.name = name
        self.capability = capability.lower()
        super().__init__(f'plugin "{name}" found, but not with "{self.capability}" capability')

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, self.capability))


class PluginCallError(PluginError):
    """The plugin answered a call with a non-200 status.

    ``message`` is the ``Err`` field of the JSON reply when present and
    non-empty, else the reply body as text. ``str()`` is Docker's
    ``"<method>: <message>"``.
    """

    def __init__(self, method: str, status: int, message: str) -> None:
        self.method = method
        self.status = status
        self.message = message
        super().__init__(f"{method}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.method, self.status, self.message))


class PluginProtocolError(PluginError):
    """The plugin's reply broke the protocol: not JSON, truncated, or too large."""


class PluginConnectionError(PluginError, ConnectionError):
    """The plugin could not be reached, after the retries the client allows."""


class PluginTimeoutError(PluginError, TimeoutError):
    """A deadline passed: a call, an activation, or a plugin's start-up."""


class PluginInUseError(PluginError):
    """The plugin is referenced (refcount > 0) and the operation needs ``force``."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"plugin {name} is in use")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name,))


class PluginEnabledError(PluginError):
    """The operation needs a disabled plugin (or the plugin is already enabled)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message if message is not None else f"plugin {name} is enabled")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, str(self)))


class PluginDisabledError(PluginError):
    """The operation needs an enabled plugin: :meth:`Manager.disable` of a disabled one.

    The message is Docker's: ``plugin is already disabled: plugin NAME found
    but disabled``. (A *lookup* of a disabled plugin raises
    :class:`ErrDisabled`, a kind of :class:`ErrNotFound`, instead.)
    """

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(
            message
            if message is not None
            else f"plugin is already disabled: plugin {name} found but disabled"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, str(self)))


class PluginExistsError(PluginError):
    """A plugin with that name is already installed."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"plugin {name} already exists")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name,))


class PrivilegesNotGrantedError(PluginError):
    """The privileges granted do not cover every privilege the plugin needs."""


class InvalidConfigError(PluginError, ValueError):
    """A config.json, spec file, setting or argument is wrong.

    The message names the file and the field (``path``/``field`` attributes
    when known).
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        self.path = path
        self.field = field
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_invalid_config, (str(self), self.path, self.field))


def _rebuild_invalid_config(
    message: str, path: str | None, field: str | None
) -> InvalidConfigError:
    return InvalidConfigError(message, path=path, field=field)


class InvalidArchiveError(InvalidConfigError):
    """A plugin archive cannot be unpacked: corrupt, truncated, or a member is unsafe.

    ``path`` is the archive; ``member`` the member's name when one is at fault.
    """

    def __init__(self, message: str, *, path: str | None = None, member: str | None = None) -> None:
        self.member = member
        super().__init__(message, path=path)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_invalid_archive, (str(self), self.path, self.member))


def _rebuild_invalid_archive(
    message: str, path: str | None, member: str | None
) -> InvalidArchiveError:
    return InvalidArchiveError(message, path=path, member=member)


class InstallLimitError(InvalidConfigError):
    """An install would write more than an :class:`~pluginkit.InstallLimits` allows.

    ``limit`` names the limit (``"max_bytes"``, ``"max_entries"``,
    ``"max_depth"``, ``"max_config_bytes"``), ``value`` is its value and
    ``path`` the source.
    """

    def __init__(self, message: str, *, limit: str, value: int, path: str | None = None) -> None:
        self.limit = limit
        self.value = value
        super().__init__(message, path=path)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_install_limit, (str(self), self.limit, self.value, self.path))


def _rebuild_install_limit(
    message: str, limit: str, value: int, path: str | None
) -> InstallLimitError:
    return InstallLimitError(message, limit=limit, value=value, path=path)


class InvalidReferenceError(PluginError, ValueError):
    """A plugin name or reference does not follow Docker's grammar."""


class RuntimeStartError(PluginError):
    """A runtime could not start a plugin (it exited early, or never listened).

    ``exit_code`` is the process's exit status when it died, ``stderr_tail``
    the last lines it wrote to stderr.
    """

    def __init__(
        self, message: str, *, exit_code: int | None = None, stderr_tail: str = ""
    ) -> None:
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        super().__init__(message)


class RootInUseError(PluginError):
    """Another live :class:`~pluginkit.Manager` holds the root directory."""


def _json_error_reason(exc: Exception) -> str:
    """Say why JSON could not be decoded or encoded (a RecursionError's own text is about Python).

    The client, the legacy registry and the SDK server word their errors with it.
    """
    return "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)


# Errors are raised from deep inside pluginkit, often before anyone touched
# ``pluginkit.X`` (whose first access would publish it): name their public
# home here, so that every traceback says ``pluginkit.ErrNotFound``.
for _error in (
    PluginError,
    ErrNotFound,
    ErrDisabled,
    ErrInadequateCapability,
    PluginCallError,
    PluginProtocolError,
    PluginConnectionError,
    PluginTimeoutError,
    PluginInUseError,
    PluginEnabledError,
    PluginDisabledError,
    PluginExistsError,
    PrivilegesNotGrantedError,
    InvalidConfigError,
    InvalidArchiveError,
    InstallLimitError,
    InvalidReferenceError,
    RuntimeStartError,
    RootInUseError,
):
    _error.__module__ = "pluginkit"
del _error
