"""The pluginkit daemon: a supervising Manager that speaks Docker's plugin API.

``pluginkit daemon`` (or :class:`Daemon` embedded in a program) holds the
:class:`~pluginkit.Manager` of a root, restores and supervises its plugins,
and serves Docker's Engine API plugin endpoints (``docker plugin ...`` and
docker-py work against it) plus pluginkit's own under ``/pluginkit/v1/``.

This package is imported by the ``pluginkit`` command on its way to a
running daemon, so its ``__init__`` imports nothing heavy: :class:`Daemon`
and :class:`DaemonTLS` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._listen import DaemonTLS
    from ._notify import sd_notify
    from ._server import Daemon

__all__ = ["Daemon", "DaemonTLS", "sd_notify"]

_LAZY = {"Daemon": "._server", "DaemonTLS": "._listen", "sd_notify": "._notify"}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
