"""``pluginkit completion SHELL``: a static completion script, made by shtab.

shtab writes the script from the argument parser once, so completing costs
the shell nothing at TAB time and the ``pluginkit`` command nothing at start
(shtab is imported only by this command); argcomplete would run Python on
every TAB instead.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["SHELLS", "completion_script"]

SHELLS = ("bash", "zsh", "fish", "tcsh")

# Arguments that are paths: the shell completes file names for them.
_PATH_DESTS = {"root", "run_root", "dir", "source", "socket_dir", "spec_dir"}


def _mark_paths(parser: argparse.ArgumentParser, files: Any, directories: Any) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, files, directories)
        elif action.dest in _PATH_DESTS:
            directories_only = action.dest in {"root", "run_root", "dir", "socket_dir", "spec_dir"}
            action.complete = directories if directories_only else files  # type: ignore[attr-defined]


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """Return the completion script of ``parser`` for ``shell`` (one of :data:`SHELLS`)."""
    import shtab

    _mark_paths(parser, shtab.FILE, shtab.DIRECTORY)
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"
