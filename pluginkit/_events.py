"""What a :class:`~pluginkit.Manager` reports to its ``on_event`` callback."""

from __future__ import annotations

import attrs

__all__ = ["PluginEvent"]


@attrs.frozen
class PluginEvent:
    """Something happened to a managed plugin.

    Attributes:
        id: the plugin's 64-hex id.
        name: its name (``name:tag``).
        action: one of ``create``, ``install``, ``enable``, ``disable``,
            ``remove``, ``set``, ``exit`` (it stopped on its own) and
            ``restart`` (it was started again after an exit).
        time: when it happened, seconds since the epoch (:func:`time.time`).
    """

    id: str
    name: str
    action: str
    time: float
