"""A plugin rootfs holding this machine's Python and pluginkit (see ``pluginkit._pyrootfs``)."""

from pluginkit._pyrootfs import SITE, build_python_rootfs

__all__ = ["SITE", "build_python_rootfs"]
