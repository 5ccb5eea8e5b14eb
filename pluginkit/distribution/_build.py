"""``pluginkit build``: turn an SDK plugin (:mod:`pluginkit.sdk`) into a plugin directory.

The directory (``config.json`` + ``rootfs/``) is ready for ``create`` and
``push``, by pluginkit or by ``docker plugin create``. Its rootfs holds this
machine's Python (the interpreter, the shared libraries it and its extension
modules load as ``ldd`` lists them, the standard library without tests and
caches), pluginkit with its pure-Python dependencies, and the plugin's own
module or package, under ``/opt/pluginkit-site``. Every Python file keeps its
absolute host path inside the rootfs, so the interpreter finds its standard
library where it was built to look; ``/usr/bin/python3`` points at it. The
entrypoint is ``python3 -m MODULE``.

The plugin's ``config.json`` is the one given (``config=``), else a minimal
one from ``types``, ``socket`` and ``description``; ``Entrypoint``, the
``PYTHONPATH`` env var and ``PLUGINKIT_SOCKET_HANDOFF=1`` (the plugin serves
on a socket handed over at an upgrade, see :mod:`._upgrade`) are set either
way. The directory appears complete or not at all (built beside it, then
renamed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._config import parse_config
from .._errors import InvalidConfigError
from ._upgrade import HANDOFF_ENV

__all__ = ["SITE", "build_plugin", "build_python_rootfs"]

SITE = "/opt/pluginkit-site"
"""Where the Python packages go inside the rootfs (the plugin's ``PYTHONPATH``)."""

PLUGIN_PACKAGES = (
    "pluginkit",
    "attr",
    "attrs",
    "cattrs",
    "typing_extensions",
    "exceptiongroup",
    "platformdirs",
)
"""What a plugin written with the SDK imports (``exceptiongroup`` only before 3.11)."""
MANAGER_PACKAGES = (
    *PLUGIN_PACKAGES,
    "docker",
    "requests",
    "urllib3",
    "certifi",
    "charset_normalizer",
    "idna",
    "tomli",
)
"""What a manager with the Docker runtime and registry installs imports (the fleet agent)."""
_SKIP = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__pycache__",
    "pydoc_data",
}
_LDD_PATH = re.compile(r"(/\S+) \(0x")


def _copy(source: Path, rootfs: Path) -> None:
    target = rootfs / source.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target, follow_symlinks=True)


def _libraries(binaries: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=False
        ).stdout
        found.update(Path(m) for m in _LDD_PATH.findall(out))
    return found


def _copy_package(name: str, site: Path, search: Sequence[str] = ()) -> bool:
    """Copy a top-level module or package into ``site``; False when it cannot be found."""
    saved = sys.path[:]
    sys.path[:0] = list(search)
    try:
        spec = importlib.util.find_spec(name)
    finally:
        sys.path[:] = saved
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return False
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        shutil.copytree(
            origin.parent,
            site / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            dirs_exist_ok=True,
        )
    else:
        shutil.copy2(origin, site / origin.name)
    return True


def build_python_rootfs(rootfs: Path, packages: Sequence[str] = PLUGIN_PACKAGES) -> None:
    """Fill ``rootfs`` with a Python that can run ``python3 -m pluginkit…`` (see the module doc).

    ``packages`` (top-level import names) are copied to :data:`SITE`; those
    not installed are left out (``exceptiongroup`` and ``tomli`` are needed
    only before Python 3.11).
    """
    executable = Path(os.path.realpath(sys.executable))
    if sys.prefix != sys.base_prefix:  # a venv: the interpreter is its base's
        executable = Path(os.path.realpath(Path(sys.base_prefix) / "bin" / executable.name))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    binaries = [executable]
    for directory, subdirs, files in os.walk(stdlib):
        subdirs[:] = [d for d in subdirs if d not in _SKIP and not d.startswith("config-")]
        for name in files:
            path = Path(directory) / name
            if name.endswith((".py", ".so")):
                _copy(path, rootfs)
                if name.endswith(".so"):
                    binaries.append(path)
    _copy(executable, rootfs)
    for library in _libraries(binaries):
        real = Path(os.path.realpath(library))
        _copy(real, rootfs)
        if library != real:  # keep the name the loader asks for
            link = rootfs / library.relative_to("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                link.symlink_to(real)
    (rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    python3 = rootfs / "usr" / "bin" / "python3"
    if os.path.lexists(python3):
        python3.unlink()
    python3.symlink_to(executable)
    site = rootfs / SITE.lstrip("/")
    site.mkdir(parents=True, exist_ok=True)
    for name in packages:
        _copy_package(name, site)


def _config(
    module: str,
    config: dict[str, Any] | None,
    types: Sequence[str],
    socket: str | None,
    description: str,
) -> dict[str, Any]:
    if config is None:
        if not types:
            raise InvalidConfigError(
                "build needs the plugin's interface types (e.g. docker.volumedriver/1.0) "
                "or a config.json"
            )
        config = {
            "Description": description or f"{module} (built by pluginkit)",
            "Documentation": "",
            "Interface": {
                "Types": list(types),
                "Socket": socket or f"{module.rsplit('.', 1)[-1]}.sock",
            },
            "Network": {"Type": "none"},
            "Linux": {"Capabilities": []},
        }
    config = dict(config)
    config["Entrypoint"] = ["/usr/bin/python3", "-m", module]
    env = [
        e
        for e in config.get("Env") or []
        if e.get("Name") not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", HANDOFF_ENV)
    ]
    env += [
        {"Name": "PYTHONPATH", "Description": "", "Settable": [], "Value": SITE},
        {"Name": "PYTHONDONTWRITEBYTECODE", "Description": "", "Settable": [], "Value": "1"},
        {"Name": HANDOFF_ENV, "Description": "", "Settable": [], "Value": "1"},
    ]
    config["Env"] = env
    parse_config(config, source="the built config.json")  # fails early, naming the field
    return config


def build_plugin(
    module: str,
    dest: str | os.PathLike[str],
    *,
    source_dir: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
    types: Sequence[str] = (),
    socket: str | None = None,
    description: str = "",
) -> Path:
    """Build a managed-plugin directory for the SDK plugin ``module`` at ``dest``.

    Args:
        module: what ``python -m`` runs (``mypkg.plugin``).
        dest: the directory to create (it must not exist).
        source_dir: where ``module``'s top-level package is (default: the
            current directory, then ``sys.path``).
        config: a config.json to start from (``Entrypoint`` and ``PYTHONPATH``
            are set in it).
        types: the interface types of the minimal config (when ``config``
            is None), e.g. ``["docker.volumedriver/1.0"]``.
        socket: its socket name (default: ``<last module part>.sock``).
        description: its description.

    Raises:
        InvalidConfigError: ``dest`` exists, the module cannot be found, or the
            config is not valid.
    """
    target = Path(dest)
    if os.path.lexists(target):
        raise InvalidConfigError(f"{target} already exists", path=os.fspath(target))
    data = _config(module, config, types, socket, description)
    top = module.split(".", 1)[0]
    building = target.with_name(f".{target.name}.building")
    if os.path.lexists(building):
        shutil.rmtree(building)
    try:
        building.mkdir(parents=True)
        rootfs = building / "rootfs"
        build_python_rootfs(rootfs)
        search = [os.fspath(source_dir if source_dir is not None else Path.cwd())]
        site = rootfs / SITE.lstrip("/")
        if top not in PLUGIN_PACKAGES and not _copy_package(top, site, search):
            raise InvalidConfigError(
                f"cannot find the plugin's module {top!r} in {search[0]} or on sys.path",
                path=search[0],
            )
        (building / "config.json").write_text(json.dumps(data, indent=2) + "\n")
        os.rename(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target
