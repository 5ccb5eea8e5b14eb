"""The README's examples run, so they cannot rot.

The quick start's shell block runs in a fresh copy of the repository (the
files git knows, as they are in the work tree), with ``python3`` and
``pluginkit`` taken from a throwaway virtual environment: its ``pip install -e .``
line then really installs the project - into that environment, not into the
one running the tests. The environment sees the system's site-packages, so the
dependencies are already there and nothing else is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def section(markdown: str, heading: str) -> str:
    """The text of the ``## heading`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def code_blocks(markdown: str, language: str) -> list[str]:
    """The fenced code blocks of that language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.M | re.S)


def quick_start_script() -> str:
    blocks = code_blocks(section(README.read_text(), "Quick start"), "sh")
    assert len(blocks) == 1, "the Quick start section must hold exactly one shell block"
    return blocks[0]


def fresh_copy(target: Path) -> Path:
    """Copy the files git tracks (or would track) into ``target``, as a clone would have."""
    try:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout, cannot make a fresh copy: {exc}")
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the work tree, not yet in git
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    return target


def clean_env(venv: Path, tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLUGINKIT_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["TMPDIR"] = str(tmp)  # `mktemp -d` lands here, so the test can clean up
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def remove_leftovers(venv: Path, tmp: Path, env: dict[str, str]) -> None:
    """Remove every plugin a (failed) run left behind, so no process outlives the test."""
    python = str(venv / "bin" / "python3")
    for root in tmp.iterdir():
        if not root.is_dir():
            continue
        base = [python, "-m", "pluginkit", "--runtime", "process", "--root", str(root)]
        listed = subprocess.run(
            [*base, "ls", "-q", "--no-trunc"], capture_output=True, text=True, env=env, check=False
        )
        ids = listed.stdout.split() if listed.returncode == 0 else []
        if ids:
            subprocess.run([*base, "rm", "-f", *ids], capture_output=True, env=env, check=False)


def test_quick_start_is_one_block() -> None:
    """The Quick start section holds exactly one shell block, which installs the project."""
    script = quick_start_script()
    assert script.splitlines()[0] == "python3 -m pip install -e ."


def test_test_section_is_the_ci_command() -> None:
    """The Test section shows the command .ci/run runs."""
    blocks = code_blocks(section(README.read_text(), "Test"), "sh")
    assert blocks == ['python3 -m pip install -e ".[test]" && python3 -m pytest\n']
    assert "python3 -m pytest\n" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_start_runs_in_a_fresh_copy(short_tmp: Path) -> None:
    """The quick start block, run with bash -e in a fresh copy, succeeds and says what it did."""
    clone = fresh_copy(short_tmp / "clone")
    venv = short_tmp / "venv"
    tmp = short_tmp / "t"
    tmp.mkdir()
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    env = clean_env(venv, tmp)
    script = short_tmp / "quickstart.sh"
    script.write_text(quick_start_script())
    try:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", str(script)],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
    finally:
        remove_leftovers(venv, tmp, env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # pip really installed the copy into the throwaway environment
    assert (venv / "bin" / "pluginkit").exists()
    # pip's summary names every package it installed (its dependencies too,
    # when the base environment lacks them), pluginkit among them
    installed = re.search(r"^Successfully installed (?=.*\bpluginkit-).*\n", out, re.M)
    assert installed, out
    # what the plugin commands printed, in order
    lines = out[installed.end() :].splitlines()
    assert lines[0] == "localvolume"  # create
    assert lines[1] == "localvolume"  # enable
    assert lines[2].split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    assert "localvolume:latest" in lines[3]
    assert lines[3].endswith("true")
    assert '"Name": "demo"' in out
    assert lines[-2:] == ["localvolume", "localvolume"]  # disable, rm


@pytest.mark.slow
def test_python_example_runs(short_tmp: Path) -> None:
    """The README's Python example runs and prints the volume it created."""
    [example] = code_blocks(README.read_text(), "python")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(short_tmp)}
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=short_tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "'Name': 'demo'" in result.stdout
