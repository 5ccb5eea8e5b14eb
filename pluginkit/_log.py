"""The ``pluginkit`` logger's :class:`logging.NullHandler`, for every module that logs.

A library must not print on its own: plugin output (logger
``pluginkit.plugin``) and pluginkit's own logs reach the application's
handlers, and nothing at all when logging is not configured (no
``logging.lastResort`` on stderr). ``import pluginkit`` does not import
:mod:`logging` (a command answered by the daemon never logs, and the import
costs it several milliseconds), so each module that logs imports this one
first: the handler is in place before any of its records can be emitted.
"""

from __future__ import annotations

import logging

__all__ = ["ROOT"]

ROOT = logging.getLogger("pluginkit")
"""The package's logger; every pluginkit logger is below it."""

if not any(isinstance(h, logging.NullHandler) for h in ROOT.handlers):
    ROOT.addHandler(logging.NullHandler())
