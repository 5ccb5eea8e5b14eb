"""DockerRuntime on Podman vs on dockerd: enable+disable of the same plugin, same run.

Run alone with ``python3 benchmarks/bench_podman.py``. One plugin directory
(a static Go plugin server in its rootfs) is created in two managers, one
whose ``DockerRuntime`` talks to dockerd, one whose ``DockerRuntime`` talks
to a private ``podman system service``; then, in alternating rounds, each is
enabled and disabled. Medians and the ratio (Podman / Docker) are printed:
a report, not a target. The first enable on each engine (rootfs import and
container creation) is left out of the medians.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from _dockerrt_helpers import make_plugin_dir  # noqa: E402
from _podman import PodmanEngine, podman_problem  # noqa: E402

from pluginkit import Manager  # noqa: E402
from pluginkit.runtime.docker import DockerRuntime  # noqa: E402

ROUNDS = 10


def enable_disable(manager: Manager, name: str) -> float:
    started = time.perf_counter()
    manager.enable(name, timeout=60)
    manager.disable(name)
    return time.perf_counter() - started


def main() -> int:
    problem = podman_problem()
    if problem is not None:
        print(f"skipped: {problem}")
        return 0
    logging.getLogger("pluginkit.plugin").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
    podman = PodmanEngine()
    podman.start()
    engines = {"docker": docker.from_env(), "podman": podman.client()}
    managers: dict[str, Manager] = {}
    name = f"pkbench-{secrets.token_hex(4)}"
    try:
        context = make_plugin_dir(tmp / "plugin")
        for engine, client in engines.items():
            managers[engine] = Manager(
                tmp / engine / "root",
                runtime=DockerRuntime(client),
                run_root=tmp / engine / "run",
                legacy=None,
            )
            managers[engine].create(name, context)
            first = enable_disable(managers[engine], name)
            print(f"{engine}: first enable+disable (import, create) {first * 1000:.0f} ms")
        samples: dict[str, list[float]] = {"docker": [], "podman": []}
        ratios = []
        for round_ in range(ROUNDS):
            order = ("docker", "podman") if round_ % 2 == 0 else ("podman", "docker")
            pair = {engine: enable_disable(managers[engine], name) for engine in order}
            for engine, seconds in pair.items():
                samples[engine].append(seconds)
            ratios.append(pair["podman"] / pair["docker"])
        for engine, values in samples.items():
            print(f"{engine}: enable+disable median {statistics.median(values) * 1000:.0f} ms")
        print(f"ratio podman / docker (median of {ROUNDS} pairs): {statistics.median(ratios):.2f}")
    finally:
        for manager in managers.values():
            manager.remove(name, force=True)
            manager.shutdown()
        for client in engines.values():
            client.close()
        podman.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
