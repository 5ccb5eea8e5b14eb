"""pytest fixtures for testing code that hosts or implements plugins.

Installing pluginkit registers this module with pytest (entry point
``pytest11``). It only defines fixtures, all named ``pluginkit_*``: a test
gets one by asking for it by name, and a suite that asks for none is not
touched: no options, no hooks, no markers (the fixtures import pluginkit's
runtime, manager and SDK parts only when used).

- ``pluginkit_runtime``: a :class:`pluginkit.testing.FakeRuntime`, shut down
  (every fake plugin stopped) after the test.
- ``pluginkit_manager``: a :class:`pluginkit.Manager` on a temporary root
  using ``pluginkit_runtime``, with a short private ``run_root`` (unix socket
  paths must fit in 107 bytes), no legacy registry and restarts after 10 ms;
  closed and removed after the test.
- ``pluginkit_serve``: a function ``pluginkit_serve(plugin, *, threads=0)``
  serving an SDK :class:`~pluginkit.sdk.PluginServer` or typed driver on a
  private unix socket and returning a :class:`pluginkit.Client` of it (see
  :func:`pluginkit.testing.serve_plugin`); everything served is stopped
  after the test.

Without the entry point (pluginkit not installed, only importable), enable
it with ``-p pluginkit.pytest_plugin`` or ``pytest_plugins =
["pluginkit.pytest_plugin"]`` in a top-level ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from . import Client, Manager
    from .sdk import Driver, PluginServer
    from .testing import FakeRuntime

__all__ = ["Serve", "pluginkit_manager", "pluginkit_runtime", "pluginkit_serve"]


class Serve(Protocol):
    """The type of the ``pluginkit_serve`` fixture, for annotating tests."""

    def __call__(self, plugin: Driver | PluginServer, *, threads: int = 0) -> Client:
        """Serve ``plugin`` until the test ends; return a client of it."""
        ...


@pytest.fixture
def pluginkit_runtime() -> Iterator[FakeRuntime]:
    """Yield a :class:`~pluginkit.testing.FakeRuntime`, shut down after the test."""
    from .testing import FakeRuntime

    with FakeRuntime() as runtime:
        yield runtime


@pytest.fixture
def pluginkit_manager(pluginkit_runtime: FakeRuntime) -> Iterator[Manager]:
    """Yield a :class:`~pluginkit.Manager` on a temporary root with ``pluginkit_runtime``."""
    from . import Manager, RestartPolicy

    # /tmp, not tmp_path: the plugins' unix socket paths must fit in 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    try:
        with Manager(
            directory / "root",
            run_root=directory / "run",
            runtime=pluginkit_runtime,
            legacy=None,
            restart_policy=RestartPolicy(initial_delay=0.01),
        ) as manager:
            yield manager
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pluginkit_serve() -> Iterator[Serve]:
    """Yield a function serving SDK plugins until the test ends; it returns a client."""
    from .testing import serve_plugin

    with contextlib.ExitStack() as stack:

        def serve(plugin: Driver | PluginServer, *, threads: int = 0) -> Client:
            return stack.enter_context(serve_plugin(plugin, threads=threads))

        yield serve
