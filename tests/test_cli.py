"""The ``pluginkit`` command, driven through subprocesses as a user would.

Every test runs ``python -m pluginkit`` with a temporary ``--root`` and a short
``--run-root`` on the process runtime, so no Docker engine is needed (except
the one test that checks the hint given when the engine is unreachable).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
DESCRIPTION_LIMIT = 45


class Cli:
    """Runs ``python -m pluginkit`` on one temporary root."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.run_root = tmp / "r"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PLUGINKIT_RUNTIME": "process",
        }
        self.env.pop("PLUGINKIT_ROOT", None)

    def __call__(
        self, *args: str, stdin: Any = subprocess.DEVNULL, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pluginkit", "--root", str(self.root)]
        command += ["--run-root", str(self.run_root), *args]
        return subprocess.run(
            command,
            stdin=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; return its stdout."""
        result = self(*args)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return result.stdout

    def sockets(self) -> list[Path]:
        """The plugin sockets currently present under the run root."""
        # Not the stable by-name links, which point at these same sockets.
        return sorted(
            p for p in self.run_root.rglob("*.sock") if p.is_socket() and not p.is_symlink()
        )


@pytest.fixture
def cli(short_tmp: Path) -> Iterator[Cli]:
    runner = Cli(short_tmp)
    try:
        yield runner
    finally:
        # Never leave a plugin process behind, whatever the test did. Only
        # plugins that were started have a directory under the run root.
        if runner.run_root.is_dir() and any(runner.run_root.iterdir()):
            ids = runner("ls", "-q", "--no-trunc").stdout.split()
            if ids:
                runner("rm", "-f", *ids)


@pytest.fixture
def plugin_dir() -> Path:
    """The bundled example plugin's directory (config.json + rootfs/)."""
    from pluginkit.examples.localvolume import plugin_dir

    return Path(plugin_dir())


def broken_plugin(directory: Path) -> Path:
    """A plugin directory whose process writes three lines to stderr and exits 3."""
    (directory / "rootfs").mkdir(parents=True)
    config = {
        "Description": "dies at once",
        "Entrypoint": ["sh", "-c", "echo first >&2; echo second >&2; echo last >&2; exit 3"],
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "broken.sock"},
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, to talk to a plugin without pluginkit's client."""

    def __init__(self, path: Path) -> None:
        super().__init__("plugin.moby.localhost", timeout=5)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def activate(path: Path) -> Any:
    """POST /Plugin.Activate on the socket and return the decoded reply."""
    conn = UnixHTTPConnection(path)
    try:
        conn.request("POST", "/Plugin.Activate", body=b"")
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def answers(path: Path) -> bool:
    """Tell whether a plugin answers on the socket."""
    try:
        activate(path)
    except OSError:
        return False
    return True


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing command wrote on stderr."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- the whole cycle ------------------------------------------------------------


@pytest.mark.slow
def test_full_cycle_on_the_process_runtime(cli: Cli, plugin_dir: Path) -> None:
    """create -> set -> enable -> ls -> inspect -> call -> rm refused -> disable -> rm works."""
    assert cli.ok("create", "localvolume", str(plugin_dir)) == "localvolume\n"
    volumes = cli.root.parent / "vols"
    assert cli.ok("set", "localvolume", f"LOCALVOLUME_ROOT={volumes}") == ""
    assert cli.ok("enable", "localvolume") == "localvolume\n"

    [record] = json.loads(cli.ok("inspect", "localvolume"))
    assert record["Name"] == "localvolume:latest"
    assert record["Enabled"] is True
    assert f"LOCALVOLUME_ROOT={volumes}" in record["Settings"]["Env"]
    plugin_id = record["Id"]
    description = record["Config"]["Description"]
    header, row = cli.ok("ls").splitlines()
    assert header.split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    assert row.startswith(plugin_id[:12] + "   ")
    assert "localvolume:latest" in row
    assert description[:20] in row
    assert row.endswith("true")

    assert (
        json.loads(cli.ok("call", "localvolume", "VolumeDriver.Create", '{"Name": "demo"}')) == {}
    )
    listed = json.loads(cli.ok("call", "localvolume", "VolumeDriver.List"))
    assert [v["Name"] for v in listed["Volumes"]] == ["demo"]
    assert (volumes / "demo" / "_data").is_dir()

    refused = cli("rm", "localvolume")
    assert refused.returncode == 1
    assert error_line(refused) == "Error: plugin localvolume:latest is enabled"

    assert cli.ok("disable", "localvolume") == "localvolume\n"
    assert cli.ok("rm", "localvolume") == "localvolume\n"
    assert cli.ok("ls", "-q") == ""


@pytest.mark.slow
def test_plugin_outlives_the_command_and_stops_on_disable(cli: Cli, plugin_dir: Path) -> None:
    """An enabled plugin keeps answering after enable returns; disable stops it."""
    cli.ok("create", "localvolume", str(plugin_dir))
    cli.ok("set", "localvolume", f"LOCALVOLUME_ROOT={cli.root.parent / 'vols'}")
    cli.ok("enable", "localvolume")
    [sock] = cli.sockets()
    assert activate(sock) == {"Implements": ["VolumeDriver"]}
    # A second invocation re-attaches (live restore) instead of starting another.
    cli.ok("call", "localvolume", "VolumeDriver.List")
    assert cli.sockets() == [sock]
    assert answers(sock)

    cli.ok("disable", "localvolume")
    assert not answers(sock)


# -- ls, inspect, formats ---------------------------------------------------------


def test_ls_empty_prints_docker_header(cli: Cli) -> None:
    """With no plugins, ls prints docker plugin ls's header only."""
    assert cli.ok("ls") == "ID        NAME      DESCRIPTION   ENABLED\n"


def test_ls_formats(cli: Cli, plugin_dir: Path) -> None:
    """-q prints 12-char ids, --no-trunc full ids, --format json one object per line."""
    cli.ok("create", "localvolume", str(plugin_dir))
    [record] = json.loads(cli.ok("inspect", "localvolume"))
    full_id = record["Id"]
    assert cli.ok("ls", "-q") == full_id[:12] + "\n"
    assert cli.ok("ls", "-q", "--no-trunc") == full_id + "\n"
    [line] = cli.ok("ls", "--format", "json", "--no-trunc").splitlines()
    assert json.loads(line) == {
        "Description": record["Config"]["Description"],
        "Enabled": False,
        "ID": full_id,
        "Name": "localvolume:latest",
        "PluginReference": record.get("PluginReference", ""),
    }


def test_ls_filters(cli: Cli, plugin_dir: Path) -> None:
    """--filter enabled=/capability= select plugins like docker plugin ls."""
    cli.ok("create", "localvolume", str(plugin_dir))
    full_id = json.loads(cli.ok("inspect", "localvolume"))[0]["Id"]
    assert cli.ok("ls", "-q", "--filter", "enabled=false") == full_id[:12] + "\n"
    assert cli.ok("ls", "-q", "--filter", "enabled=true") == ""
    assert cli.ok("ls", "-q", "--filter", "capability=volumedriver") == full_id[:12] + "\n"
    assert cli.ok("ls", "-q", "--filter", "capability=authz") == ""


@pytest.mark.parametrize(
    ("filter_arg", "message"),
    [
        ("color=red", "Error: invalid filter 'color'"),
        ("enabled=maybe", "Error: invalid filter 'enabled=[maybe]'"),
    ],
)
def test_ls_bad_filter(cli: Cli, filter_arg: str, message: str) -> None:
    """A bad --filter is one error line and exit status 1, as docker's."""
    result = cli("ls", "--filter", filter_arg)
    assert result.returncode == 1
    assert error_line(result) == message


def test_ls_filter_without_equals_is_a_usage_error(cli: Cli) -> None:
    """A --filter without '=' is bad usage (exit 2), as Docker's flag parser says."""
    result = cli("ls", "--filter", "enabled")
    assert result.returncode == 2
    assert error_line(result) == (
        "Error: argument -f/--filter: bad format of filter (expected name=value): enabled "
        "(see 'pluginkit ls --help')"
    )


def test_inspect_unknown_plugin(cli: Cli) -> None:
    """inspect of an unknown name prints [] and Docker's not-found text."""
    result = cli("inspect", "nosuch")
    assert result.returncode == 1
    assert json.loads(result.stdout) == []
    assert error_line(result) == 'Error: plugin "nosuch" not found'


def test_description_is_truncated_like_docker(cli: Cli, plugin_dir: Path, short_tmp: Path) -> None:
    """Descriptions longer than 45 characters end in an ellipsis unless --no-trunc."""
    target = short_tmp / "long"
    shutil.copytree(plugin_dir, target, symlinks=True)
    config = json.loads((target / "config.json").read_text())
    config = {k: v for k, v in config.items() if k.lower() != "description"}
    config["Description"] = "x" * 50
    (target / "config.json").write_text(json.dumps(config))
    cli.ok("create", "long", str(target))
    row = cli.ok("ls").splitlines()[1]
    assert "x" * 44 + "…" in row
    assert "x" * 45 not in row
    assert "x" * 50 in cli.ok("ls", "--no-trunc")


# -- install and privileges -----------------------------------------------------------


def test_privileges_lists_what_install_asks(cli: Cli, plugin_dir: Path) -> None:
    """privileges prints Docker's bullet list; --format json the API shape."""
    assert cli.ok("privileges", str(plugin_dir)) == " - network: [host]\n"
    [privilege] = json.loads(cli.ok("privileges", "--format", "json", str(plugin_dir)))
    assert privilege["Name"] == "network"
    assert privilege["Value"] == ["host"]


def test_install_without_terminal_refuses(cli: Cli, plugin_dir: Path) -> None:
    """install cannot ask without a terminal: it refuses and installs nothing."""
    result = cli("install", str(plugin_dir), "--alias", "priv")
    assert result.returncode == 1
    assert error_line(result) == (
        f'Error: plugin "{plugin_dir}" requests privileges and there is no terminal '
        f"to ask; review them with 'pluginkit privileges {plugin_dir}' "
        "and pass --grant-all-permissions"
    )
    assert cli.ok("ls", "-q") == ""


def test_install_asks_on_a_terminal(cli: Cli, plugin_dir: Path) -> None:
    """On a terminal, install shows the privileges and a 'no' installs nothing."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")
        result = cli("install", str(plugin_dir), "--alias", "priv", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1
    assert result.stdout == (
        f'Plugin "{plugin_dir}" is requesting the following privileges:\n'
        " - network: [host]\n"
        "Do you grant the above permissions? [y/N] "
    )
    assert error_line(result) == "Error: permission denied"
    assert cli.ok("ls", "-q") == ""


def test_install_granted_on_a_terminal(cli: Cli, plugin_dir: Path) -> None:
    """On a terminal, a 'y' installs the plugin with the privileges shown."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"y\n")
        result = cli("install", str(plugin_dir), "--alias", "priv", "--disable", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f'Plugin "{plugin_dir}" is requesting the following privileges:\n'
        " - network: [host]\n"
        "Do you grant the above permissions? [y/N] "
        f"Installed plugin {plugin_dir}\n"
    )
    assert cli.ok("ls", "--format", "json").count('"Name":"priv:latest"') == 1


@pytest.mark.parametrize("grant", [[], ["--grant-all-permissions"]], ids=["ask", "grant-all"])
def test_install_from_a_missing_source(cli: Cli, short_tmp: Path, grant: list[str]) -> None:
    """install of a path that does not exist says so, whether or not it would ask."""
    missing = short_tmp / "missing"
    result = cli("install", str(missing), "--alias", "x", *grant)
    assert result.returncode == 1
    assert result.stdout == ""
    assert error_line(result) == f"Error: plugin source {missing} does not exist"


def test_install_of_a_taken_name_fails_before_asking(cli: Cli, plugin_dir: Path) -> None:
    """install under a name in use fails with Docker's text, without asking for privileges."""
    cli.ok("create", "lv", str(plugin_dir))
    result = cli("install", str(plugin_dir), "--alias", "lv")
    assert result.returncode == 1
    assert result.stdout == ""
    assert error_line(result) == "Error: plugin lv:latest already exists"


@pytest.mark.slow
def test_install_grant_all_sets_and_enables(cli: Cli, plugin_dir: Path) -> None:
    """install --grant-all-permissions applies KEY=VAL settings, then enables."""
    out = cli.ok(
        "install",
        str(plugin_dir),
        "--alias",
        "priv",
        "--grant-all-permissions",
        f"LOCALVOLUME_ROOT={cli.root.parent / 'vols'}",
    )
    assert out == f"Installed plugin {plugin_dir}\n"
    [record] = json.loads(cli.ok("inspect", "priv"))
    assert record["Enabled"] is True
    assert f"LOCALVOLUME_ROOT={cli.root.parent / 'vols'}" in record["Settings"]["Env"]
    cli.ok("disable", "priv")


def test_install_with_a_bad_setting_leaves_nothing(cli: Cli, plugin_dir: Path) -> None:
    """A bad KEY=VAL on install fails with Docker's text and removes the plugin again."""
    result = cli(
        "install", str(plugin_dir), "--alias", "lv", "--grant-all-permissions", "--disable", "=x"
    )
    assert result.returncode == 1
    assert error_line(result) == "Error: invalid format, must be <name>[.<field>][=<value>]"
    assert cli.ok("ls", "-q") == ""


# -- legacy plugins -------------------------------------------------------------------


@pytest.fixture
def legacy_dirs(short_tmp: Path) -> Iterator[tuple[Path, Path]]:
    """A socket dir with a running legacy volume plugin ``legacyvol``, and an empty spec dir."""
    from pluginkit.sdk import PluginServer

    sockets = short_tmp / "sockets"
    specs = short_tmp / "specs"
    sockets.mkdir()
    specs.mkdir()
    server = PluginServer(implements=["VolumeDriver"])
    server.add_handler("VolumeDriver.List", lambda request: {"Volumes": [{"Name": "old"}]})
    server.start(str(sockets / "legacyvol.sock"))
    try:
        yield sockets, specs
    finally:
        server.stop()


def test_discover_lists_legacy_plugins(cli: Cli, legacy_dirs: tuple[Path, Path]) -> None:
    """discover activates each legacy plugin found and shows what it implements."""
    sockets, specs = legacy_dirs
    out = cli.ok("discover", "--socket-dir", str(sockets), "--spec-dir", str(specs))
    address = f"unix://{sockets}/legacyvol.sock"
    assert out.splitlines() == [
        "NAME        CAPABILITIES   ADDRESS",
        f"legacyvol   volumedriver   {address}",
    ]


def test_discover_reports_a_broken_spec_and_goes_on(
    cli: Cli, legacy_dirs: tuple[Path, Path]
) -> None:
    """A bad spec file is a warning line; the other plugins are still listed."""
    sockets, specs = legacy_dirs
    (specs / "broken.spec").write_text("no-scheme-here\n")
    result = cli("discover", "--socket-dir", str(sockets), "--spec-dir", str(specs))
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["NAME", "legacyvol"]
    assert error_line(result) == (
        f'Warning: plugin "broken": {specs / "broken.spec"}: invalid plugin address '
        "'no-scheme-here': no scheme (expected unix://, tcp://, http:// or https://)"
    )


def test_call_legacy_plugin(cli: Cli, legacy_dirs: tuple[Path, Path]) -> None:
    """call falls back to legacy plugins, as Docker's lookup does."""
    sockets, specs = legacy_dirs
    out = cli.ok(
        "call",
        "--socket-dir",
        str(sockets),
        "--spec-dir",
        str(specs),
        "legacyvol",
        "VolumeDriver.List",
    )
    assert out == '{\n    "Volumes": [\n        {\n            "Name": "old"\n        }\n    ]\n}\n'


def test_install_from_a_tar_archive(cli: Cli, plugin_dir: Path, short_tmp: Path) -> None:
    """install takes a tar of a plugin directory and names the plugin after it."""
    archive = short_tmp / "lvol.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(plugin_dir, arcname=".")
    out = cli.ok("install", str(archive), "--grant-all-permissions", "--disable")
    assert out == f"Installed plugin {archive}\n"
    [record] = json.loads(cli.ok("inspect", "lvol"))
    assert record["Name"] == "lvol:latest"
    assert record["Enabled"] is False


def test_rm_goes_on_past_a_failure(cli: Cli, plugin_dir: Path) -> None:
    """rm removes every name it can, reports the others, and exits 1."""
    cli.ok("create", "one", str(plugin_dir))
    cli.ok("create", "two", str(plugin_dir))
    result = cli("rm", "one", "nosuch", "two")
    assert result.returncode == 1
    assert result.stdout == "one\ntwo\n"
    assert error_line(result) == 'Error: plugin "nosuch" not found'
    assert cli.ok("ls", "-q") == ""


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("enable", "nosuch"), ("disable", "nosuch"), ("rm", "nosuch"), ("set", "nosuch", "A=1")],
)
def test_unknown_plugin(cli: Cli, args: tuple[str, ...]) -> None:
    """Commands on an unknown plugin fail with Docker's not-found text."""
    result = cli(*args)
    assert result.returncode == 1
    assert error_line(result) == 'Error: plugin "nosuch" not found'


def test_bad_set_argument(cli: Cli, plugin_dir: Path) -> None:
    """A malformed set argument fails with Docker's text."""
    cli.ok("create", "localvolume", str(plugin_dir))
    result = cli("set", "localvolume", "=1")
    assert result.returncode == 1
    assert error_line(result) == "Error: invalid format, must be <name>[.<field>][=<value>]"


def test_set_unknown_setting(cli: Cli, plugin_dir: Path) -> None:
    """Setting something the config does not declare names it, as Docker does."""
    cli.ok("create", "localvolume", str(plugin_dir))
    result = cli("set", "localvolume", "NOPE=1")
    assert result.returncode == 1
    assert error_line(result) == 'Error: setting "NOPE" not found in the plugin configuration'


def test_create_twice(cli: Cli, plugin_dir: Path) -> None:
    """Creating a name that exists fails with Docker's text."""
    cli.ok("create", "localvolume", str(plugin_dir))
    result = cli("create", "localvolume", str(plugin_dir))
    assert result.returncode == 1
    assert error_line(result) == "Error: plugin localvolume:latest already exists"


def test_create_from_missing_dir(cli: Cli, short_tmp: Path) -> None:
    """create from a directory that does not exist fails with one line naming it."""
    missing = short_tmp / "missing"
    result = cli("create", "x", str(missing))
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("Error: ")
    assert str(missing) in line


def test_create_without_config_json(cli: Cli, short_tmp: Path) -> None:
    """create from a directory without config.json prints Docker's "config not found"."""
    context = short_tmp / "noconfig"
    (context / "rootfs").mkdir(parents=True)
    result = cli("create", "x", str(context))
    assert result.returncode == 1
    assert result.stdout == ""
    assert error_line(result) == f"Error: config not found: {context / 'config.json'}"
    assert cli.ok("ls", "-q") == ""


def test_create_with_broken_config_json(cli: Cli, short_tmp: Path) -> None:
    """create with a config.json that is not JSON names the file, line and column."""
    context = short_tmp / "badjson"
    (context / "rootfs").mkdir(parents=True)
    (context / "config.json").write_text("{bad")
    result = cli("create", "x", str(context))
    assert result.returncode == 1
    assert error_line(result) == (
        f"Error: invalid plugin config {context / 'config.json'}: line 1 column 2: "
        "Expecting property name enclosed in double quotes"
    )
    assert cli.ok("ls", "-q") == ""


@pytest.mark.slow
def test_plugin_that_dies_on_enable(cli: Cli, short_tmp: Path) -> None:
    """A plugin dying at start: one line with what failed and its last stderr line."""
    cli.ok("create", "broken", str(broken_plugin(short_tmp / "broken")))
    result = cli("enable", "broken")
    assert result.returncode == 1
    assert error_line(result) == (
        "Error: plugin broken:latest exited with code 3 before it was ready; "
        "last stderr lines: last (--debug shows all)"
    )
    debug = cli("--debug", "enable", "broken")
    assert debug.stderr.endswith("last stderr lines:\nfirst\nsecond\nlast\n")


def test_call_bad_json(cli: Cli) -> None:
    """call with a body that is not JSON fails before looking anything up."""
    result = cli("call", "localvolume", "VolumeDriver.Create", "{nope")
    assert result.returncode == 1
    assert error_line(result) == (
        "Error: invalid JSON for VolumeDriver.Create: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


def test_call_unknown_plugin(cli: Cli, short_tmp: Path) -> None:
    """call of a plugin neither managed nor legacy fails with the not-found text."""
    empty = short_tmp / "empty"
    empty.mkdir()
    result = cli(
        "call", "--socket-dir", str(empty), "--spec-dir", str(empty), "nosuch", "VolumeDriver.List"
    )
    assert result.returncode == 1
    assert error_line(result) == 'Error: plugin "nosuch" not found'


def test_usage_error_exits_2(cli: Cli) -> None:
    """A usage error is one line and exit status 2."""
    result = cli("rm")
    assert result.returncode == 2
    assert error_line(result) == (
        "Error: the following arguments are required: NAME (see 'pluginkit rm --help')"
    )


@pytest.mark.parametrize("command", ["ls", "list"])
def test_extra_arguments_point_at_the_command_help(cli: Cli, command: str) -> None:
    """Arguments a command does not take are bad usage pointing at that command's help."""
    result = cli(command, "extra")
    assert result.returncode == 2
    assert error_line(result) == "Error: unrecognized arguments: extra (see 'pluginkit ls --help')"


def test_call_method_without_interface(cli: Cli) -> None:
    """A METHOD without an Interface. prefix is a usage error."""
    result = cli("call", "x", "List")
    assert result.returncode == 2
    assert error_line(result) == (
        "Error: METHOD must look like Interface.Method (e.g. VolumeDriver.List), not 'List'"
    )


def test_bad_runtime_env(cli: Cli) -> None:
    """An unknown PLUGINKIT_RUNTIME is a usage error naming the variable."""
    cli.env["PLUGINKIT_RUNTIME"] = "podman"
    result = cli("ls")
    assert result.returncode == 2
    assert (
        error_line(result)
        == "Error: PLUGINKIT_RUNTIME must be one of docker, process, not 'podman'"
    )


def test_unreachable_engine_points_at_process_runtime(cli: Cli, short_tmp: Path) -> None:
    """With no Docker engine, the error says how to run without one."""
    cli.env["DOCKER_HOST"] = f"unix://{short_tmp}/no-engine.sock"
    result = cli("--runtime", "docker", "ls")
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(
        f"Error: cannot reach the Docker engine at unix://{short_tmp}/no-engine.sock ("
    )
    assert line.endswith(
        "use --runtime process (or PLUGINKIT_RUNTIME=process) to run plugins as host processes"
    )


def test_debug_shows_traceback(cli: Cli) -> None:
    """--debug prints the traceback before the error line."""
    plain = cli("enable", "nosuch")
    assert "Traceback" not in plain.stderr
    debug = cli("--debug", "enable", "nosuch")
    assert debug.returncode == 1
    assert "Traceback (most recent call last):" in debug.stderr
    assert debug.stderr.splitlines()[-1] == 'Error: plugin "nosuch" not found'


# -- Docker runtime ------------------------------------------------------------------


@pytest.mark.docker
def test_docker_runtime_is_the_default(cli: Cli) -> None:
    """Without --runtime or PLUGINKIT_RUNTIME the command talks to the Docker engine."""
    del cli.env["PLUGINKIT_RUNTIME"]
    assert cli.ok("ls") == "ID        NAME      DESCRIPTION   ENABLED\n"


@pytest.mark.docker
@pytest.mark.go
@pytest.mark.slow
def test_docker_runtime_cycle_shows_import_progress(cli: Cli, short_tmp: Path) -> None:
    """On the Docker runtime, create imports the rootfs (with progress); enable runs a container."""
    import docker
    from _dockerrt_helpers import make_plugin_dir, remove_docker_leftovers

    cli.env["PLUGINKIT_RUNTIME"] = "docker"
    created = cli("create", "pkcli", str(make_plugin_dir(short_tmp / "goplugin")))
    client = docker.from_env()
    plugin_id = ""
    try:
        assert created.returncode == 0, created.stderr
        assert created.stdout == "pkcli\n"
        started, finished = created.stderr.splitlines()
        assert re.fullmatch(
            r"Importing the rootfs of pkcli:latest into the Docker engine \(\d+\.\d MB\)\.\.\.",
            started,
        )
        assert finished == "Importing the rootfs of pkcli:latest into the Docker engine: done"
        plugin_id = json.loads(cli.ok("inspect", "pkcli"))[0]["Id"]
        # The container was made ahead by create: enable only starts it, silently.
        assert cli.ok("enable", "pkcli") == "pkcli\n"
        reply = json.loads(cli.ok("call", "pkcli", "VolumeDriver.List"))
        assert reply["Volumes"] == []
        label = f"pluginkit.plugin.id={plugin_id}"
        assert len(client.api.containers(filters={"label": label})) == 1
        assert cli.ok("disable", "pkcli") == "pkcli\n"
        assert client.api.containers(filters={"label": label}) == []
        assert cli.ok("rm", "pkcli") == "pkcli\n"
    finally:
        cli("rm", "-f", "pkcli")
        if plugin_id:
            remove_docker_leftovers(client, [plugin_id])
        client.close()


@attrs.frozen
class Progress:
    """What DockerRuntime reports while it imports a rootfs."""

    plugin_id: str
    name: str
    done: int
    total: int


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_import_progress_without_terminal() -> None:
    """Off a terminal, an import is one line when it starts and one when it ends."""
    from pluginkit.cli import _ImportProgress

    stream = Stream(tty=False)
    show = _ImportProgress(stream)
    for done in (0, 1_000_000, 2_000_000, 2_500_000):
        show(Progress("a" * 64, "lv:latest", done, 2_500_000))
    assert stream.getvalue() == (
        "Importing the rootfs of lv:latest into the Docker engine (2.5 MB)...\n"
        "Importing the rootfs of lv:latest into the Docker engine: done\n"
    )


def test_import_progress_on_a_terminal() -> None:
    """On a terminal, one line is rewritten in place and ended when done."""
    from pluginkit.cli import _ImportProgress

    stream = Stream(tty=True)
    show = _ImportProgress(stream)
    show(Progress("a" * 64, "lv:latest", 1_000_000, 2_000_000))
    show(Progress("a" * 64, "lv:latest", 2_000_000, 2_000_000))
    label = "\rImporting the rootfs of lv:latest into the Docker engine: "
    assert stream.getvalue() == (f"{label}1.0 MB/2.0 MB (50%){label}2.0 MB/2.0 MB (100%)\n")


# -- the command's own parsers (in-process) ---------------------------------------------


@given(st.lists(st.sampled_from(["true", "1", "TRUE"]), min_size=1))
def test_filters_enabled_true(values: list[str]) -> None:
    """Any mix of true/1 spellings means enabled=True."""
    from pluginkit.cli import _parse_filters

    assert _parse_filters([f"enabled={v}" for v in values]) == ([], True)


@given(st.lists(st.text(min_size=1).filter(lambda c: "=" not in c), max_size=3))
def test_filters_capabilities_kept_in_order(capabilities: list[str]) -> None:
    """capability= values are returned as given, in order."""
    from pluginkit.cli import _parse_filters

    filters = [f"capability={c}" for c in capabilities]
    assert _parse_filters(filters) == (capabilities, None)


@given(st.text().filter(lambda k: "=" not in k and k not in ("enabled", "capability")), st.text())
def test_filters_unknown_key(key: str, value: str) -> None:
    """Any other key is refused with Docker's text."""
    from pluginkit.cli import CLIError, _parse_filters

    with pytest.raises(CLIError) as info:
        _parse_filters([f"{key}={value}"])
    assert str(info.value) == f"invalid filter '{key}'"


def test_filters_conflicting_enabled() -> None:
    """enabled=true and enabled=false together are refused."""
    from pluginkit.cli import CLIError, _parse_filters

    with pytest.raises(CLIError, match=r"^invalid filter 'enabled=\[true false\]'$"):
        _parse_filters(["enabled=true", "enabled=0"])


@given(st.text(), st.integers(min_value=1, max_value=80))
def test_ellipsis(text: str, width: int) -> None:
    """Cut text is at most ``width`` long, keeps its start and ends in an ellipsis."""
    from pluginkit.cli import _ellipsis

    cut = _ellipsis(text, width)
    if len(text) <= width:
        assert cut == text
    else:
        assert len(cut) == width
        assert cut == text[: width - 1] + "…"


@given(st.lists(st.text(alphabet="abc \t", min_size=1), min_size=1, max_size=6))
def test_one_line(lines: list[str]) -> None:
    """Folded messages are one line: the first and the last non-blank lines."""
    from pluginkit.cli import _one_line

    message = "\n".join(lines)
    folded = _one_line(message, debug=False)
    kept = [line.strip() for line in lines if line.strip()]
    if len(kept) <= 1:
        assert folded == message
    else:
        assert "\n" not in folded
        assert folded.startswith(f"{kept[0]} {kept[-1]}")
    assert _one_line(message, debug=True) == message


@pytest.mark.slow
def test_podman_register_writes_and_removes_the_drop_in(cli: Cli, plugin_dir: Path) -> None:
    """podman-register maps the enabled volume plugin to its stable socket; then removes it."""
    drop_ins = cli.root.parent / "conf.d"
    cli.ok("create", "localvolume", str(plugin_dir))
    cli.ok("set", "localvolume", f"LOCALVOLUME_ROOT={cli.root.parent / 'vols'}")
    cli.ok("enable", "localvolume")
    path = drop_ins / "50-pluginkit.conf"
    assert cli.ok("podman-register", "--dir", str(drop_ins)) == f"{path}\n"
    stable = cli.run_root / "by-name" / "localvolume:latest.sock"
    assert path.read_text().splitlines()[-2:] == [
        "[engine.volume_plugins]",
        f'"localvolume" = "{stable}"',
    ]
    assert stable.resolve().is_socket()
    cli.ok("disable", "localvolume")
    assert cli.ok("podman-register", "--dir", str(drop_ins)) == (
        f"{path} (removed: no enabled volume plugin)\n"
    )
    assert not path.exists()
    assert not stable.is_symlink()
