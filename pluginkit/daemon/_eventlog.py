"""The daemon's event log: plugin events in Docker's format, for ``GET /events``.

Like dockerd's ``daemon/events``, the last events are kept in memory (a
bounded ring) for ``since``; subscribers get new events as they happen.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

from .._events import PluginEvent
from ._api import Filters

__all__ = ["EventLog", "matches"]

KEEP = 1024
"""How many past events are kept for ``since`` (dockerd keeps 256)."""


def message(event: PluginEvent) -> dict[str, Any]:
    """Turn a :class:`PluginEvent` into Docker's ``events.Message`` JSON (type plugin)."""
    nanos = int(event.time * 1e9)
    return {
        "Type": "plugin",
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": {"name": event.name}},
        "scope": "local",
        "time": nanos // 1_000_000_000,
        "timeNano": nanos,
    }


def matches(filters: Filters, msg: dict[str, Any]) -> bool:
    """Apply dockerd's ``events.Filter.Include`` to one plugin event."""
    action = msg["Action"]
    actor = msg["Actor"]
    name = actor["Attributes"].get("name", "")
    if filters.get("event") & {"health_status", "exec_create", "exec_start"}:
        if not filters.fuzzy("event", action):
            return False
    elif not filters.exact("event", action):
        return False
    if not filters.exact("type", msg["Type"]):
        return False
    if filters.contains("scope") and not filters.exact("scope", msg["scope"]):
        return False
    for other in ("container", "daemon", "volume", "network", "service", "node", "secret"):
        if filters.contains(other):
            return False
    if filters.contains("config") or filters.contains("image"):
        return False
    if not (filters.fuzzy("plugin", actor["ID"]) or filters.fuzzy("plugin", name)):
        return False
    if filters.contains("label"):
        return _labels_match(filters.get("label"), actor["Attributes"])
    return True


def _labels_match(wanted: set[str], attributes: dict[str, str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in attributes or (sep and attributes[key] != value):
            return False
    return True


class EventLog:
    """Past events (bounded) and a condition new ones are announced on."""

    def __init__(self, keep: int = KEEP) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self._cond = threading.Condition()
        self._seq = 0
        self._closed = False

    def publish(self, event: PluginEvent) -> None:
        """Record an event (the Manager's ``on_event`` callback)."""
        msg = message(event)
        with self._cond:
            self._seq += 1
            self._events.append(msg)
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every subscriber and end their streams."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def past(self, since: float | None, until: float | None, filters: Filters) -> list[Any]:
        """Return the kept events in ``[since, until]`` that pass ``filters``."""
        with self._cond:
            events = list(self._events)
        return [m for m in events if _in_range(m, since, until) and matches(filters, m)]

    def follow(
        self, since: float | None, until: float | None, filters: Filters, stop: threading.Event
    ) -> Iterator[dict[str, Any] | None]:
        """Yield past events, then new ones until ``until``, ``stop`` or close.

        Past events only with ``since`` or ``until``, as dockerd's
        ``loadBufferedEvents``: a plain ``docker events`` shows new ones only.
        ``None`` is yielded about once a second while nothing happens, so the
        caller can notice a client that went away.
        """
        with self._cond:
            backlog = list(self._events) if since is not None or until is not None else []
            seq = self._seq
        for msg in backlog:
            if _in_range(msg, since, until) and matches(filters, msg):
                yield msg
        if until is not None and until < time.time():
            return
        while not stop.is_set():
            wait = 1.0
            if until is not None:
                wait = min(wait, until - time.time())
                if wait <= 0:
                    return
            with self._cond:
                if self._seq == seq and not self._closed:
                    self._cond.wait(wait)
                if self._closed:
                    return
                fresh = self._seq - seq
                new = list(self._events)[-fresh:] if fresh else []
                seq = self._seq
            if not new:
                yield None
            for msg in new:
                if _in_range(msg, since, until) and matches(filters, msg):
                    yield msg


def _in_range(msg: dict[str, Any], since: float | None, until: float | None) -> bool:
    t = msg["timeNano"] / 1e9
    return (since is None or t >= since) and (until is None or t <= until)
