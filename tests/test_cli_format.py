"""`--version`, `completion`, `ls --format` and `inspect -f` as Docker users expect.

The formats are checked for exact output; one test (marked ``docker``)
creates the same plugin directory in the real engine (``docker plugin
create``) and in pluginkit and compares what ``docker plugin ls/inspect
--format`` prints with what ``pluginkit`` prints, form by form.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pluginkit

REPO = Path(__file__).resolve().parent.parent

CONFIG = {
    "Description": "A test volume plugin for format checks",
    "Documentation": "https://example.com/doc",
    "Entrypoint": ["/bin/true"],
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "fmt.sock"},
    "Env": [
        {"Name": "DEBUG", "Settable": ["value"], "Value": "0"},
        {"Name": "MODE", "Value": "x y"},
    ],
    "Args": {"Name": "args", "Settable": ["value"], "Value": ["--a", "b"]},
    "Linux": {"Capabilities": ["CAP_SYS_ADMIN"]},
}


def plugin_dir(base: Path) -> Path:
    (base / "rootfs" / "bin").mkdir(parents=True)
    (base / "rootfs" / "bin" / "marker").write_text("x\n")
    (base / "config.json").write_text(json.dumps(CONFIG))
    return base


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.root, self.run_root = tmp / "root", tmp / "r"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PLUGINKIT_RUNTIME": "process"}
        self.env.pop("PLUGINKIT_ROOT", None)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pluginkit", "--root", str(self.root)]
        return subprocess.run(
            [*command, "--run-root", str(self.run_root), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert (result.returncode, result.stderr) == (0, "")
        return result.stdout


@pytest.fixture
def cli(short_tmp: Path) -> Cli:
    return Cli(short_tmp)


@pytest.fixture
def created(cli: Cli, short_tmp: Path) -> tuple[Cli, str]:
    """A CLI whose root holds one disabled plugin, fmt:latest; and its full id."""
    cli.ok("create", "fmt", str(plugin_dir(short_tmp / "dir")))
    [record] = json.loads(cli.ok("inspect", "fmt"))
    return cli, record["Id"]


def test_version(cli: Cli) -> None:
    """--version prints the package version, as `docker --version` does, and exits 0."""
    assert cli.ok("--version") == f"pluginkit version {pluginkit.__version__}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "tcsh"])
def test_completion_script(cli: Cli, shell: str) -> None:
    """completion SHELL prints a script naming every command; the shell accepts its syntax."""
    script = cli.ok("completion", shell)
    for command in ("ls", "inspect", "create", "install", "enable", "disable", "rm", "completion"):
        assert command in script
    if shell in ("bash", "zsh", "fish") and shutil.which(shell):
        checked = subprocess.run([shell, "-n"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_completion_of_an_unknown_shell_is_bad_usage(cli: Cli) -> None:
    """An unsupported shell is a usage error (exit 2) listing the choices."""
    result = cli("completion", "powershell")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: argument SHELL: invalid choice: 'powershell'")


def test_install_of_a_registry_reference_goes_to_the_registry(cli: Cli) -> None:
    """install vieux/sshfs asks Docker Hub; failing, it says it is not a path either."""
    from tests._registry import free_port

    proxy = f"http://127.0.0.1:{free_port()}"  # Docker Hub behind a proxy that refuses
    cli.env.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy)
    result = cli("install", "vieux/sshfs")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "docker.io/vieux/sshfs:latest: resolving\n"
        "Error: cannot reach registry registry-1.docker.io: connection refused "
        "(and vieux/sshfs is not a file or directory)\n"
    )


def test_ls_formats(created: tuple[Cli, str]) -> None:
    """ls --format: Go templates per row, json, table and table TEMPLATE (with \\t)."""
    cli, full_id = created
    short = full_id[:12]
    ref = json.loads(cli.ok("inspect", "fmt"))[0]["PluginReference"]
    assert cli.ok("ls", "--format", "{{.ID}}") == f"{short}\n"
    assert cli.ok("ls", "--no-trunc", "--format", "{{.ID}}") == f"{full_id}\n"
    assert cli.ok("ls", "--format", "{{.Name}}") == "fmt:latest\n"
    assert cli.ok("ls", "--format", "{{.Enabled}}") == "false\n"
    assert cli.ok("ls", "--format", "{{.Name}}: {{.Description}}") == (
        "fmt:latest: A test volume plugin for format checks\n"
    )
    row = {
        "Description": "A test volume plugin for format checks",
        "Enabled": False,
        "ID": short,
        "Name": "fmt:latest",
        "PluginReference": ref,
    }
    compact = json.dumps(row, separators=(",", ":"), sort_keys=True) + "\n"
    assert cli.ok("ls", "--format", "{{json .}}") == compact
    assert cli.ok("ls", "--format", "json") == compact
    assert (
        cli.ok("ls", "--format", "table")
        == cli.ok("ls")
        == (
            "ID             NAME         DESCRIPTION                              ENABLED\n"
            f"{short}   fmt:latest   A test volume plugin for format checks   false\n"
        )
    )
    assert cli.ok("ls", "--format", "table {{.Name}}\\t{{.Enabled}}") == (
        "NAME         ENABLED\nfmt:latest   false\n"
    )


def test_inspect_formats(created: tuple[Cli, str]) -> None:
    """inspect -f/--format applies the template to each plugin's inspect JSON."""
    cli, full_id = created
    assert cli.ok("inspect", "-f", "{{.ID}}", "fmt") == f"{full_id}\n"
    assert cli.ok("inspect", "--format", "{{.Id}} {{.Name}} {{.Enabled}}", "fmt") == (
        f"{full_id} fmt:latest false\n"
    )
    assert cli.ok("inspect", "-f", "{{.Settings.Env}}", "fmt") == "[DEBUG=0 MODE=x y]\n"
    assert cli.ok("inspect", "-f", "{{json .Settings}}", "fmt") == (
        '{"Args":["--a","b"],"Devices":[],"Env":["DEBUG=0","MODE=x y"],"Mounts":[]}\n'
    )
    assert cli.ok("inspect", "-f", "{{.Config.Description}}", "fmt", "fmt") == (
        "A test volume plugin for format checks\n" * 2
    )
    [record] = json.loads(cli.ok("inspect", "fmt"))
    assert json.loads(cli.ok("inspect", "-f", "{{json .}}", "fmt")) == record


def test_bad_templates_fail_with_docker_wording(created: tuple[Cli, str]) -> None:
    """A template error is one Error: line and exit status 1, for ls and inspect alike."""
    cli, _ = created
    result = cli("ls", "--format", "{{.Name")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: template parsing error: template: :1: unclosed action\n"
    result = cli("inspect", "-f", "{{.Foo}}", "fmt")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        'Error: template parsing error: template: :1:2: executing "" at <.Foo>: '
        'map has no entry for key "Foo"\n'
    )


# -- against the real engine ------------------------------------------------------------


@pytest.fixture
def docker_plugin(short_tmp: Path) -> Iterator[tuple[str, Path]]:
    """The same plugin directory created in the machine's Docker engine, as NAME:latest."""
    name = f"pk-fmt-{uuid.uuid4().hex[:8]}"
    directory = plugin_dir(short_tmp / "docker-dir")
    subprocess.run(
        ["docker", "plugin", "create", name, str(directory)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield name, directory
    finally:
        subprocess.run(["docker", "plugin", "rm", "-f", name], capture_output=True, timeout=60)


def _docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


LS_FORMATS = [
    "{{.ID}}",
    "{{.Name}}",
    "{{.Enabled}}",
    "{{.Description}}",
    "{{json .}}",
    "json",
    "{{.Name}}: {{if .Enabled}}on{{else}}off{{end}}",
]
INSPECT_FORMATS = [
    "{{.ID}}",
    "{{.Id}}",
    "{{.Name}}",
    "{{.Enabled}}",
    "{{.Settings.Env}}",
    "{{.Settings.Args}}",
    "{{.Settings.Mounts}}",
    "{{json .Settings}}",
    "{{json .Settings.Env}}",
    "{{.Config.Description}}",
    "{{.Config.Documentation}}",
    "{{.Config.Interface.Socket}}",
    "{{.Config.Interface.Types}}",
    "{{json .Config.Interface}}",
    "{{.Config.Linux.Capabilities}}",
    "{{.Config.Entrypoint}}",
    "{{len .Settings.Env}}",
    "{{index .Settings.Env 1}}",
    "{{range .Settings.Env}}{{.}},{{end}}",
    '{{join .Settings.Args ","}}',
    "{{if .Enabled}}on{{else}}off{{end}}",
    "{{.Name | upper}}",
]


@pytest.mark.docker
def test_formats_print_what_docker_prints(
    docker_plugin: tuple[str, Path], cli: Cli, short_tmp: Path
) -> None:
    """For the same plugin, each --format form prints what `docker plugin` prints."""
    name, directory = docker_plugin
    cli.ok("create", name, str(directory))
    docker_id = json.loads(_docker("plugin", "inspect", name))[0]["Id"]
    our_id = json.loads(cli.ok("inspect", name))[0]["Id"]

    def same_id(text: str) -> str:
        return text.replace(docker_id, our_id).replace(docker_id[:12], our_id[:12])

    for fmt in INSPECT_FORMATS:
        theirs = same_id(_docker("plugin", "inspect", "--format", fmt, name))
        assert cli.ok("inspect", "--format", fmt, name) == theirs, fmt
    for fmt in LS_FORMATS:
        # docker plugin ls has no name filter and the engine may hold other plugins:
        # keep the line of this one (its ID is unique).
        lines = _docker("plugin", "ls", "--format", "{{.ID}} " + fmt).splitlines()
        [theirs] = [line.split(" ", 1)[1] for line in lines if line.startswith(docker_id[:12])]
        if fmt == "json":
            [theirs] = [
                line
                for line in _docker("plugin", "ls", "--format", fmt).splitlines()
                if name in line
            ]
        theirs = same_id(theirs)
        # pluginkit records where a plugin came from; Docker, for create, the name.
        ours = cli.ok("ls", "--format", fmt).rstrip("\n")
        ours = ours.replace(json.dumps(str(directory))[1:-1], f"{name}:latest")
        assert ours == theirs, fmt
    header = _docker("plugin", "ls", "--format", "table {{.Name}}\\t{{.PluginReference}}").split(
        "\n"
    )[0]
    ours_header = cli.ok("ls", "--format", "table {{.Name}}\\t{{.PluginReference}}").split("\n")[0]
    assert ours_header.split() == header.split() == ["NAME", "IMAGE"]
