"""A private Podman for the tests: its own storage, config and API socket.

``podman system service`` serves Docker's API (the one docker-py speaks) on a
socket in a temporary directory. Everything it stores (images, containers,
its run state) lives under that directory, so the machine's Podman, if any,
is left alone, and removing the directory removes every trace.

``containers.conf`` is private too (``CONTAINERS_CONF``); it carries the
ulimits that Podman needs where the process may not raise them (a sandbox
without ``CAP_SYS_RESOURCE`` makes runc fail with ``error setting rlimit``).
With ``CONTAINERS_CONF`` set Podman reads that one file and no drop-ins, so a
test that needs a drop-in's entries runs the podman command with a config
that is the base config plus the drop-in (:meth:`PodmanEngine.config_with`).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests._engine_wait import pings, wait_serving

BASE_CONFIG = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanEngine:
    """One ``podman system service`` on a private socket, with private storage."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pk-podman-", dir="/tmp"))
        self.socket = self.home / "podman.sock"
        self.config = self.home / "containers.conf"
        # Its own tmp_dir too: conmon's exit files (default /run/libpod)
        # must not be shared with another Podman on the machine.
        self.config.write_text(BASE_CONFIG + f'tmp_dir = "{self.home / "libpod"}"\n')
        self.storage_config = self.home / "storage.conf"
        self.storage_config.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'runroot = "{self.home / "run"}"\n'
            f'graphroot = "{self.home / "graph"}"\n'
        )
        self.url = f"unix://{self.socket}"
        self._service: subprocess.Popen[bytes] | None = None

    def env(self, config: Path | None = None) -> dict[str, str]:
        """The environment of a podman command that uses this engine's storage."""
        return {
            **os.environ,
            "CONTAINERS_CONF": str(config or self.config),
            "CONTAINERS_STORAGE_CONF": str(self.storage_config),
        }

    def config_with(self, drop_in: Path) -> Path:
        """Write a config that is the base config plus ``drop_in``'s text; return it."""
        merged = self.home / f"with-{drop_in.name}"
        merged.write_text(self.config.read_text() + "\n" + drop_in.read_text())
        return merged

    def podman(self, *args: str, config: Path | None = None, check: bool = True) -> str:
        """Run the podman command on this engine's storage; return its stdout."""
        done = subprocess.run(
            ["podman", *args],
            env=self.env(config),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Start the API service and wait until it answers."""
        log = (self.home / "service.log").open("wb")
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.url],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_serving(
            "podman system service",
            self._service,
            self.socket,
            self._answers,
            self.service_log,
            timeout=30,
            interval=0.05,
        )

    def service_log(self) -> str:
        """The last lines the service wrote."""
        path = self.home / "service.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self) -> Any:
        """A docker-py client of this engine."""
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def _answers(self) -> bool:
        return pings(self.client)

    def stop(self) -> None:
        """Stop the service, remove every container and image, then the directory."""
        if self._service is not None and self._service.poll() is None:
            self.podman("rm", "--all", "--force", check=False)
            self.podman("rmi", "--all", "--force", check=False)
            os.killpg(self._service.pid, signal.SIGTERM)
            try:
                self._service.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._service.pid, signal.SIGKILL)
                self._service.wait(15)
        self.podman("system", "reset", "--force", check=False)
        shutil.rmtree(self.home, ignore_errors=True)


@functools.cache
def podman_problem() -> str | None:
    """Why Podman cannot be used here, or None when it can."""
    if shutil.which("podman") is None:
        return "Podman is not installed (apt-get install podman)"
    done = subprocess.run(
        ["podman", "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        return f"podman --version failed: {done.stderr.strip()}"
    return None
