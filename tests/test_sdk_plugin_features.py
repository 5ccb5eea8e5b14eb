"""What plugin authors asked for: activations seen, "no such volume", several names, logs."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PluginError
from pluginkit.sdk import PluginServer, VolumeDriver, volume
from tests._sdk_helpers import RawClient, wait_for

# -- activations -------------------------------------------------------------------


def test_activations_are_counted(short_tmp: Path) -> None:
    """server.activations counts Plugin.Activate calls; other calls do not count."""
    server = PluginServer(["VolumeDriver"])
    server.add_handler("VolumeDriver.List", lambda request: {"Volumes": []})
    assert server.activations == 0
    with server:
        server.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as client:
            for _ in range(3):
                assert client.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}
            client.call("VolumeDriver.List")
    assert server.activations == 3


@pytest.mark.parametrize("threads", [0, 2], ids=["inline", "threads"])
def test_activation_hooks_run_and_can_refuse(short_tmp: Path, threads: int) -> None:
    """on_activate hooks run in order on each handshake; one that raises answers 500."""
    server = PluginServer(["VolumeDriver"], threads=threads)
    seen: list[str] = []
    refuse = [False]

    @server.on_activate
    def first() -> None:
        seen.append("first")

    def second() -> None:
        seen.append("second")
        if refuse[0]:
            raise PluginError("not ready yet")

    assert server.on_activate(second) is second
    with server:
        server.start(short_tmp / "s.sock")
        with RawClient(short_tmp / "s.sock") as client:
            assert client.call("Plugin.Activate").status == 200
            refuse[0] = True
            reply = client.call("Plugin.Activate")
    assert (reply.status, reply.json()) == (500, {"Err": "not ready yet"})
    assert seen == ["first", "second", "first", "second"]
    assert server.activations == 2


def test_activation_hook_must_be_callable() -> None:
    """A hook that is not callable is refused at once, named."""
    with pytest.raises(TypeError, match="activation hook is not callable: 5"):
        PluginServer([]).on_activate(5)  # type: ignore[arg-type]


# -- no such volume ----------------------------------------------------------------


class Volumes(VolumeDriver):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def create(self, request: volume.CreateRequest) -> None:
        self.names.add(request.name)

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        if request.name not in self.names:
            raise volume.NoSuchVolume(request.name)
        return volume.GetResponse(volume.Volume(name=request.name))

    def list(self) -> volume.ListResponse:
        return volume.ListResponse([volume.Volume(name=n) for n in sorted(self.names)])


def test_no_such_volume_answers_dockers_text(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Raising NoSuchVolume answers 500 {"Err": "no such volume"}, logged at debug only."""
    with Volumes().server() as server:
        server.start(short_tmp / "s.sock")
        with (
            RawClient(short_tmp / "s.sock") as client,
            caplog.at_level(logging.DEBUG, logger="pluginkit.sdk"),
        ):
            missing = client.call("VolumeDriver.Get", {"Name": "v9"})
            client.call("VolumeDriver.Create", {"Name": "v9"})
            found = client.call("VolumeDriver.Get", {"Name": "v9"})
    assert (missing.status, missing.json()) == (500, {"Err": "no such volume"})
    assert (found.status, found.json()) == (200, {"Volume": {"Name": "v9"}})
    records = [(r.levelname, r.getMessage()) for r in caplog.records if "failed" in r.message]
    assert records == [("DEBUG", "VolumeDriver.Get failed: no such volume")]


def test_no_such_volume_is_a_plugin_and_lookup_error() -> None:
    """NoSuchVolume keeps the name asked for; its text is Docker's, without the name."""
    exc = volume.NoSuchVolume("v9")
    assert isinstance(exc, PluginError)
    assert isinstance(exc, LookupError)
    assert (str(exc), exc.name, repr(exc)) == ("no such volume", "v9", "NoSuchVolume('v9')")


# -- several names -----------------------------------------------------------------


def test_aliases_get_a_socket_each(short_tmp: Path) -> None:
    """Each alias is a socket beside the server's; all answer; all go on stop."""
    server = Volumes().server(name="main", aliases=["other", "third"])
    paths = [short_tmp / f"{n}.sock" for n in ("main", "other", "third")]
    with server:
        server.start(paths[0])
        assert server.address == f"unix://{paths[0]}"
        for path in paths:
            assert stat.S_ISSOCK(path.lstat().st_mode)
            with RawClient(path) as client:
                assert client.call("Plugin.Activate").json() == {"Implements": ["VolumeDriver"]}
        assert server.activations == 3
    assert [p.exists() for p in paths] == [False, False, False]


def test_aliases_get_a_spec_file_each(short_tmp: Path) -> None:
    """Over TCP with spec_dir, each alias gets a spec file with the same URL."""
    server = Volumes().server(name="main", aliases=["other"])
    specs = short_tmp / "specs"
    with server:
        server.start("tcp://127.0.0.1:0", spec_dir=specs)
        port = server.address.rpartition(":")[2] if server.address else ""
        texts = {p.name: p.read_text() for p in sorted(specs.iterdir())}
        assert texts == {
            "main.spec": f"tcp://127.0.0.1:{port}\n",
            "other.spec": f"tcp://127.0.0.1:{port}\n",
        }
    assert list(specs.iterdir()) == []


def test_alias_socket_of_a_live_server_is_not_taken(short_tmp: Path) -> None:
    """An alias whose socket another server serves fails the start, leaving nothing behind."""
    other = PluginServer([], name="other")
    with other:
        other.start(short_tmp / "other.sock")
        server = PluginServer([], name="main", aliases=["other"])
        with pytest.raises(PluginError) as info:
            server.start(short_tmp / "main.sock")
        assert str(info.value) == (
            f"cannot serve at {short_tmp / 'other.sock'}: another server is listening there"
        )
        assert not (short_tmp / "main.sock").exists()
        with RawClient(short_tmp / "other.sock") as client:
            assert client.call("Plugin.Activate").status == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"name": "a", "aliases": ["b/c"]},
            "aliases must be non-empty strings without '/', other than the name, not 'b/c'",
        ),
        (
            {"name": "a", "aliases": ["a"]},
            "aliases must be non-empty strings without '/', other than the name, not 'a'",
        ),
        ({"name": "a", "aliases": ["b", "b"]}, "aliases repeat a name: ['b', 'b']"),
        ({"aliases": ["b"]}, "aliases need a server name (name=...)"),
    ],
)
def test_bad_aliases_are_refused(options: dict[str, Any], message: str) -> None:
    """Aliases are checked when the server is made."""
    with pytest.raises(ValueError, match="alias") as info:
        PluginServer([], **options)
    assert str(info.value) == message


# -- logging of a plugin program ------------------------------------------------------

PROGRAM = """
import os, sys
from pluginkit import PluginError
from pluginkit.sdk import VolumeDriver, volume

class Broken(VolumeDriver):
    def create(self, request):
        raise PluginError("volume exists")

    def remove(self, request):
        raise OSError(39, "Directory not empty")

    def get(self, request):
        raise volume.NoSuchVolume(request.name)

if len(sys.argv) > 2:
    import logging
    logging.basicConfig(level=logging.WARNING, format="app %(levelname)s %(message)s")
Broken().server(name="broken").serve(sys.argv[1])
"""


def _run_program(short_tmp: Path, *extra: str) -> str:
    path = short_tmp / "broken.sock"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(path), *extra],
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: path.exists() or proc.poll() is not None, timeout=30)
        with RawClient(path) as client:
            assert client.call("VolumeDriver.Create", {"Name": "v"}).status == 500
            assert client.call("VolumeDriver.Remove", {"Name": "v"}).status == 500
            assert client.call("VolumeDriver.Get", {"Name": "v"}).status == 500
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    return err


def test_plugin_program_logs_its_start_and_failures_by_default(short_tmp: Path) -> None:
    """With no logging set up, serve() prints the start line and each failure (traceback)."""
    err = _run_program(short_tmp)
    lines = err.splitlines()
    assert lines[0] == (
        f"INFO pluginkit.sdk: plugin server broken listening on unix://{short_tmp}/broken.sock"
    )
    assert lines[1] == "INFO pluginkit.sdk: VolumeDriver.Create failed: volume exists"
    assert lines[2] == "ERROR pluginkit.sdk: handler for VolumeDriver.Remove raised"
    assert lines[3] == "Traceback (most recent call last):"
    assert "OSError: [Errno 39] Directory not empty" in lines
    assert "no such volume" not in err  # a routine answer: debug level


def test_plugin_program_with_its_own_logging_is_left_alone(short_tmp: Path) -> None:
    """A program that configured logging gets its own format only, at its own level."""
    err = _run_program(short_tmp, "configured")
    assert err.splitlines()[0] == "app ERROR handler for VolumeDriver.Remove raised"
    assert "pluginkit.sdk:" not in err
    assert "listening" not in err  # INFO is below the program's WARNING


def test_host_relogs_the_plugin_lines_at_their_level(short_tmp: Path) -> None:
    """The default format is one a host's LineForwarder reads: each line keeps its level."""
    from pluginkit.runtime._plugin_log import LineForwarder

    forward = LineForwarder(logging.getLogger("pluginkit.plugin"), logging.INFO, {})
    levels = [
        (logging.getLevelName(level), message)
        for level, message in map(forward.level_of, _run_program(short_tmp).splitlines())
    ]
    assert levels[:4] == [
        (
            "INFO",
            f"pluginkit.sdk: plugin server broken listening on unix://{short_tmp}/broken.sock",
        ),
        ("INFO", "pluginkit.sdk: VolumeDriver.Create failed: volume exists"),
        ("ERROR", "pluginkit.sdk: handler for VolumeDriver.Remove raised"),
        ("ERROR", "Traceback (most recent call last):"),
    ]
    assert ("ERROR", "OSError: [Errno 39] Directory not empty") in levels
    assert {level for level, _ in levels[2:]} == {"ERROR"}
