"""The fleet agent: runs on every node (a task of a global Swarm service) and makes it so.

It reads the fleet spec that Swarm mounts into its container (a config
object), holds a :class:`~pluginkit.Manager` on the node (plugins run as
containers of the node's engine, through ``/var/run/docker.sock``), and
every few seconds:

- installs from the registry every plugin of the spec that is missing or
  whose reference or settings changed (a changed one is replaced; the rolling
  update of the agent service makes that happen one node at a time), and
  enables it;
- disables and removes plugins that left the spec;
- keeps ``/run/docker/plugins/NAME.sock`` (where the node's engine finds
  plugins) a link to each enabled plugin's stable socket, and removes the
  links of plugins it removed, so no stale socket confuses the engine;
- prints one status line (``pluginkit-fleet-status {json}``) that
  ``pluginkit fleet status`` reads back through Swarm (the service's logs).

The manager runs with live restore: an agent that is killed or updated
leaves the plugins running, and the next agent task on the node adopts them
(found by their container labels) instead of starting a second copy. A
plugin that crashes is restarted by the manager's restart policy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import PluginError
from ._spec import FleetPlugin, FleetSpec, parse_spec

if TYPE_CHECKING:
    from .._manager import Manager
    from ..runtime import Runtime

__all__ = ["STATUS_PREFIX", "Agent"]

log = logging.getLogger("pluginkit.fleet.agent")

STATUS_PREFIX = "pluginkit-fleet-status "
"""What starts the agent's status lines in its output (the service's logs)."""

_APPLIED_FILE = "fleet-applied.json"


class Agent:
    """One node's agent.

    Args:
        spec_path: The fleet spec (JSON, as :meth:`FleetSpec.to_json`).
        root: The manager's root (on the node: survives agent restarts).
        run_root: The plugins' sockets (on the node, same path in the agent).
        plugins_dir: Where the node's engine looks for plugin sockets.
        node: The node's name, for the status line.
        runtime: The plugins' runtime (default: the node's engine).
        interval: Seconds between two reconciliations.
        ready_file: Touched once every plugin of the spec is enabled (the
            agent container's health check looks for it).
    """

    def __init__(
        self,
        spec_path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] = "/var/lib/pluginkit/fleet",
        run_root: str | os.PathLike[str] = "/run/pluginkit",
        plugins_dir: str | os.PathLike[str] = "/run/docker/plugins",
        node: str | None = None,
        runtime: Runtime | None = None,
        interval: float = 5.0,
        ready_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.spec_path = Path(spec_path)
        self.root = Path(root)
        self.run_root = Path(run_root)
        self.plugins_dir = Path(plugins_dir)
        self.node = node or os.environ.get("PLUGINKIT_NODE") or socket.gethostname()
        self.task = os.environ.get("PLUGINKIT_TASK", "")
        self.interval = interval
        self.ready_file = Path(ready_file) if ready_file is not None else None
        self._runtime = runtime
        self._errors: dict[str, str] = {}
        self.stopping = threading.Event()

    # -- the loop -------------------------------------------------------------

    def run(self) -> None:
        """Reconcile until :attr:`stopping` is set; leave the plugins running (live restore)."""
        from .._manager import Manager

        spec = self._read_spec()
        manager = Manager(
            self.root,
            runtime=self._runtime,
            run_root=self.run_root,
            live_restore=True,
            legacy=None,
        )
        try:
            while not self.stopping.is_set():
                status = self.reconcile(manager, spec)
                self._report(status, spec)
                if not spec.plugins and not status:
                    self._forget(manager)
                    manager = None  # type: ignore[assignment]
                    self._idle()
                    return
                self.stopping.wait(self.interval)
        finally:
            if manager is not None:
                manager.shutdown()

    def reconcile(self, manager: Manager, spec: FleetSpec) -> dict[str, dict[str, Any]]:
        """Make the node run what ``spec`` says; return each plugin's status by name."""
        applied = self._read_applied()
        installed = {p.name: p for p in manager.list()}
        for name, want in spec.plugins.items():
            try:
                self._ensure(manager, want, installed.get(f"{name}:latest"), applied)
                self._errors.pop(name, None)
            except PluginError as exc:
                log.error("plugin %s: %s", name, exc)
                self._errors[name] = str(exc)
        for full in installed:
            name = full.removesuffix(":latest")
            if name in spec.plugins:
                continue
            self._unlink(name)
            try:
                manager.remove(full, force=True)
                applied.pop(name, None)
                self._errors.pop(name, None)
                log.info("removed plugin %s (not in the fleet spec any more)", name)
            except PluginError as exc:
                self._errors[name] = str(exc)
        self._write_applied(applied)
        return self._status(manager, spec)

    def _ensure(
        self,
        manager: Manager,
        want: FleetPlugin,
        plugin: Any,
        applied: dict[str, Any],
    ) -> None:
        record = {"reference": want.reference, "settings": list(want.settings)}
        if plugin is not None and applied.get(want.name) != record:
            # Changed reference or settings: replace it (a node at a time,
            # since Swarm updates the agents one after the other).
            log.info("replacing plugin %s: the fleet spec changed", want.name)
            self._unlink(want.name)
            manager.remove(plugin.name, force=True)
            applied.pop(want.name, None)
            plugin = None
        if plugin is None:
            log.info("installing plugin %s from %s", want.name, want.reference)
            manager.install(
                want.reference,
                name=want.name,
                grant=True if want.grant_all_permissions else None,
            )
            if want.settings:
                manager.set(want.name, list(want.settings))
            applied[want.name] = record
            plugin = manager.get(want.name)
        if not plugin.enabled:
            manager.enable(want.name)
        address = plugin.stable_address
        if address is not None:
            self._link(want.name, address.removeprefix("unix://"))

    def _status(self, manager: Manager, spec: FleetSpec) -> dict[str, dict[str, Any]]:
        status: dict[str, dict[str, Any]] = {}
        for plugin in manager.list():
            name = plugin.name.removesuffix(":latest")
            want = spec.plugins.get(name)
            status[name] = {
                "reference": plugin.plugin_reference,
                "digest": _digest(manager, plugin.id),
                "enabled": plugin.enabled,
                "health": getattr(plugin, "health", None),
                "error": self._errors.get(name, ""),
                "wanted": want is not None,
            }
        for name in spec.plugins:
            if name not in status:
                status[name] = {
                    "reference": spec.plugins[name].reference,
                    "digest": "",
                    "enabled": False,
                    "health": None,
                    "error": self._errors.get(name, "not installed yet"),
                    "wanted": True,
                }
        return status

    def _report(self, status: dict[str, dict[str, Any]], spec: FleetSpec) -> None:
        line = {
            "node": self.node,
            "task": self.task,
            "spec": spec.digest,
            "time": time.time(),
            "plugins": status,
        }
        sys.stdout.write(STATUS_PREFIX + json.dumps(line, sort_keys=True) + "\n")
        sys.stdout.flush()
        ready = all(
            status.get(name, {}).get("enabled") and not status[name]["error"]
            for name in spec.plugins
        )
        if self.ready_file is not None:
            if ready:
                self.ready_file.touch()
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.ready_file.unlink()

    def _forget(self, manager: Manager) -> None:
        """Leave nothing of pluginkit on the node (the spec is empty, every plugin gone)."""
        manager.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root.parent / _APPLIED_FILE).unlink()
        log.info("no plugins in the fleet spec: the node is clean")

    def _idle(self) -> None:
        while not self.stopping.wait(self.interval):
            self._report({}, self._read_spec())

    # -- files ----------------------------------------------------------------

    def _read_spec(self) -> FleetSpec:
        try:
            data = json.loads(self.spec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PluginError(f"cannot read the fleet spec {self.spec_path}: {exc}") from exc
        return parse_spec(data, source=str(self.spec_path))

    def _read_applied(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root.parent / _APPLIED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_applied(self, applied: dict[str, Any]) -> None:
        from .._store import atomic_write

        path = self.root.parent / _APPLIED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(applied, sort_keys=True).encode())

    def _link(self, name: str, target: str) -> None:
        from .._stable import link_stable

        self.plugins_dir.mkdir(parents=True, exist_ok=True)
        link_stable(str(self.plugins_dir / f"{name}.sock"), target)

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.plugins_dir / f"{name}.sock").unlink()


def _digest(manager: Manager, plugin_id: str | None) -> str:
    if plugin_id is None:
        return ""
    try:
        from ..distribution._ops import distribution_info
    except ImportError:  # pragma: no cover - the distribution package is part of pluginkit
        return ""
    return str(distribution_info(manager, plugin_id).get("ManifestDigest", ""))
