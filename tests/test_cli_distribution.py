"""``pluginkit install REF``, ``push``: progress lines, -q, errors (real registry, subprocesses)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._manager_helpers import write_plugin_dir
from tests._registry import free_port, run_registry
from tests.test_cli import Cli

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture
def cli(short_tmp: Path) -> Cli:
    return Cli(short_tmp)


def test_push_then_install_one_line_per_step(registry: str, cli: Cli, short_tmp: Path) -> None:
    """Without a terminal, push and install print one line per step on stderr."""
    src = write_plugin_dir(short_tmp / "src")
    cli.ok("create", "p", str(src))
    pushed = cli("push", "p", f"{registry}/team/cli:1")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == ""
    lines = pushed.stderr.splitlines()
    assert re.fullmatch(r"[0-9a-f]{12}: Pushing \(0\.0 MB\)", lines[0])
    assert re.fullmatch(r"[0-9a-f]{12}: Pushed", lines[1])
    digest = lines[-1].removeprefix("Digest: ")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    installed = cli("install", "--alias", "copy", "--disable", f"{registry}/team/cli:1")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == f"Installed plugin {registry}/team/cli:1\n"
    steps = installed.stderr.splitlines()
    assert steps[0] == f"{registry}/team/cli:1: resolving"
    layer = lines[0][:12]
    assert steps[1:] == [f"{layer}: Downloading (0.0 MB)", f"{layer}: Download complete"]
    again = cli("push", "-q", "copy", f"{registry}/team/cli:2")
    assert again.stdout == f"{digest}\n"
    assert again.stderr == ""
    third = cli("push", "p", f"{registry}/team/cli:3")  # blobs present: none sent again
    lines = third.stderr.splitlines()
    assert [line.partition(": ")[2] for line in lines[:2]] == ["Layer already exists"] * 2
    assert lines[2:] == [f"Digest: {digest}"]


def test_quiet_install(registry: str, cli: Cli, short_tmp: Path) -> None:
    """-q prints nothing but the result line."""
    cli.ok("create", "q", str(write_plugin_dir(short_tmp / "src")))
    cli.ok("push", "-q", "q", f"{registry}/team/quiet:1")
    assert cli.ok("install", "-q", "--disable", f"{registry}/team/quiet:1") == (
        f"Installed plugin {registry}/team/quiet:1\n"
    )


def test_install_errors_are_one_line(cli: Cli) -> None:
    """A registry that is down: exit 1 and the one-line error."""
    port = free_port()
    result = cli("install", "-q", f"localhost:{port}/team/p:1")
    assert result.returncode == 1
    assert result.stderr == (f"Error: cannot reach registry localhost:{port}: connection refused\n")


def test_save_and_load(cli: Cli, short_tmp: Path) -> None:
    """pluginkit save -o FILE, then load FILE under another root and an alias."""
    cli.ok("create", "team/b:1", str(write_plugin_dir(short_tmp / "src")))
    bundle = short_tmp / "b.tar"
    assert cli.ok("save", "team/b:1", "-o", str(bundle)) == ""
    other = Cli(short_tmp / "other")
    loaded = other("load", "--alias", "copy", str(bundle))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "Loaded plugin copy:latest\n"
    assert re.fullmatch(
        r"[0-9a-f]{12}: Downloading \(0\.0 MB\)\n[0-9a-f]{12}: Download complete\n",
        loaded.stderr,
    )
    assert other.ok("load", "-q", str(bundle)) == "Loaded plugin team/b:1\n"


def test_upgrade(registry: str, cli: Cli, short_tmp: Path) -> None:
    """pluginkit upgrade NAME REF swaps in the new version."""
    cli.ok("create", "u1", str(write_plugin_dir(short_tmp / "v1")))
    cli.ok("create", "u2", str(write_plugin_dir(short_tmp / "v2", Description="two")))
    cli.ok("push", "-q", "u1", f"{registry}/team/up:1")
    cli.ok("push", "-q", "u2", f"{registry}/team/up:2")
    cli.ok("install", "-q", "--disable", "--alias", "up", f"{registry}/team/up:1")
    assert cli.ok("upgrade", "-q", "up", f"{registry}/team/up:2") == (
        f"Upgraded plugin up:latest to {registry}/team/up:2\n"
    )
    [info] = json.loads(cli.ok("inspect", "up"))
    assert info["Config"]["Description"] == "two"
