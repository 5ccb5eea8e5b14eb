"""Runtimes: what actually runs managed plugins.

- :class:`DockerRuntime` runs each plugin as a container (the default).
- :class:`ProcessRuntime` runs each plugin as a host process.
- :class:`pluginkit.testing.FakeRuntime` serves plugins in-process, for tests.

Any object with the methods of :class:`Runtime` can be given to a Manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._public import publish
from ._base import (
    ExitCallback,
    PluginExit,
    Runtime,
    RuntimeDevice,
    RuntimeMount,
    RuntimeSpec,
    SupportsCleanup,
    SupportsPrepare,
)
from ._proclog import OutputStats

if TYPE_CHECKING:
    from .docker import DockerRuntime
    from .process import ProcessRuntime

__all__ = [
    "DockerRuntime",
    "ExitCallback",
    "OutputStats",
    "PluginExit",
    "ProcessRuntime",
    "Runtime",
    "RuntimeDevice",
    "RuntimeMount",
    "RuntimeSpec",
    "SupportsCleanup",
    "SupportsPrepare",
]


def __getattr__(name: str) -> Any:
    # Imported lazily: the Docker SDK (and requests) take a noticeable time to
    # import, and most programs need only one runtime.
    if name == "DockerRuntime":
        from .docker import DockerRuntime

        return DockerRuntime
    if name == "ProcessRuntime":
        from .process import ProcessRuntime

        return ProcessRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


publish(globals())
