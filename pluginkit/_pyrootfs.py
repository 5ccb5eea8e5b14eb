"""A root filesystem holding this machine's Python and pluginkit: no base image needed.

Used for the fleet agent's image (``pluginkit fleet agent-image``) and for
plugins written with the SDK that run as containers. Nothing is downloaded:
the Python running this code is copied from the host: the interpreter, the
shared libraries it and its extension modules load (as ``ldd`` lists them),
the standard library (without its tests and caches), and the pure-Python
packages asked for. Every file keeps its
absolute host path inside the rootfs, so the interpreter finds its standard
library where it was built to look; ``/usr/bin/python3`` points at it.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Where the packages go inside the rootfs (give the plugin PYTHONPATH=this).
SITE = "/opt/pluginkit-site"

#: What a plugin written with the SDK imports.
PLUGIN_PACKAGES = (
    "pluginkit",
    "attr",
    "attrs",
    "cattrs",
    "typing_extensions",
    "exceptiongroup",
    "platformdirs",
)
#: What a manager with the Docker runtime and registry installs imports too.
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
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        found.update(Path(m) for m in _LDD_PATH.findall(out))
    return found


def build_python_rootfs(rootfs: Path, packages: tuple[str, ...] = PLUGIN_PACKAGES) -> None:
    """Fill ``rootfs`` with this Python and ``packages``, at :data:`SITE` (give ``PYTHONPATH``).

    Packages that are not installed are left out (``exceptiongroup`` is
    needed only before Python 3.11, ``tomli`` before 3.11 too).
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
        _copy(Path(os.path.realpath(library)), rootfs)
        if library != Path(os.path.realpath(library)):  # keep the name the loader asks for
            link = rootfs / library.relative_to("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(os.path.realpath(library))
    (rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    python3 = rootfs / "usr" / "bin" / "python3"
    if python3.is_symlink() or python3.exists():
        python3.unlink()
    python3.symlink_to(executable)
    site = rootfs / SITE.lstrip("/")
    site.mkdir(parents=True, exist_ok=True)
    for name in packages:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # exceptiongroup is only needed before Python 3.11
        origin = Path(module.__file__ or "")
        if origin.name == "__init__.py":
            shutil.copytree(
                origin.parent,
                site / name,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
        else:
            shutil.copy2(origin, site / origin.name)
