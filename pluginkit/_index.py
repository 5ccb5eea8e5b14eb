"""The Manager's lookup index: updated one plugin at a time, read without the manager's lock.

Two tables:

- ``hits``: every key a lookup may use (name, ``name`` without ``:latest``,
  id) -> ``(capabilities, state, entry)``. A plain dict updated in place:
  single ``get``/``set``/``del`` calls are atomic in CPython, so lookups read
  it without any lock and see a plugin's old or new hit, never a mix.
- per capability, the running plugins that have it, in the order the
  plugins were installed; :meth:`LookupIndex.running` returns them as a
  tuple built on first use after a change and cached until the next one.

A change to one plugin costs the same whether 10 or 10,000 are installed
(the issue this replaces: every change rebuilt both tables under the
manager's lock, so restoring N plugins took O(N^2)). The writer holds the
manager's lock; the small internal lock only orders the capability tables
against readers building a tuple (manager lock, then this one).
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from ._plugin import Plugin

__all__ = ["DISABLED", "DOWN", "RUNNING", "Hit", "LookupIndex"]

# Lookup states kept in each hit.
RUNNING = 0
DISABLED = 1
DOWN = 2  # enabled, but not running right now (starting, crashed, restarting)

E = TypeVar("E")

Hit = tuple[frozenset[str], int, Any]
"""What the index holds per key: capabilities, state, the manager's entry."""

_NONE: frozenset[str] = frozenset()


class LookupIndex(Generic[E]):
    """Lookup keys and running-by-capability lists, updated per plugin (see the module doc)."""

    def __init__(self) -> None:
        self.hits: dict[str, tuple[frozenset[str], int, E]] = {}
        self._keys: dict[str, tuple[str, ...]] = {}  # id -> its keys in hits
        self._serial: dict[str, int] = {}  # id -> install order
        self._next_serial = 0
        self._listed: dict[str, frozenset[str]] = {}  # id -> capabilities it is running under
        self._running: dict[str, dict[str, tuple[int, Plugin]]] = {}  # cap -> id -> plugin
        self._tuples: dict[str, tuple[Plugin, ...]] = {}  # cap -> cached running list
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def set(
        self,
        plugin_id: str,
        keys: tuple[str, ...],
        hit: tuple[frozenset[str], int, E],
        plugin: Plugin,
    ) -> None:
        """Record a plugin's state under ``keys``; list it by capability when it runs."""
        old_keys = self._keys.get(plugin_id)
        if old_keys is not None and old_keys != keys:
            self._drop_keys(old_keys, hit[2])
        if plugin_id not in self._serial:
            self._serial[plugin_id] = self._next_serial
            self._next_serial += 1
        self._keys[plugin_id] = keys
        hits = self.hits
        for key in keys:
            hits[key] = hit
        caps, state, _ = hit
        self._list(plugin_id, caps if state == RUNNING else _NONE, plugin)

    def drop(self, plugin_id: str, entry: E) -> None:
        """Forget a plugin (removed): its keys (those still naming ``entry``) and listings."""
        keys = self._keys.pop(plugin_id, None)
        if keys is not None:
            self._drop_keys(keys, entry)
        self._list(plugin_id, _NONE, None)
        self._serial.pop(plugin_id, None)
        self._listed.pop(plugin_id, None)

    def clear(self) -> None:
        """Forget everything (a shut-down manager looks nothing up)."""
        with self._lock:
            self.hits.clear()
            self._keys.clear()
            self._serial.clear()
            self._listed.clear()
            self._running.clear()
            self._tuples.clear()

    def running(self, capability: str) -> tuple[Plugin, ...]:
        """Return the running plugins with ``capability`` (lower-case), in install order."""
        cached = self._tuples.get(capability)
        if cached is not None:
            return cached
        with self._lock:
            members = self._running.get(capability)
            if not members:
                return ()  # not cached: callers may ask for any string
            cached = self._tuples.get(capability)
            if cached is None:
                ordered = sorted(members.values(), key=lambda item: item[0])
                cached = self._tuples[capability] = tuple(p for _, p in ordered)
            return cached

    def _drop_keys(self, keys: tuple[str, ...], entry: E) -> None:
        hits = self.hits
        for key in keys:
            hit = hits.get(key)
            if hit is not None and hit[2] is entry:
                del hits[key]

    def _list(self, plugin_id: str, caps: frozenset[str], plugin: Plugin | None) -> None:
        was = self._listed.get(plugin_id, _NONE)
        if caps == was:
            return
        with self._lock:
            for cap in was - caps:
                members = self._running.get(cap)
                if members is not None:
                    members.pop(plugin_id, None)
                    if not members:
                        del self._running[cap]
                self._tuples.pop(cap, None)
            if caps and plugin is not None:
                serial = self._serial[plugin_id]
                for cap in caps - was:
                    self._running.setdefault(cap, {})[plugin_id] = (serial, plugin)
                    self._tuples.pop(cap, None)
        self._listed[plugin_id] = caps
