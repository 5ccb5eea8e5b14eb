"""The ``pluginkit`` logger has its NullHandler whenever a pluginkit module can log.

``import pluginkit`` does not import :mod:`logging` (the command line's path
to a daemon stays light), so :mod:`pluginkit._log` installs the handler and
every module that logs imports it. Each such module is imported alone, in a
fresh interpreter: a module that forgets would let ``logging.lastResort``
print pluginkit's warnings on an application's stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "pluginkit"

CHECK = """
import importlib, sys
importlib.import_module(sys.argv[1])
imported = "logging" in sys.modules
import logging
handlers = logging.getLogger("pluginkit").handlers
print(imported, sorted(type(h).__name__ for h in handlers))
"""


def _modules_that_log() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "logging" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_import_pluginkit_does_not_import_logging() -> None:
    """`import pluginkit` (and the CLI module) leave logging alone."""
    code = "import sys, pluginkit, pluginkit.cli; print('logging' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout == "False\n"


@pytest.mark.parametrize("module", _modules_that_log())
def test_a_module_that_logs_installs_the_null_handler(module: str) -> None:
    """Imported alone, the module leaves a NullHandler on `pluginkit` (or no logging at all)."""
    out = subprocess.run(
        [sys.executable, "-c", CHECK, module],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    # Not importing logging at all is fine too (the CLI imports it only to run in-process).
    assert out.stdout in ("True ['NullHandler']\n", "False []\n")
