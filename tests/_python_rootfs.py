"""A plugin rootfs holding this machine's Python and pluginkit, for Docker-managed plugin tests.

The real code is :mod:`pluginkit.distribution._build` (``pluginkit build``);
this module keeps the tests' import path.
"""

from __future__ import annotations

from pluginkit.distribution._build import SITE, build_python_rootfs

__all__ = ["SITE", "build_python_rootfs"]
