"""Shared fixtures and the rules for tests that need Docker or Go.

Tests marked ``registry`` need Debian's ``docker-registry`` (they start
their own on a free port); they skip without it unless
``PLUGINKIT_REQUIRE_REGISTRY=1``. Tests marked ``docker`` need a running
Docker engine and tests marked ``go`` need the Go toolchain with Debian's
``golang-github-docker-docker-dev`` sources. Where those are missing the
tests skip with the reason, except when ``PLUGINKIT_REQUIRE_DOCKER=1`` (as
in CI): then they fail, so that a broken CI machine cannot pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _docker_py import leaks_dropped

REQUIRED = os.environ.get("PLUGINKIT_REQUIRE_DOCKER") == "1"
#: The real part each marker needs, and the variable that makes it required.
REQUIRE_VARIABLES = {
    "docker": "PLUGINKIT_REQUIRE_DOCKER",
    "go": "PLUGINKIT_REQUIRE_DOCKER",
    "podman": "PLUGINKIT_REQUIRE_PODMAN",
    "registry": "PLUGINKIT_REQUIRE_REGISTRY",
    "dockercli": "PLUGINKIT_REQUIRE_DOCKER",
    "swarm": "PLUGINKIT_REQUIRE_SWARM",
}
GO_DOCKER_SRC = Path("/usr/share/gocode/src/github.com/docker/docker/pkg/plugins")


def _docker_problem() -> str | None:
    # With a socket file but no engine behind it, docker-py leaves the socket
    # of its failed first request unclosed: drop it here, or its
    # ResourceWarning fails whichever test happens to run when it is collected.
    with leaks_dropped():
        return _ask_docker()


def _ask_docker() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


def _go_problem() -> str | None:
    if shutil.which("go") is None:
        return "the Go toolchain is not installed (apt-get install golang-go)"
    if not GO_DOCKER_SRC.is_dir():
        return "Docker's Go sources are missing (apt-get install golang-github-docker-docker-dev)"
    return None


DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io: the 20.10 client of the 20.10 engine


def _dockercli_problem() -> str | None:
    if not os.access(DOCKER_CLI, os.X_OK):
        return f"Docker's CLI is not installed at {DOCKER_CLI} (apt-get install docker.io)"
    return None


_problems: dict[str, str | None] = {}


def _problem(kind: str) -> str | None:
    if kind not in _problems:
        if kind == "docker":
            _problems[kind] = _docker_problem()
        elif kind == "go":
            _problems[kind] = _go_problem()
        elif kind == "registry":
            _problems[kind] = _registry_problem()
        elif kind == "dockercli":
            _problems[kind] = _dockercli_problem()
        elif kind == "podman":
            from _podman import podman_problem

            _problems[kind] = podman_problem()
        else:
            from _swarm import swarm_problem

            _problems[kind] = swarm_problem()
    return _problems[kind]


def _registry_problem() -> str | None:
    if shutil.which("docker-registry") is None:
        return "Debian's docker-registry is not installed (apt-get install docker-registry)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for kind, variable in REQUIRE_VARIABLES.items():
        if item.get_closest_marker(kind) is None:
            continue
        problem = _problem(kind)
        if problem is None:
            continue
        if os.environ.get(variable) == "1":
            pytest.fail(f"{variable}=1 but {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client of the machine's engine (tests using it are marked ``docker``)."""
    import docker

    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_go_program(source: str, workdir: Path, name: str = "prog") -> Path:
    """Build a Go program (GOPATH mode, offline) against Debian's Docker sources.

    Returns the path of the binary. Used by tests and benchmarks that need
    Docker's own Go plugin client or a Go plugin server as a peer.
    """
    src_dir = workdir / "gopath" / "src" / name
    src_dir.mkdir(parents=True, exist_ok=True)
    (src_dir / "main.go").write_text(source)
    binary = workdir / name
    env = {
        **os.environ,
        "GOPATH": f"{workdir / 'gopath'}:/usr/share/gocode",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
        "GOCACHE": os.environ.get(
            "GOCACHE", str(Path(tempfile.gettempdir()) / "pluginkit-gocache")
        ),
    }
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=src_dir,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return binary


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Any]:
    """A private ``podman system service`` (tests using it are marked ``podman``)."""
    from _podman import PodmanEngine

    engine = PodmanEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(params=["docker", pytest.param("podman", marks=pytest.mark.podman)])
def engine_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A docker-py client of each engine that serves Docker's API: dockerd, then Podman."""
    if request.param == "docker":
        import docker

        client = docker.from_env(timeout=120)
    else:
        client = request.getfixturevalue("podman_engine").client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def podman_busybox(podman_engine: Any, tmp_path: Path) -> Iterator[str]:
    """A static busybox image (sh, cat) in the private Podman's storage; removed afterwards."""
    import tarfile

    archive = tmp_path / "busybox.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for tool in ("sh", "cat"):
            link = tarfile.TarInfo(f"bin/{tool}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    tag = f"localhost/pk-busybox:{secrets.token_hex(4)}"
    podman_engine.podman("import", str(archive), tag)
    yield tag
    podman_engine.podman("rmi", "--force", tag, check=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out combinations that cannot exist (see ``_async_adapter``)."""
    from _async_adapter import sync_only_combination

    dropped = [item for item in items if sync_only_combination(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not sync_only_combination(item)]
