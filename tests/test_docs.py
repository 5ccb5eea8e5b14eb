"""The documentation stays true: its examples run and its links resolve.

A Python code block in ``docs/*.md`` or ``README.md`` whose fence is preceded
by the line ``<!-- test -->`` is a self-contained program: it is run in a
subprocess (``PYTHONPATH`` = the repository root, a fresh temporary working
directory) and must succeed. ``<!-- test: docker -->`` marks a block that
needs a Docker engine; those run in a separate test marked ``docker``.
``<!-- test: continues -->`` marks a fragment that continues the tested
block before it on the same page: it runs appended to that block (and to the
fragments between them), and its first line is a comment saying so, so a
reader copying it knows it is not a whole program. ``<!-- test: serves -->``
marks a plugin program (it ends in ``serve()``): it is started with
``PLUGINKIT_SOCKET_DIR``/``PLUGINKIT_SOCKET`` pointing at a temporary socket,
must answer ``Plugin.Activate`` there, and must exit 0 on SIGTERM.
``<!-- test: pytest -->`` marks a pytest test module: it is run by pytest
with pluginkit's pytest plugin and must pass. Every
Python block of the docs carries one of these markers.
HTML comments do not render, so the markers are invisible on the site.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), REPO / "README.md"]

_BLOCK = re.compile(
    r"^<!-- test(?::\s*(?P<kind>docker|continues|serves|pytest))? -->\n"
    r"```(?:python|py)[^\n]*\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
# "It prints:" and a text block right after an example: its exact output.
_PRINTS = re.compile(r"\n+It prints:\n\n```text\n(?P<out>.*?)^```", re.MULTILINE | re.DOTALL)
_PYTHON = re.compile(r"^```(?:python|py)\b[^\n]*\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _blocks(docker: bool, special: str | None = None) -> list[Any]:
    params = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        chain, chain_kind = "", None
        for match in _BLOCK.finditer(text):
            kind, code = match.group("kind"), match.group("code")
            if kind == "continues":
                chain = f"{chain}\n{code}"
            else:
                chain, chain_kind = code, kind
            if (chain_kind == "docker") != docker:
                continue
            if (chain_kind if chain_kind in ("serves", "pytest") else None) != special:
                continue
            line = text.count("\n", 0, match.start()) + 2  # the fence's line
            name = f"{page.relative_to(REPO)}:{line}"
            prints = _PRINTS.match(text, match.end())
            expected = prints.group("out") if prints else None
            params.append(pytest.param(chain, expected, id=name))
    return params


PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "pluginkit.pytest_plugin",
    "-p",
    "no:cacheprovider",
]


@pytest.mark.parametrize(("code", "expected"), _blocks(docker=False, special="pytest"))
def test_pytest_example_passes(code: str, expected: str | None, tmp_path: Path) -> None:
    """A test module of the docs passes under pytest with pluginkit's pytest plugin."""
    (tmp_path / "test_example.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [*PYTEST, "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("code", "expected"), _blocks(docker=False, special="serves"))
def test_plugin_program_serves(code: str, expected: str | None, tmp_path: Path) -> None:
    """A plugin program of the docs listens where a runtime tells it, answers, stops on SIGTERM."""
    import signal
    import time

    from pluginkit import Client

    sockets = Path(tempfile.mkdtemp(prefix="pk-doc-", dir="/tmp"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.update(PLUGINKIT_SOCKET_DIR=str(sockets), PLUGINKIT_SOCKET="p.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (sockets / "p.sock").is_socket():
            assert proc.poll() is None, f"the plugin exited: {proc.communicate()}"
            assert time.monotonic() < deadline, "the plugin never listened"
            time.sleep(0.02)
        with Client(f"unix://{sockets}/p.sock", retry_timeout=5) as client:
            assert client.call("Plugin.Activate")["Implements"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}\n{err}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        shutil.rmtree(sockets, ignore_errors=True)


def _all_python_blocks() -> list[tuple[str, str, str]]:
    """(page:line, the line before the fence, code) of every Python block of the docs."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _PYTHON.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(REPO)}:{line}", before, match.group("code")))
    return found


# Pages whose examples need a part these doc tests do not start (a Podman
# service, an image registry, a swarm): to be marked when they do. Any other
# page's Python must run.
_UNTESTED_PAGES = ("docs/podman.md", "docs/distribution.md", "docs/fleet.md")


def test_every_python_block_is_tested() -> None:
    """No untested Python in the docs: each block runs, alone or after the one it continues."""
    untested = [
        where
        for where, before, _ in _all_python_blocks()
        if not _MARK.match(before) and not where.startswith(_UNTESTED_PAGES)
    ]
    assert untested == []


def test_fragments_say_they_continue() -> None:
    """A continuing fragment opens with a comment pointing at the example it continues."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        first = None
        for match in _BLOCK.finditer(text):
            if match.group("kind") == "continues":
                assert first is not None, f"{page.name}: a fragment before any tested block"
                opening = match.group("code").splitlines()[0]
                assert re.match(r"# .*\babove\b", opening), f"{page.name}: {opening!r}"
            else:
                first = match


_MARK = re.compile(r"<!-- test(?::\s*(?:docker|continues|serves|pytest))? -->$")


def _run(code: str, tmp_path: Path, timeout: float, expected: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PLUGINKIT_ROOT", None)
    env.pop("PLUGINKIT_RUNTIME", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"the example failed:\n{result.stdout}\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected


@pytest.mark.parametrize(("code", "expected"), _blocks(docker=False))
def test_python_example_runs(code: str, expected: str | None, tmp_path: Path) -> None:
    """A Python example marked <!-- test --> runs, printing what an "It prints" block shows."""
    _run(code, tmp_path, timeout=30, expected=expected)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize(("code", "expected"), _blocks(docker=True))
def test_python_example_with_docker_runs(code: str, expected: str | None, tmp_path: Path) -> None:
    """A Python example marked <!-- test: docker --> runs against a Docker engine."""
    _run(code, tmp_path, timeout=110, expected=expected)


def test_examples_are_marked() -> None:
    """The pages the newcomer meets first have tested examples."""
    marked = {page.name for page in PAGES if _BLOCK.search(page.read_text(encoding="utf-8"))}
    guides = {"index.md", "quickstart.md", "client.md", "legacy.md", "manager.md", "config.md"}
    cookbook = {"orchestrator.md", "plugin-author.md", "test-author.md"}
    assert guides | cookbook | {"runtimes.md", "sdk.md"} <= marked


def _slug(title: str) -> str:
    # Python-Markdown's toc slugify, which mkdocs uses for heading anchors.
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(match.group("title")) for match in _HEADING.finditer(text)}


def _links() -> list[tuple[Path, str]]:
    links = []
    for page in PAGES:
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold no links
        for match in _LINK.finditer(text):
            target = match.group("target")
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            links.append((page, target))
    return links


def test_docs_have_relative_links() -> None:
    """The link check below really finds the links between pages."""
    assert len(_links()) > 20


@pytest.mark.parametrize(("page", "target"), _links(), ids=[f"{p.name}->{t}" for p, t in _links()])
def test_relative_link_resolves(page: Path, target: str) -> None:
    """Every relative link points to an existing file and, if it names one, heading."""
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: {target}: no such file"
    if anchor:
        assert dest.suffix == ".md", f"{page.name}: {target}: an anchor in a non-page"
        assert anchor in _anchors(dest), f"{page.name}: {target}: no heading #{anchor}"


def test_nav_covers_every_page() -> None:
    """mkdocs.yml's nav lists every page of docs/ exactly once."""
    nav = re.findall(r":\s*(\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE)
    assert sorted(nav) == sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))


_CONSOLE = re.compile(r"^```console\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def _normalise(text: str, root: str) -> str:
    text = text.replace(root, "<ROOT>")
    text = re.sub(r"/tmp/tmp\.\w+", "<ROOT>", text)  # the root shown in the docs
    text = re.sub(r"\b[0-9a-f]{12}\b", "<ID>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<TIME>", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _session(markdown: str) -> list[tuple[str, str]]:
    """The ``$ command`` lines of the console blocks, each with the output shown after it."""
    steps: list[tuple[str, str]] = []
    for block in _CONSOLE.finditer(markdown):
        for line in block.group("body").splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], ""))
            else:
                command, shown = steps[-1]
                steps[-1] = (command, f"{shown}{line}\n")
    return steps


@pytest.mark.slow
def test_quickstart_console_session(tmp_path: Path) -> None:
    """The quick start's command-line session prints what the page shows, step by step."""
    root = str(tmp_path / "root")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PLUGINKIT_RUNTIME": "process",
        "PLUGINKIT_ROOT": root,
    }
    prelude = f'pluginkit() {{ "{sys.executable}" -m pluginkit "$@"; }}\n'
    steps = _session((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert [command.split()[1] for command, _ in steps].count("enable") == 1
    try:
        for command, shown in steps:
            result = subprocess.run(
                ["bash", "-c", prelude + command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            printed = _normalise(result.stdout + result.stderr, root)
            assert printed == _normalise(shown, root), f"$ {command}"
            failed = result.returncode != 0
            assert failed == printed.startswith("Error:"), f"$ {command}: exit {result.returncode}"
    finally:
        for command in ("disable -f localvolume", "rm -f localvolume"):
            subprocess.run(
                ["bash", "-c", prelude + f"pluginkit {command}"],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
