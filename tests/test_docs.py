"""The documentation stays true: its examples run and its links resolve.

A Python code block in ``docs/*.md`` or ``README.md`` whose fence is preceded
by the line ``<!-- test -->`` is a self-contained program: it is run in a
subprocess (``PYTHONPATH`` = the repository root, a fresh temporary working
directory) and must succeed. ``<!-- test: docker -->`` marks a block that
needs a Docker engine; those run in a separate test marked ``docker``.
``<!-- test: podman -->`` marks a block that needs Podman's Docker API: it
runs (marked ``podman``) with ``DOCKER_HOST`` set to a private ``podman
system service``. ``<!-- test: registry -->`` marks a block that needs an
image registry: it runs (marked ``registry``) with ``REGISTRY`` set to the
``host:port`` of a fresh Debian ``docker-registry`` on a loopback port.
``<!-- test: continues -->`` marks a fragment that continues the tested
block before it on the same page: it runs appended to that block (and to the
fragments between them), and its first line is a comment saying so, so a
reader copying it knows it is not a whole program. ``<!-- test: serves -->``
marks a plugin program (it ends in ``serve()``): it is started with
``PLUGINKIT_SOCKET_DIR``/``PLUGINKIT_SOCKET`` pointing at a temporary socket,
must answer ``Plugin.Activate`` there, and must exit 0 on SIGTERM.
An "It prints:" paragraph and ``text`` block right after a block is what
the program prints; after a fragment, what the chain prints ends with it
(what the fragment itself adds).
``<!-- test: pytest -->`` marks a pytest test module: it is run by pytest
with pluginkit's pytest plugin and must pass. Every
Python block of the docs carries one of these markers.
HTML comments do not render, so the markers are invisible on the site.
Every public name of ``pluginkit``, ``pluginkit.runtime``,
``pluginkit.testing`` and ``pluginkit.sdk`` is imported or used in some
example, except the few pinned, with a reason, in ``_WITHOUT_EXAMPLE``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), REPO / "README.md"]

_BLOCK = re.compile(
    r"^<!-- test(?::\s*(?P<kind>docker|podman|registry|continues|serves|pytest))? -->\n"
    r"```(?:python|py)[^\n]*\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
# "It prints:" and a text block right after an example: its exact output.
_PRINTS = re.compile(r"\n+It prints:\n\n```text\n(?P<out>.*?)^```", re.MULTILINE | re.DOTALL)
_PYTHON = re.compile(r"^```(?:python|py)\b[^\n]*\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Output:
    """What an example prints: all of it, or (``tail``, after a fragment) how it ends."""

    text: str
    tail: bool


#: The kinds of block that need a real part, each run by a test with that part's marker.
_PARTS = ("docker", "podman", "registry")


def _blocks(part: str | None, special: str | None = None) -> list[Any]:
    """The (code, expected output) of the blocks needing ``part`` (None: no real part)."""
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
            if (chain_kind if chain_kind in _PARTS else None) != part:
                continue
            if (chain_kind if chain_kind in ("serves", "pytest") else None) != special:
                continue
            line = text.count("\n", 0, match.start()) + 2  # the fence's line
            name = f"{page.relative_to(REPO)}:{line}"
            prints = _PRINTS.match(text, match.end())
            expected = Output(prints.group("out"), kind == "continues") if prints else None
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


@pytest.mark.parametrize(("code", "expected"), _blocks(None, special="pytest"))
def test_pytest_example_passes(code: str, expected: Output | None, tmp_path: Path) -> None:
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


@pytest.mark.parametrize(("code", "expected"), _blocks(None, special="serves"))
def test_plugin_program_serves(code: str, expected: Output | None, tmp_path: Path) -> None:
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


def test_every_python_block_is_tested() -> None:
    """No untested Python in the docs: each block runs, alone or after the one it continues."""
    untested = [where for where, before, _ in _all_python_blocks() if not _MARK.match(before)]
    assert untested == []


#: The modules whose public names (``__all__``) the examples should show.
_EXAMPLE_MODULES = ("pluginkit", "pluginkit.runtime", "pluginkit.testing", "pluginkit.sdk")
#: Public names no example needs to show, and why. Keep this short.
_WITHOUT_EXAMPLE = {
    "pluginkit.testing.Handler": "the same type as pluginkit.sdk.Handler, which the SDK guide uses",
}


def _names_used(code: str) -> set[tuple[str, str]]:
    """The (module, name) pairs a program imports or reads as module attributes."""
    import ast

    used: set[tuple[str, str]] = set()
    modules: dict[str, str] = {}  # a local name -> the module (or object) it stands for
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parent, _, last = node.module.rpartition(".")
            used.add((parent, last))
            for alias in node.names:
                used.add((node.module, alias.name))
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                used.update((".".join(parts[:i]), parts[i]) for i in range(1, len(parts)))
                modules[alias.asname or parts[0]] = alias.name if alias.asname else parts[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in modules:
            module = modules[value.id]
            for attr in reversed(chain):
                used.add((module, attr))
                module = f"{module}.{attr}"
    return used


def test_public_names_have_examples() -> None:
    """Every public name of the main modules appears in a (tested) example, or is excused."""
    import importlib

    used: set[tuple[str, str]] = set()
    for _, _, code in _all_python_blocks():
        used |= _names_used(code)
    missing = {
        f"{module}.{name}"
        for module in _EXAMPLE_MODULES
        for name in importlib.import_module(module).__all__
        if (module, name) not in used
    }
    assert sorted(missing) == sorted(_WITHOUT_EXAMPLE)


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


_MARK = re.compile(r"<!-- test(?::\s*(?:docker|podman|registry|continues|serves|pytest))? -->$")


def _run(
    code: str,
    tmp_path: Path,
    timeout: float,
    expected: Output | None = None,
    extra_env: dict[str, str] | None = None,
) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PLUGINKIT_ROOT", None)
    env.pop("PLUGINKIT_RUNTIME", None)
    env.pop("REGISTRY", None)
    env.update(extra_env or {})
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
    if expected is not None and expected.tail:
        assert result.stdout.endswith(expected.text), result.stdout
    elif expected is not None:
        assert result.stdout == expected.text
    return result.stdout


@pytest.mark.parametrize(("code", "expected"), _blocks(None))
def test_python_example_runs(code: str, expected: Output | None, tmp_path: Path) -> None:
    """A Python example marked <!-- test --> runs, printing what an "It prints" block shows."""
    _run(code, tmp_path, timeout=30, expected=expected)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize(("code", "expected"), _blocks("docker"))
def test_python_example_with_docker_runs(
    code: str, expected: Output | None, tmp_path: Path
) -> None:
    """A Python example marked <!-- test: docker --> runs against a Docker engine."""
    _run(code, tmp_path, timeout=110, expected=expected)


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.parametrize(("code", "expected"), _blocks("podman"))
def test_python_example_with_podman_runs(
    code: str, expected: Output | None, tmp_path: Path, podman_engine: Any
) -> None:
    """A Python example marked <!-- test: podman --> runs with DOCKER_HOST at Podman's API."""
    env = {"DOCKER_HOST": podman_engine.url}
    printed = _run(code, tmp_path, timeout=170, expected=expected, extra_env=env)
    assert printed.startswith("Podman Engine "), printed  # Podman answered, not dockerd


@pytest.mark.registry
@pytest.mark.parametrize(("code", "expected"), _blocks("registry"))
def test_python_example_with_registry_runs(
    code: str, expected: Output | None, tmp_path: Path
) -> None:
    """A Python example marked <!-- test: registry --> runs with REGISTRY at a real registry."""
    from tests._registry import run_registry

    work = tmp_path / "registry"
    work.mkdir()
    example = tmp_path / "example"
    example.mkdir()
    with run_registry(work) as host:
        _run(code, example, timeout=60, expected=expected, extra_env={"REGISTRY": host})


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
