"""The pytest plugin's fixtures work in a user's suite and leave other suites alone.

Each test runs a small suite in a separate pytest (``pytester``) with
``-p pluginkit.pytest_plugin``, which is what the ``pytest11`` entry point
does once pluginkit is installed.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

PLUGIN = ("-p", "pluginkit.pytest_plugin", "-p", "no:cacheprovider")


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess(*PLUGIN, "-q", "-W", "error", timeout=60)


def test_manager_fixture_runs_a_fake_plugin(pytester: pytest.Pytester) -> None:
    """pluginkit_manager uses pluginkit_runtime: a fake plugin installs, enables and answers."""
    result = _run(
        pytester,
        """
import pluginkit
from pluginkit.testing import FakeRuntime, write_plugin_dir

def test_it(pluginkit_manager, pluginkit_runtime, tmp_path):
    assert isinstance(pluginkit_runtime, FakeRuntime)
    assert isinstance(pluginkit_manager, pluginkit.Manager)
    pluginkit_runtime.set_handlers("vol", {"VolumeDriver.List": lambda r: {"Volumes": []}})
    write_plugin_dir(tmp_path / "vol")
    pluginkit_manager.create("vol", tmp_path / "vol")
    pluginkit_manager.enable("vol")
    plugin = pluginkit_manager.lookup_with_capability("vol", "VolumeDriver")
    assert plugin.client.call("VolumeDriver.List") == {"Volumes": []}
    assert pluginkit_runtime.running() != []
""",
    )
    result.assert_outcomes(passed=1)


def test_fixtures_clean_up(pytester: pytest.Pytester) -> None:
    """After a test, its fake plugins are stopped and the manager's directories are gone."""
    result = _run(
        pytester,
        """
import os
from pluginkit.testing import write_plugin_dir

seen = {}

def test_first(pluginkit_manager, pluginkit_runtime, tmp_path):
    pluginkit_runtime.set_handlers("vol", {"VolumeDriver.List": lambda r: {}})
    write_plugin_dir(tmp_path / "vol")
    pluginkit_manager.create("vol", tmp_path / "vol")
    pluginkit_manager.enable("vol")
    seen["runtime"] = pluginkit_runtime
    seen["root"] = pluginkit_manager.root

def test_second(pluginkit_manager, pluginkit_runtime):
    assert seen["runtime"] is not pluginkit_runtime
    assert seen["runtime"].running() == []
    assert not os.path.exists(seen["root"])
    assert pluginkit_manager.list() == []
""",
    )
    result.assert_outcomes(passed=2)


def test_serve_fixture_returns_a_client(pytester: pytest.Pytester) -> None:
    """pluginkit_serve serves a driver and a bare PluginServer; both are stopped afterwards."""
    result = _run(
        pytester,
        """
import os
import pytest
from pluginkit import Client, PluginConnectionError
from pluginkit.sdk import PluginServer, VolumeDriver, volume

class Vols(VolumeDriver):
    def list(self) -> volume.ListResponse:
        return volume.ListResponse(volumes=[volume.Volume(name="v1")])

sockets = []

def test_serve(pluginkit_serve):
    client = pluginkit_serve(Vols())
    assert client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert client.call("VolumeDriver.List") == {"Volumes": [{"Name": "v1"}]}
    server = PluginServer(["VolumeDriver"])
    server.add_handler("VolumeDriver.Get", lambda request: {"Volume": {"Name": "x"}})
    other = pluginkit_serve(server, threads=2)
    assert other.call("VolumeDriver.Get", {"Name": "x"}) == {"Volume": {"Name": "x"}}
    sockets.extend(repr(c).split("unix://")[1].split("'")[0] for c in (client, other))

def test_stopped_afterwards():
    assert len(sockets) == 2
    for path in sockets:
        assert not os.path.exists(path)
        with pytest.raises(PluginConnectionError):
            Client(f"unix://{path}", retry_timeout=0).call("Plugin.Activate")
""",
    )
    result.assert_outcomes(passed=2)


def test_a_suite_without_the_fixtures_is_untouched(pytester: pytest.Pytester) -> None:
    """The plugin adds no options, markers or output to a suite that does not use it."""
    pytester.makepyfile(test_user="def test_plain():\n    assert True\n")
    with_plugin = pytester.runpytest_subprocess(*PLUGIN, "--markers", timeout=60)
    without = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:pluginkit.pytest_plugin", "--markers", timeout=60
    )
    assert with_plugin.outlines == without.outlines
    result = pytester.runpytest_subprocess(*PLUGIN, "-q", timeout=60)
    result.assert_outcomes(passed=1)
    fixtures = pytester.runpytest_subprocess(*PLUGIN, "--fixtures", timeout=60).stdout.str()
    assert "pluginkit_runtime" in fixtures
    assert "pluginkit_manager" in fixtures
    assert "pluginkit_serve" in fixtures


def test_the_entry_point_registers_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed with the pytest11 entry point of pyproject.toml, -p is not needed (nor harmful)."""
    import os
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.entry-points\.pytest11\]\n(.*?)^$", pyproject, re.M | re.S)
    assert section is not None
    # What installing writes: a dist-info directory with entry_points.txt.
    site = pytester.mkdir("site")
    info = site / "pluginkit_host-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: pluginkit-host\nVersion: 0\n")
    entry = section.group(1).replace('"', "").replace(" = ", "=").strip()
    (info / "entry_points.txt").write_text(f"[pytest11]\n{entry}\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    pytester.makepyfile(
        test_user="def test_it(pluginkit_runtime):\n    assert pluginkit_runtime.running() == []\n"
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60).assert_outcomes(passed=1)
    pytester.runpytest_subprocess(*PLUGIN, timeout=60).assert_outcomes(passed=1)
    blocked = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:pluginkit.pytest_plugin", timeout=60
    )
    blocked.assert_outcomes(errors=1)  # fixture 'pluginkit_runtime' not found
