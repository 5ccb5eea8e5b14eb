"""The manager's registry and bundle operations (``Manager`` delegates here)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import Privilege, compute_privileges
from .._errors import InvalidReferenceError
from .._reference import normalize_name
from ._blobs import Progress
from ._errors import RegistryAuthError, RegistryNotFoundError, RegistryUnreachableError
from ._layercache import plugin_layer
from ._pull import Fetched, Puller
from ._push import Pusher
from ._ref import RegistryReference, parse_registry_reference

if TYPE_CHECKING:
    from .._install import Grant
    from .._manager import Manager
    from .._plugin import Plugin

__all__ = [
    "DISTRIBUTION_FILE",
    "distribution_info",
    "install",
    "is_reference",
    "privileges",
    "push",
]

_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "pluginkit_distribution_progress", default=None
)

DISTRIBUTION_FILE = "distribution.json"
"""Per-plugin file (inside the plugin directory) with the manifest digest it came from."""


@contextlib.contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Send the progress of registry operations in this context to ``progress`` (the CLI)."""
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _progress(progress: Progress | None) -> Progress | None:
    return progress if progress is not None else _PROGRESS.get()


def is_reference(source: object) -> bool:
    """Tell whether ``source`` parses as a registry reference."""
    if not isinstance(source, str):
        return False
    try:
        parse_registry_reference(source)
    except InvalidReferenceError:
        return False
    return True


@contextlib.contextmanager
def _not_a_path_either(source: str) -> Iterator[None]:
    """Say that ``source`` is not a path either, when it might have been meant as one."""
    try:
        yield
    except (RegistryNotFoundError, RegistryUnreachableError, RegistryAuthError) as exc:
        head = source.partition("/")[0]
        if "/" in source and ("." in head or ":" in head or head == "localhost"):
            raise  # an explicit registry: clearly not a path
        raise type(exc)(f"{exc} (and {source} is not a file or directory)") from None


def privileges(source: str, progress: Progress | None = None) -> list[Privilege]:
    """Return the privileges of the plugin ``source`` names (reads manifest and config)."""
    with (
        _not_a_path_either(source),
        Puller(parse_registry_reference(source), _progress(progress)) as puller,
    ):
        return compute_privileges(puller.fetch_config().config)


def _write_info(dst: Path, fetched: Fetched | None, digest: str) -> None:
    info = {"ManifestDigest": digest}
    with open(dst / DISTRIBUTION_FILE, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.flush()
        os.fsync(f.fileno())


def distribution_info(manager: Manager, plugin_id: str) -> dict[str, Any]:
    """Return what :func:`install` recorded for a plugin (``ManifestDigest``), or ``{}``."""
    path = manager._store.plugin_dir(plugin_id) / DISTRIBUTION_FILE
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def install(
    manager: Manager,
    source: str,
    *,
    name: str | None,
    grant: Grant,
    disabled: bool,
    progress: Progress | None = None,
) -> Plugin:
    """Install from a registry: privileges are checked before any layer is fetched.

    The layers unpack into a staging directory inside the manager's root,
    committed by one rename (see :meth:`Manager.install`).
    """
    from .._install import check_grant

    ref = parse_registry_reference(source)
    full = normalize_name(name) if name is not None else ref.local_name()
    manager._check_name_free(full)
    with Puller(ref, _progress(progress), manager.install_limits) as puller:
        with _not_a_path_either(source):
            fetched = puller.fetch_config()
        check_grant(compute_privileges(fetched.config), grant)

        def fill(dst: Path) -> None:
            puller.fetch_rootfs(fetched, dst / "rootfs")
            _write_info(dst, fetched, fetched.manifest_digest)

        entry = manager._add(full, fetched.config, reference=str(ref), fill=fill)
    manager._prepare(entry)
    manager._emit(entry, "install")
    if not disabled:
        manager.enable(full)
    return entry.plugin


def push_target(name: str, ref: str | None) -> RegistryReference:
    """Return the reference a plugin is pushed to: ``ref``, else its own name."""
    return parse_registry_reference(ref if ref is not None else name)


def push(
    manager: Manager, name: str, ref: str | None = None, progress: Progress | None = None
) -> str:
    """Push an installed plugin; return the manifest digest."""
    entry = manager._resolve(name)
    target = push_target(entry.name, ref)
    if not target.tag:
        raise InvalidReferenceError(f"cannot push to {target}: a tag is needed, not a digest")
    manager._check_open()
    staging = manager._store.new_staging()
    try:
        layer, blob = plugin_layer(manager, entry.id, staging)
        with Pusher(target, _progress(progress)) as pusher:
            return pusher.push_plugin(entry.config, [(layer, blob)])
    finally:
        manager._store.discard_staging(staging)
