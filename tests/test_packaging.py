"""The wheel and sdist are fit for PyPI: ``twine check`` passes, LICENSE is inside.

Builds with ``python -m build --no-isolation`` (hatchling comes from the test
extra, so no download happens) into a temporary directory, then checks the
metadata of both archives with ``twine check --strict`` and reads them. The
tools are in the ``test`` extra; where they are missing the test skips, except
under ``PLUGINKIT_REQUIRE_DOCKER=1`` (CI), where it fails.
"""

from __future__ import annotations

import email
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pluginkit

REPO = Path(__file__).resolve().parent.parent
DIST = "pluginkit-host"
STEM = f"pluginkit_host-{pluginkit.__version__}"

pytestmark = [pytest.mark.packaging, pytest.mark.slow]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [m for m in ("build", "twine", "hatchling") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install -e '.[test]')"
        if os.environ.get("PLUGINKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"PLUGINKIT_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    return out


def test_build_makes_one_wheel_and_one_sdist(dist: Path) -> None:
    """The archives carry the distribution name and the package's own __version__."""
    assert sorted(p.name for p in dist.iterdir()) == [
        f"{STEM}-py3-none-any.whl",
        f"{STEM}.tar.gz",
    ]


def test_twine_check_passes(dist: Path) -> None:
    """twine check --strict accepts both archives (no warnings either)."""
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *sorted(map(str, dist.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def _metadata(dist: Path) -> email.message.Message:
    with zipfile.ZipFile(dist / f"{STEM}-py3-none-any.whl") as wheel:
        return email.message_from_bytes(wheel.read(f"{STEM}.dist-info/METADATA"))


def test_wheel_metadata(dist: Path) -> None:
    """The wheel's METADATA names the free PyPI name, the licence and Python 3.10 to 3.14."""
    meta = _metadata(dist)
    assert meta["Name"] == DIST
    assert meta["Version"] == pluginkit.__version__
    assert tuple(map(int, meta["Metadata-Version"].split("."))) >= (2, 4)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    versions = [c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Programming Language")]
    assert versions[1:] == ["3.10", "3.11", "3.12", "3.13", "3.14"]
    assert f"pip install {DIST}" in meta.get_payload()  # the README is the description


def test_wheel_contents(dist: Path) -> None:
    """The wheel holds the package, py.typed, LICENSE and both entry points, and no tests."""
    with zipfile.ZipFile(dist / f"{STEM}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"{STEM}.dist-info/entry_points.txt").decode()
        licence = wheel.read(f"{STEM}.dist-info/licenses/LICENSE").decode()
    assert {"pluginkit/__init__.py", "pluginkit/py.typed", "pluginkit/pytest_plugin.py"} <= names
    assert not [n for n in names if n.startswith("tests/")]
    assert licence == (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in licence
    assert "[console_scripts]\npluginkit = pluginkit.cli:main" in entry_points
    assert "[pytest11]\npluginkit.pytest_plugin = pluginkit.pytest_plugin" in entry_points


def test_sdist_contents(dist: Path) -> None:
    """The sdist holds LICENSE, the sources, tests and docs to rebuild and test from."""
    with tarfile.open(dist / f"{STEM}.tar.gz") as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        member = sdist.extractfile(f"{STEM}/LICENSE")
        assert member is not None
        licence = member.read().decode()
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "pluginkit/__init__.py"} <= names
    assert {"tests/test_packaging.py", "docs/index.md"} <= names
    assert licence == (REPO / "LICENSE").read_text()
