"""DockerRuntime: each managed plugin runs as a container of a Docker engine.

The plugin's ``rootfs/`` is imported once as a local image (tagged from the
plugin id and a content hash of the rootfs, so an unchanged rootfs is never
imported twice), and one container per plugin is created from it with the
spec's entrypoint, args, env, mounts, devices, capabilities and namespaces.
The host directory where the plugin's socket must appear is bind-mounted at
``/run/docker/plugins``, exactly where Docker's own plugins find it.

A container is kept (stopped) after a disable and started again on the next
enable while the spec and rootfs are unchanged, so an enable costs one
``docker start``. Every container and image the runtime creates carries the
label ``pluginkit.plugin.id=<id>``; that label is how :meth:`DockerRuntime.restore`
finds a container that outlived its manager and how :meth:`DockerRuntime.cleanup`
finds leftovers of removed plugins.

Exits are seen by a watcher thread per plugin (the engine's ``wait`` call) and
reported by the runtime's exit dispatcher thread; the plugin's stdout/stderr
are streamed (``attach``) into the logger ``pluginkit.plugin``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import socket
import stat
import struct
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import PluginError, RuntimeStartError
from ._base import ExitCallback, PluginExit, RuntimeMount, RuntimeSpec
from ._dispatch import ExitDispatcher
from ._plugin_log import LineForwarder

__all__ = ["DockerRuntime", "ImportProgress"]

LABEL_ID = "pluginkit.plugin.id"
"""Label carried by every container and image the runtime creates: the plugin id."""
LABEL_NAME = "pluginkit.plugin.name"
LABEL_SPEC = "pluginkit.spec"
LABEL_STATE_DIR = "pluginkit.state-dir"
LABEL_PROPAGATED = "pluginkit.propagated-mount-source"
LABEL_ROOTFS = "pluginkit.rootfs"

SOCKET_DIR_IN_CONTAINER = "/run/docker/plugins"

_log = logging.getLogger("pluginkit.runtime.docker")
_plugin_log = logging.getLogger("pluginkit.plugin")

# How long one engine `wait` call may block before the watcher re-checks
# whether the runtime was closed: bounds close() latency, not exit detection
# (a wait returns as soon as the container stops).
_WAIT_SLICE = 1.0
# After SIGKILL, how long to wait for the engine to report the exit.
_KILL_WAIT = 10.0
_STDERR_TAIL_LINES = 20
_CHUNK = 1 << 20
_IMAGE_CACHE_FILE = "docker-image.json"


@attrs.frozen
class ImportProgress:
    """Progress of importing a plugin's rootfs as an image (for a CLI's progress bar).

    Attributes:
        plugin_id: The plugin whose rootfs is imported.
        name: The plugin's name.
        done: Bytes of the rootfs archive sent to the engine so far.
        total: Size of the whole archive in bytes.
    """

    plugin_id: str
    name: str
    done: int
    total: int


ProgressCallback = Callable[[ImportProgress], None]


@attrs.define(eq=False)
class _Run:
    """One run of one plugin's container, from start (or restore) to exit."""

    spec: RuntimeSpec
    container_id: str
    on_exit: ExitCallback
    log_sock: Any = None
    log_thread: threading.Thread | None = None
    watcher: threading.Thread | None = None
    exited: threading.Event = attrs.Factory(threading.Event)
    detached: threading.Event = attrs.Factory(threading.Event)
    stderr_tail: deque[str] = attrs.Factory(lambda: deque(maxlen=_STDERR_TAIL_LINES))


class DockerRuntime:
    """Run each managed plugin as a container of a Docker engine.

    Args:
        client: A ``docker.DockerClient``; by default one from the environment
            (``DOCKER_HOST`` etc., as ``docker.from_env()``), checked with a
            ping so that a missing engine fails here, clearly.
        on_progress: Called while a rootfs is imported as an image (that
            happens at the first start of a plugin and after its rootfs
            changes); the same progress is logged on ``pluginkit.runtime.docker``.
        stdout_level: Log level of the plugin's stdout lines that say none.
        stderr_level: Log level of the plugin's stderr lines that say none
            (``INFO``: most programs write all their logging to stderr). A
            line that says its level (``INFO:name:...``, ``WARNING ...``,
            logrus's ``level=info msg=...``) is logged at that level,
            without the prefix.

    Raises:
        PluginError: No Docker engine answers (the message names
            ``DOCKER_HOST`` / the socket and points at ``ProcessRuntime``).

    Network types map to Docker network modes: ``host`` as it is; ``""``,
    ``none``, ``null`` and ``bridge`` - the types that need no network
    privilege - to ``none``, a fresh namespace with only loopback, which is
    what the engine gives such plugins (created with networking disabled,
    which starts faster); any other value to the Docker network of that name
    (the engine itself does not connect plugins to named networks).
    ``allow_all_devices`` becomes the device cgroup rule ``a *:* rwm``.
    Exit codes above 128 are reported as ``-(code - 128)`` (killed by that
    signal), as :mod:`subprocess` does.

    Plugin output is streamed from the container (``attach``) to the logger
    ``pluginkit.plugin``, one record per line, the message being the line
    itself, with ``extra={"plugin": id, "plugin_name": name, "stream":
    "stdout" | "stderr"}``, like :class:`~pluginkit.runtime.ProcessRuntime`.
    The engine keeps the container's own log too (``docker logs``). The last
    lines of stderr are kept for :attr:`PluginExit.stderr_tail`.

    ``on_exit`` is called from the runtime's exit dispatcher thread (one
    exit after the other), once per exit, after the container's last output
    has been logged. Each running plugin has two daemon threads: the
    watcher, blocked in the engine's ``wait`` (re-issued every second so
    that :meth:`close` is prompt), and the log pump reading the attach stream.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        on_progress: ProgressCallback | None = None,
        stdout_level: int = logging.INFO,
        stderr_level: int = logging.INFO,
    ) -> None:
        self._owns_client = client is None
        self._client: Any = _connect() if client is None else client
        self._api: Any = self._client.api
        self._on_progress = on_progress
        self._levels = {1: stdout_level, 2: stderr_level}
        self._lock = threading.Lock()
        self._plugin_locks: dict[str, threading.Lock] = {}
        self._runs: dict[str, _Run] = {}
        self._closed = False
        self._exits = ExitDispatcher("pluginkit-docker-exits", _log)
        self._engine: str | None = None
        if _log.isEnabledFor(logging.DEBUG):
            _ = self.engine  # says which engine answers (Docker or Podman), once

    @property
    def engine(self) -> str:
        """The engine that answers, e.g. ``"Docker Engine 20.10.24"`` or ``"Podman Engine 4.3.1"``.

        Asked once (``GET /version``) and logged at DEBUG level the first
        time; ``"unknown engine"`` when the engine does not say.
        """
        if self._engine is None:
            self._engine = _engine_name(self._api)
            _log.debug("DockerRuntime talks to %s", self._engine)
        return self._engine

    @property
    def is_podman(self) -> bool:
        """Tell whether the engine is Podman (through its Docker-compatible API)."""
        return self.engine.startswith("Podman")

    # -- the Runtime protocol -------------------------------------------------

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        """Start the plugin's container (importing the image / creating the container if needed).

        Returns once the engine has started the container; the plugin may not
        listen yet.

        Raises:
            RuntimeStartError: The rootfs cannot be imported, a mount source
                or device is missing, or the engine refuses the container.
        """
        self._check_open()
        with self._plugin_lock(spec.id):
            current = self._runs.get(spec.id)
            if current is not None and not current.exited.is_set():
                raise RuntimeStartError(f"plugin {spec.name} is already running")
            container_id = self._prepare(spec)
            # A socket left by the previous run would only refuse connections.
            with contextlib.suppress(OSError):
                spec.socket_path.unlink()
            run = _Run(spec=spec, container_id=container_id, on_exit=on_exit)
            # Attach before starting so that no early output is lost.
            self._attach_logs(run)
            try:
                self._api.start(container_id)
            except docker.errors.APIError as exc:
                self._close_logs(run)
                raise RuntimeStartError(
                    f"Docker could not start the container of plugin {spec.name}: {_explain(exc)}"
                ) from exc
            except requests.exceptions.RequestException as exc:
                self._close_logs(run)
                raise RuntimeStartError(
                    f"Docker could not start the container of plugin {spec.name}: {exc}"
                ) from exc
            self._supervise(run)
            _log.info("started plugin %s in container %s", spec.name, container_id[:12])

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        """Stop the plugin: SIGTERM, SIGKILL after ``grace`` seconds; return once it exited.

        The exit is reported to ``on_exit`` from the runtime's dispatcher thread,
        just before or just after this returns (it is not waited for). The
        container is kept, stopped, so that the next start is fast. Stopping
        a plugin that is not running is a no-op.
        """
        with self._plugin_lock(plugin_id):
            run = self._runs.get(plugin_id)
            if run is None or run.exited.is_set():
                # Not supervised by us (e.g. never restored): stop it anyway if
                # a labelled container runs, since the label proves it is the plugin.
                for container in self._containers(plugin_id, running_only=True):
                    self._stop_unsupervised(container["Id"], grace)
            else:
                self._signal(run.container_id, "SIGTERM")
                if not run.exited.wait(grace):
                    _log.warning(
                        "plugin %s did not stop within %.1fs of SIGTERM; sending SIGKILL",
                        run.spec.name,
                        grace,
                    )
                    self._signal(run.container_id, "SIGKILL")
                    if not run.exited.wait(_KILL_WAIT):
                        _log.error("plugin %s did not exit after SIGKILL", run.spec.name)

    def is_running(self, plugin_id: str) -> bool:
        """Tell whether the plugin's container is running."""
        with self._lock:
            run = self._runs.get(plugin_id)
        if run is not None:
            return not run.exited.is_set()
        return bool(self._containers(plugin_id, running_only=True))

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        """Re-attach to the plugin's running container, found by its label (live restore).

        Returns:
            ``True`` when a container of the plugin runs and is supervised
            again (no new container is created), ``False`` when none runs.
            Stopped containers of the plugin are kept only if they match the
            spec (to be started by the next :meth:`start`); others are removed.
        """
        self._check_open()
        with self._plugin_lock(spec.id):
            current = self._runs.get(spec.id)
            if current is not None and not current.exited.is_set():
                current.on_exit = on_exit  # supervised already: report to the new caller
                return True
            containers = self._containers(spec.id)
            running = [c for c in containers if c["State"] == "running"]
            if not running:
                for container in containers:
                    if container["Labels"].get(LABEL_SPEC) != self._spec_label(spec):
                        self._remove_container(container["Id"])
                return False
            keep, *extra = running
            for container in extra:
                # Two running containers for one plugin cannot both be right:
                # keep the first and remove the others.
                self._remove_container(container["Id"])
            run = _Run(spec=spec, container_id=keep["Id"], on_exit=on_exit)
            self._attach_logs(run)
            self._supervise(run)
            _log.info("re-attached to plugin %s in container %s", spec.name, keep["Id"][:12])
            return True

    def discard(self, plugin_id: str) -> None:
        """Remove the plugin's containers (running ones are killed) and images."""
        with self._plugin_lock(plugin_id):
            with self._lock:
                run = self._runs.get(plugin_id)
            self._remove_plugin(plugin_id)
            if run is not None:
                run.exited.wait(_KILL_WAIT)

    def close(self) -> None:
        """Stop supervising; the containers keep running (for live restore)."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
            self._runs.clear()
        for run in runs:
            run.detached.set()
            self._close_logs(run)
        for run in runs:
            if run.watcher is not None and run.watcher is not threading.current_thread():
                run.watcher.join(_WAIT_SLICE + 5.0)
        self._exits.close()
        if self._owns_client:
            self._client.close()

    # -- beyond the protocol ---------------------------------------------------

    def prepare(self, spec: RuntimeSpec) -> None:
        """Import the image and create the container now, so that the first start is fast.

        Optional: :meth:`start` does the same when needed.

        Raises:
            RuntimeStartError: As :meth:`start`.
        """
        self._check_open()
        with self._plugin_lock(spec.id):
            self._prepare(spec)

    def cleanup(self, keep_ids: Collection[str], *, root: Path | str) -> list[str]:
        """Remove containers and images of plugins that are not known any more.

        Only containers created for plugins whose state directory lies under
        ``root`` (a manager's root) are considered, so that managers with other
        roots sharing the engine are left alone.

        Args:
            keep_ids: Ids of the plugins that still exist.
            root: The root directory of the manager asking.

        Returns:
            The ids of the plugins whose leftovers were removed, sorted.
        """
        root_path = Path(root).resolve()
        stale: set[str] = set()
        for container in self._api.containers(all=True, filters={"label": LABEL_ID}):
            labels = container.get("Labels") or {}
            plugin_id = labels.get(LABEL_ID, "")
            state_dir = labels.get(LABEL_STATE_DIR, "")
            if plugin_id in keep_ids or not state_dir:
                continue
            if Path(state_dir).resolve().is_relative_to(root_path):
                stale.add(plugin_id)
        for plugin_id in sorted(stale):
            _log.info("removing leftovers of removed plugin %s", plugin_id)
            with self._plugin_lock(plugin_id):
                self._remove_plugin(plugin_id)
        return sorted(stale)

    def container_id(self, plugin_id: str) -> str | None:
        """Return the id of the container of a plugin this runtime supervises, if any."""
        with self._lock:
            run = self._runs.get(plugin_id)
        return None if run is None else run.container_id

    # -- image and container ---------------------------------------------------

    def _prepare(self, spec: RuntimeSpec) -> str:
        """Return the id of a container ready to start for ``spec``."""
        try:
            return self._prepare_container(spec)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise RuntimeStartError(
                f"Docker could not prepare the container of plugin {spec.name}: {_explain(exc)}"
            ) from exc

    def _prepare_container(self, spec: RuntimeSpec) -> str:
        image_id = self._ensure_image(spec)
        config = _container_config(spec, image_id)
        spec_label = _digest(config)
        reuse: str | None = None
        for container in self._containers(spec.id):
            same = container["Labels"].get(LABEL_SPEC) == spec_label
            if same and reuse is None and container["State"] in ("created", "exited"):
                reuse = container["Id"]
            else:
                self._remove_container(container["Id"])
        if reuse is not None:
            return reuse
        return self._create_container(spec, config, spec_label)

    def _spec_label(self, spec: RuntimeSpec) -> str | None:
        cached = _read_image_cache(spec)
        if cached is None:
            return None
        try:
            return _digest(_container_config(spec, cached["image_id"]))
        except RuntimeStartError:
            return None

    def _create_container(self, spec: RuntimeSpec, config: dict[str, Any], label: str) -> str:
        labels = {
            LABEL_ID: spec.id,
            LABEL_NAME: spec.name,
            LABEL_SPEC: label,
            LABEL_STATE_DIR: str(spec.state_dir),
        }
        if config["device_cgroup_rules"] and self.is_podman:
            _log.warning(
                "Podman's Docker API ignores device cgroup rules: AllowAllDevices of plugin %s "
                "is not applied (its listed devices are)",
                spec.name,
            )
        propagated = config["propagated_source"]
        if propagated:
            labels[LABEL_PROPAGATED] = propagated
            _make_rshared(Path(propagated))
        spec.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts = [
            docker.types.Mount(
                target=m["target"],
                source=m["source"],
                type="bind",
                read_only=m["read_only"],
                propagation=m["propagation"] or None,
            )
            for m in config["binds"]
        ]
        host_config = self._api.create_host_config(
            mounts=mounts,
            tmpfs=config["tmpfs"] or None,
            devices=config["devices"] or None,
            cap_add=config["cap_add"] or None,
            device_cgroup_rules=config["device_cgroup_rules"] or None,
            network_mode=config["network_mode"],
            ipc_mode=config["ipc_mode"],
            pid_mode=config["pid_mode"],
        )
        try:
            created = self._api.create_container(
                image=config["image"],
                entrypoint=config["entrypoint"],
                command=config["command"] or None,
                environment=config["env"],
                working_dir=config["workdir"],
                user=config["user"],
                network_disabled=config["network_disabled"],
                labels=labels,
                name=_container_name(spec),
                host_config=host_config,
                stdin_open=False,
                tty=False,
            )
        except docker.errors.APIError as exc:
            raise RuntimeStartError(
                f"Docker could not create the container of plugin {spec.name}: {_explain(exc)}"
            ) from exc
        _log.debug("created container %s for plugin %s", created["Id"][:12], spec.name)
        return str(created["Id"])

    def _ensure_image(self, spec: RuntimeSpec) -> str:
        """Return the id of the image of the plugin's rootfs, importing it when needed."""
        if not spec.rootfs.is_dir():
            raise RuntimeStartError(
                f"rootfs of plugin {spec.name} not found: {spec.rootfs} is not a directory"
            )
        fingerprint = _fingerprint(spec.rootfs)
        cached = _read_image_cache(spec)
        if cached is not None and cached.get("fingerprint") == fingerprint:
            try:
                return str(self._api.inspect_image(cached["image_id"])["Id"])
            except docker.errors.NotFound:
                pass
        content = _content_hash(spec.rootfs)
        reference = f"pluginkit/{spec.id}:{content[:24]}"
        try:
            image_id = str(self._api.inspect_image(reference)["Id"])
        except docker.errors.NotFound:
            image_id = self._import(spec, reference, content)
            self._remove_other_images(spec.id, keep=image_id)
        except docker.errors.APIError as exc:
            raise RuntimeStartError(
                f"could not build the image of plugin {spec.name} from {spec.rootfs}: "
                f"{_explain(exc)}"
            ) from exc
        _write_image_cache(spec, {"fingerprint": fingerprint, "image_id": image_id})
        return image_id

    def _import(self, spec: RuntimeSpec, reference: str, content: str) -> str:
        started = time.monotonic()
        with tempfile.TemporaryFile(prefix="pluginkit-rootfs-") as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for path in _walk(spec.rootfs):
                    tar.add(path, arcname=path.relative_to(spec.rootfs).as_posix(), recursive=False)
            total = archive.tell()
            archive.seek(0)
            _log.info(
                "importing the rootfs of plugin %s as image %s (%d bytes)",
                spec.name,
                reference,
                total,
            )
            try:
                # The tag goes with the repository (Podman ignores a
                # separate "tag" parameter) and each label gets a LABEL line
                # of its own (Podman reads "LABEL a=1 b=2" as one label).
                answer = self._api.import_image(
                    src=self._chunks(spec, archive, total),
                    repository=reference,
                    changes=[f"LABEL {LABEL_ID}={spec.id}", f"LABEL {LABEL_ROOTFS}={content}"],
                    stream_src=True,
                )
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                raise RuntimeStartError(
                    f"could not build the image of plugin {spec.name} from {spec.rootfs}: "
                    f"{_explain(exc)}"
                ) from exc
        image_id = _imported_id(answer)
        if image_id is None:
            raise RuntimeStartError(
                f"could not build the image of plugin {spec.name} from {spec.rootfs}: "
                f"{_import_error(answer)}"
            )
        _log.info(
            "imported the rootfs of plugin %s as image %s in %.2fs",
            spec.name,
            image_id[:19],
            time.monotonic() - started,
        )
        return image_id

    def _chunks(self, spec: RuntimeSpec, archive: IO[bytes], total: int) -> Iterator[bytes]:
        done = 0
        self._report(spec, done, total)
        while chunk := archive.read(_CHUNK):
            yield chunk
            done += len(chunk)
            self._report(spec, done, total)

    def _report(self, spec: RuntimeSpec, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(ImportProgress(spec.id, spec.name, done, total))

    def _remove_other_images(self, plugin_id: str, *, keep: str) -> None:
        for image in self._api.images(filters={"label": f"{LABEL_ID}={plugin_id}"}):
            if image["Id"] != keep:
                with contextlib.suppress(docker.errors.APIError):
                    self._api.remove_image(image["Id"], force=True)

    def _containers(self, plugin_id: str, *, running_only: bool = False) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"label": f"{LABEL_ID}={plugin_id}"}
        if running_only:
            filters["status"] = "running"
        return list(self._api.containers(all=not running_only, filters=filters))

    def _remove_container(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._api.remove_container(container_id, force=True)

    def _remove_plugin(self, plugin_id: str) -> None:
        propagated: set[str] = set()
        for container in self._containers(plugin_id):
            source = (container.get("Labels") or {}).get(LABEL_PROPAGATED)
            if source:
                propagated.add(source)
            if container["State"] == "running":
                # Podman's forced removal stops with SIGTERM and a grace
                # period; discarding means killing, on every engine.
                self._signal(container["Id"], "SIGKILL")
            self._remove_container(container["Id"])
        for image in self._api.images(filters={"label": f"{LABEL_ID}={plugin_id}"}):
            with contextlib.suppress(docker.errors.APIError):
                self._api.remove_image(image["Id"], force=True)
        for source in propagated:
            _unmount(Path(source))

    def _stop_unsupervised(self, container_id: str, grace: float) -> None:
        self._signal(container_id, "SIGTERM")
        try:
            self._api.wait(container_id, timeout=max(grace, 0.001), condition="not-running")
        except requests.exceptions.RequestException:
            self._signal(container_id, "SIGKILL")
            with contextlib.suppress(requests.exceptions.RequestException):
                self._api.wait(container_id, timeout=_KILL_WAIT, condition="not-running")
        except docker.errors.NotFound:
            pass

    def _signal(self, container_id: str, signal: str) -> None:
        try:
            self._api.kill(container_id, signal=signal)
        except docker.errors.APIError as exc:
            # 404: gone; 409: not running (Podman: 500 "container state
            # improper"). All mean it is already stopped.
            if not _already_stopped(exc):
                raise PluginError(
                    f"Docker could not send {signal} to container {container_id[:12]}: "
                    f"{_explain(exc)}"
                ) from exc
        except requests.exceptions.RequestException as exc:
            raise PluginError(
                f"Docker could not send {signal} to container {container_id[:12]}: {exc}"
            ) from exc

    # -- supervision -----------------------------------------------------------

    def _supervise(self, run: _Run) -> None:
        with self._lock:
            self._runs[run.spec.id] = run
        run.watcher = threading.Thread(
            target=self._watch, args=(run,), name=f"pluginkit-watch-{run.spec.id[:12]}", daemon=True
        )
        run.watcher.start()

    def _watch(self, run: _Run) -> None:
        exit_code: int | None = None
        try:
            exit_code = self._wait_for_exit(run)
        finally:
            if run.log_thread is not None:
                # The attach stream ends with the container: collect the last lines.
                run.log_thread.join(2.0)
            self._close_logs(run)
            with self._lock:
                if self._runs.get(run.spec.id) is run:
                    del self._runs[run.spec.id]
            run.exited.set()
            if not run.detached.is_set():
                _log.info("plugin %s exited (status %s)", run.spec.name, exit_code)
                self._exits.post(
                    run.on_exit, PluginExit(run.spec.id, exit_code, "\n".join(run.stderr_tail))
                )

    def _wait_for_exit(self, run: _Run) -> int | None:
        """Block until the container stops (or the runtime detaches); return its exit code."""
        failures = 0
        while not run.detached.is_set():
            try:
                result = self._api.wait(
                    run.container_id, timeout=_WAIT_SLICE, condition="not-running"
                )
            except docker.errors.NotFound:
                return None  # removed behind our back: stopped, status unknown
            except requests.exceptions.ReadTimeout:
                continue
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                if _is_read_timeout(exc):
                    # Podman sends the head at once and times out in the
                    # body: requests calls that a ConnectionError.
                    continue
                # The engine is restarting or gone: keep trying, without
                # flooding the log (once, then every minute).
                if not run.detached.is_set():
                    if failures % 60 == 0:
                        _log.warning(
                            "waiting for plugin %s failed: %s; retrying", run.spec.name, exc
                        )
                    failures += 1
                    time.sleep(_WAIT_SLICE)
                continue
            status = result.get("StatusCode")
            return _exit_code(status) if isinstance(status, int) else None
        return None

    def _attach_logs(self, run: _Run) -> None:
        try:
            run.log_sock = self._api.attach_socket(
                run.container_id, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 0}
            )
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            # Logs are a convenience: a plugin runs fine without them.
            _log.warning("cannot stream the logs of plugin %s: %s", run.spec.name, exc)
            return
        run.log_thread = threading.Thread(
            target=self._pump_logs,
            args=(run,),
            name=f"pluginkit-logs-{run.spec.id[:12]}",
            daemon=True,
        )
        run.log_thread.start()

    def _pump_logs(self, run: _Run) -> None:
        pending = {1: b"", 2: b""}
        forward = {
            stream: LineForwarder(
                _plugin_log,
                self._levels[stream],
                {"plugin": run.spec.id, "plugin_name": run.spec.name, "stream": name},
            )
            for stream, name in ((1, "stdout"), (2, "stderr"))
        }
        try:
            for stream, data in _frames(run.log_sock):
                if stream not in pending:
                    continue
                *lines, pending[stream] = (pending[stream] + data).split(b"\n")
                for line in lines:
                    self._log_line(run, stream, line, forward[stream])
        except (OSError, ValueError):
            pass  # the socket was closed (close() or the container went away)
        for stream, rest in pending.items():
            if rest:
                self._log_line(run, stream, rest, forward[stream])

    def _log_line(self, run: _Run, stream: int, raw: bytes, forward: LineForwarder) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if stream == 2:
            run.stderr_tail.append(text)
        forward(text)

    def _close_logs(self, run: _Run) -> None:
        sock, run.log_sock = run.log_sock, None
        if sock is None:
            return
        raw = getattr(sock, "_sock", sock)
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        with contextlib.suppress(OSError):
            raw.close()
        response = getattr(sock, "_response", None)
        if response is not None:
            with contextlib.suppress(OSError, ValueError):
                response.close()

    # -- helpers ---------------------------------------------------------------

    def _plugin_lock(self, plugin_id: str) -> threading.Lock:
        with self._lock:
            return self._plugin_locks.setdefault(plugin_id, threading.Lock())

    def _check_open(self) -> None:
        if self._closed:
            raise PluginError("this DockerRuntime is closed")


# -- engine connection ---------------------------------------------------------


def _connect() -> Any:
    host = os.environ.get("DOCKER_HOST")
    where = (
        f"DOCKER_HOST={host}" if host else "unix:///var/run/docker.sock (DOCKER_HOST is not set)"
    )
    socket_path = (host or "unix:///var/run/docker.sock").removeprefix("unix://")
    if socket_path.startswith("/") and not os.path.exists(socket_path):
        # Checked here because the SDK would only say "connection refused"
        # (and leak the socket it tried).
        raise _unreachable(where, FileNotFoundError(f"the socket {socket_path} does not exist"))
    try:
        client = docker.from_env()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _unreachable(where, exc) from exc
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        client.close()
        raise _unreachable(where, exc) from exc
    return client


def _unreachable(where: str, exc: Exception) -> PluginError:
    return PluginError(
        f"no Docker engine answers at {where}: {exc}. Start the engine or point DOCKER_HOST "
        "at one, or run plugins as host processes with pluginkit.runtime.ProcessRuntime()"
    )


def _engine_name(api: Any) -> str:
    """Name and version of the engine behind ``api`` (Docker and Podman both answer /version)."""
    try:
        version = api.version()
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        return f"unknown engine ({_explain(exc)})"
    components = version.get("Components") or []
    names = [str(c.get("Name", "")) for c in components if isinstance(c, dict)]
    # dockerd names its component "Engine"; Podman says "Podman Engine".
    name = "Podman Engine" if any(n.startswith("Podman") for n in names) else "Docker Engine"
    return f"{name} {version.get('Version', '?')}"


def _already_stopped(exc: docker.errors.APIError) -> bool:
    """Tell whether a refused kill means the container is not running any more."""
    if exc.status_code in (404, 409):
        return True
    return exc.status_code == 500 and "container state improper" in _explain(exc)


def _is_read_timeout(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a read timeout, however requests wrapped it."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        timeouts = (
            requests.exceptions.ReadTimeout,
            urllib3.exceptions.ReadTimeoutError,
            socket.timeout,
        )
        if isinstance(current, timeouts):
            return True
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return False


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation) if explanation else str(exc)


# -- the container config ------------------------------------------------------


def _container_config(spec: RuntimeSpec, image_id: str) -> dict[str, Any]:
    """Translate a spec into plain data: what the container is created with.

    Plain data so that its digest (a label on the container) tells whether
    an existing container still matches the spec.
    """
    binds: list[dict[str, Any]] = [
        {
            "target": SOCKET_DIR_IN_CONTAINER,
            "source": str(spec.socket_dir),
            "read_only": False,
            "propagation": "",
        }
    ]
    tmpfs: dict[str, str] = {}
    for mount in spec.mounts:
        _add_mount(spec, mount, binds, tmpfs)
    propagated_source = ""
    if spec.propagated_mount:
        source = spec.propagated_mount_source or spec.state_dir / "propagated-mount"
        propagated_source = str(source)
        binds.append(
            {
                "target": spec.propagated_mount,
                "source": propagated_source,
                "read_only": False,
                "propagation": "rshared",
            }
        )
    devices = []
    for device in spec.devices:
        if not os.path.exists(device.path):
            raise RuntimeStartError(f'device "{device.path}" of plugin {spec.name} does not exist')
        devices.append(f"{device.path}:{device.path}:rwm")
    return {
        "image": image_id,
        "entrypoint": list(spec.entrypoint),
        "command": list(spec.args),
        "env": list(spec.env),
        "workdir": spec.workdir or "/",
        "user": f"{spec.user[0]}:{spec.user[1]}" if spec.user is not None else None,
        "binds": binds,
        "tmpfs": tmpfs,
        "devices": devices,
        "cap_add": list(spec.capabilities),
        "device_cgroup_rules": ["a *:* rwm"] if spec.allow_all_devices else [],
        "network_mode": _network_mode(spec.network),
        # Docker's "none" mode still sets up a sandbox through its network
        # stack, which makes a start ~2x slower; without networking the
        # runtime simply gets a fresh namespace with only loopback, exactly
        # what the engine gives its plugins.
        "network_disabled": _network_mode(spec.network) == "none",
        "ipc_mode": "host" if spec.ipc_host else None,
        "pid_mode": "host" if spec.pid_host else None,
        "propagated_source": propagated_source,
    }


_PROPAGATIONS = ("rshared", "shared", "rslave", "slave", "rprivate", "private")


def _add_mount(
    spec: RuntimeSpec, mount: RuntimeMount, binds: list[dict[str, Any]], tmpfs: dict[str, str]
) -> None:
    kind = mount.type or ("bind" if {"bind", "rbind"} & set(mount.options) else "")
    if kind == "tmpfs":
        tmpfs[mount.destination] = ",".join(mount.options)
        return
    if kind != "bind":
        raise RuntimeStartError(
            f'mount "{mount.destination}" of plugin {spec.name}: type "{mount.type}" is not '
            "supported by DockerRuntime (use bind or tmpfs)"
        )
    if not mount.source:
        raise RuntimeStartError(
            f'mount source is not specified (mount "{mount.destination}" of plugin {spec.name})'
        )
    if not os.path.exists(mount.source):
        raise RuntimeStartError(
            f'mount source "{mount.source}" of mount "{mount.destination}" of plugin '
            f"{spec.name} does not exist"
        )
    propagation = next((o for o in mount.options if o in _PROPAGATIONS), "")
    binds.append(
        {
            "target": mount.destination,
            "source": mount.source,
            "read_only": "ro" in mount.options,
            "propagation": propagation,
        }
    )


# Network types that need no "network" privilege (Docker's computePrivileges)
# must not get more than the engine gives them: an empty namespace. The
# engine does not implement "bridge" either (a TODO in its code).
_NO_NETWORK = frozenset({"", "none", "null", "bridge"})


def _network_mode(network: str) -> str:
    return "none" if network in _NO_NETWORK else network


def _container_name(spec: RuntimeSpec) -> str:
    readable = re.sub(r"[^a-zA-Z0-9_.-]+", "_", spec.name).strip("_.-")[:60]
    return f"pluginkit-{readable}-{spec.id[:12]}" if readable else f"pluginkit-{spec.id[:12]}"


def _frames(stream: Any) -> Iterator[tuple[int, bytes]]:
    """Split an attach stream into (stream number, data) frames.

    Without a TTY the engine multiplexes stdout (1) and stderr (2): each frame
    is an 8-byte header - the stream number, three zero bytes, the length as
    a big-endian uint32 - followed by that many bytes.
    """
    while True:
        header = _read_exactly(stream, 8)
        if header is None:
            return
        kind, size = struct.unpack(">BxxxL", header)
        data = _read_exactly(stream, size)
        if data is None:
            return
        yield kind, data


def _read_exactly(stream: Any, size: int) -> bytes | None:
    buffer = b""
    while len(buffer) < size:
        chunk = stream.read(size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return buffer


def _exit_code(status: int) -> int:
    # The engine reports death by signal N as 128 + N, as a shell does.
    if 128 < status <= 128 + 64:
        return -(status - 128)
    return status


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# -- the rootfs ------------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    """Every path under ``root`` (not following symlinks), in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            yield base / name


def _fingerprint(root: Path) -> str:
    """Digest names, modes, sizes and mtimes, cheaply: unchanged means the same rootfs."""
    digest = hashlib.sha256()
    for path in _walk(root):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _content_hash(root: Path) -> str:
    """Digest names, modes, link targets and file contents."""
    digest = hashlib.sha256()
    for path in _walk(root):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{info.st_mode:o}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(path).encode())
        elif stat.S_ISREG(info.st_mode):
            with path.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    digest.update(chunk)
        digest.update(b"\n")
    return digest.hexdigest()


def _read_image_cache(spec: RuntimeSpec) -> dict[str, Any] | None:
    try:
        data = json.loads((spec.state_dir / _IMAGE_CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "image_id" in data else None


def _write_image_cache(spec: RuntimeSpec, data: dict[str, Any]) -> None:
    spec.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = spec.state_dir / _IMAGE_CACHE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _imported_id(answer: str) -> str | None:
    for line in answer.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        status = message.get("status", "") if isinstance(message, dict) else ""
        if isinstance(status, str) and status.startswith("sha256:"):
            return status
    return None


def _import_error(answer: str) -> str:
    for line in answer.splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("error"):
                return str(message["error"])
    return f"unexpected answer from the engine: {answer.strip()[:200]!r}"


# -- propagated mounts -------------------------------------------------------------

_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2


def _mount_entry(path: Path) -> list[str] | None:
    """Return the /proc/self/mountinfo fields of the mount at exactly ``path``, if any."""
    target = str(path)
    entry = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4 and fields[4] == target:
                entry = fields  # the last one wins: it is the top of the stack
    return entry


def _make_rshared(path: Path) -> None:
    """Make ``path`` a shared mount point, as the engine does for propagated mounts."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry = _mount_entry(path.resolve())
    if entry is not None and any(f.startswith("shared:") for f in entry[6:]):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    target = str(path.resolve()).encode()
    if entry is None and libc.mount(target, target, None, _MS_BIND | _MS_REC, None) != 0:
        raise RuntimeStartError(
            f"cannot bind-mount the propagated mount source {path}: "
            f"{os.strerror(ctypes.get_errno())}"
        )
    if libc.mount(b"none", target, None, _MS_SHARED | _MS_REC, None) != 0:
        raise RuntimeStartError(
            f"cannot make the propagated mount source {path} shared: "
            f"{os.strerror(ctypes.get_errno())}"
        )


def _unmount(path: Path) -> None:
    if _mount_entry(path) is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(str(path).encode(), _MNT_DETACH) != 0:
        _log.warning("cannot unmount %s: %s", path, os.strerror(ctypes.get_errno()))
