"""How much one install may write: :class:`InstallLimits` and the budget that enforces it."""

from __future__ import annotations

import attrs

from ._errors import InstallLimitError

__all__ = ["Budget", "InstallLimits"]


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"InstallLimits.{attribute.name} must be an int > 0, got {value!r}")


@attrs.frozen
class InstallLimits:
    """Bounds on what installing one plugin may write, whatever its source.

    A tar archive of a few megabytes can unpack to gigabytes (or to millions
    of empty files); a plugin directory can nest deeper than the tools that
    walk it. An install that passes a limit fails with
    :class:`~pluginkit.InstallLimitError` naming the limit, and leaves
    nothing behind. Pass ``Manager(install_limits=InstallLimits(...))`` to
    change them.

    Attributes:
        max_bytes: total size of the regular files of the plugin directory
            (``config.json`` and ``rootfs/``), unpacked. Default 1 GiB.
        max_entries: number of files, directories and links. Default 100,000.
        max_depth: how deeply directories nest under the plugin directory.
            Default 256.
        max_config_bytes: size of ``config.json``. Default 1 MiB.
    """

    max_bytes: int = attrs.field(default=1 << 30, validator=_positive)
    max_entries: int = attrs.field(default=100_000, validator=_positive)
    max_depth: int = attrs.field(default=256, validator=_positive)
    max_config_bytes: int = attrs.field(default=1 << 20, validator=_positive)


class Budget:
    """What one install has written so far, checked against its limits."""

    __slots__ = ("bytes", "entries", "limits", "path", "source")

    def __init__(self, limits: InstallLimits, source: str, path: str) -> None:
        self.limits = limits
        self.source = source  # how messages name it: "archive PATH"
        self.path = path
        self.bytes = 0
        self.entries = 0

    def add(self, size: int = 0) -> None:
        """Count one more entry holding ``size`` bytes; raise when a limit is passed."""
        self.entries += 1
        self.bytes += size
        limits = self.limits
        if self.entries > limits.max_entries:
            raise InstallLimitError(
                f"{self.source} holds more than {limits.max_entries} files, directories and"
                " links (InstallLimits.max_entries)",
                limit="max_entries",
                value=limits.max_entries,
                path=self.path,
            )
        if self.bytes > limits.max_bytes:
            raise InstallLimitError(
                f"{self.source} unpacks to more than {limits.max_bytes} bytes"
                " (InstallLimits.max_bytes)",
                limit="max_bytes",
                value=limits.max_bytes,
                path=self.path,
            )

    def check_depth(self, depth: int, name: str) -> None:
        """Refuse ``name`` when it lies ``depth`` directories deep, more than allowed."""
        if depth > self.limits.max_depth:
            raise InstallLimitError(
                f"{self.source}: {_short(name)} is nested more than {self.limits.max_depth}"
                " directories deep (InstallLimits.max_depth)",
                limit="max_depth",
                value=self.limits.max_depth,
                path=self.path,
            )


def _short(name: str, keep: int = 120) -> str:
    """``name`` quoted, its middle cut when it is very long (a message must stay readable)."""
    if len(name) <= keep:
        return repr(name)
    return repr(name[: keep // 2] + "..." + name[-keep // 2 :])
