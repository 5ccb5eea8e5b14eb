"""DockerRuntime benchmark: enable+disable latency against the engine's own plugin manager.

Run alone with ``python3 benchmarks/bench_dockerrt.py``. One plugin directory
(a static Go plugin server in its rootfs) is created twice: with the engine
(``docker plugin create``) and with a pluginkit ``Manager`` on
``DockerRuntime``. Then, in alternating rounds, each is enabled and disabled
again, both driven in-process: the engine through the Docker SDK
(``client.api.enable_plugin`` / ``disable_plugin``), pluginkit through
``Manager.enable`` / ``disable``. Medians and ratios (pluginkit / engine) are
printed; the issue's target is a ratio <= 0.8 for enable+disable.

The first pluginkit enable (rootfs import + container creation) is reported
on its own and left out of the medians: later enables re-use the container.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from _dockerrt_helpers import make_plugin_dir, remove_docker_leftovers  # noqa: E402

from pluginkit import Manager  # noqa: E402
from pluginkit.runtime.docker import DockerRuntime  # noqa: E402

ROUNDS = 12
TARGET = 0.8


def measure(
    samples: dict[str, list[float]], enable: Callable[[], object], disable: Callable[[], object]
) -> None:
    t0 = time.perf_counter()
    enable()
    t1 = time.perf_counter()
    disable()
    t2 = time.perf_counter()
    samples["enable"].append(t1 - t0)
    samples["disable"].append(t2 - t1)
    samples["both"].append(t2 - t0)


def main() -> int:
    # The plugin's stderr lines are WARNING records: keep them off the terminal.
    logging.getLogger("pluginkit.plugin").setLevel(logging.ERROR)
    client = docker.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
    name = f"pkbench-{secrets.token_hex(4)}:latest"
    plugin_id = None
    manager: Manager | None = None
    engine_created = False
    try:
        context = make_plugin_dir(tmp / "plugin")
        client.plugins.create(name, str(context))
        engine_created = True
        manager = ours_manager = Manager(
            tmp / "root", runtime=DockerRuntime(client), run_root=tmp / "run", legacy=None
        )
        start = time.perf_counter()
        plugin_id = manager.create(name, context).id
        create = time.perf_counter() - start

        start = time.perf_counter()
        manager.enable(name)
        first_enable = time.perf_counter() - start
        manager.disable(name)

        ours: dict[str, list[float]] = {"enable": [], "disable": [], "both": []}
        engine: dict[str, list[float]] = {"enable": [], "disable": [], "both": []}
        for _ in range(ROUNDS):
            # Alternate, so that a burst of load on the shared machine hits both.
            measure(
                engine,
                lambda: client.api.enable_plugin(name, timeout=30),
                lambda: client.api.disable_plugin(name),
            )
            measure(ours, lambda: ours_manager.enable(name), lambda: ours_manager.disable(name))

        print(f"pluginkit create (image import + container creation): {create:.3f} s")
        print(f"first pluginkit enable (a container start): {first_enable:.3f} s")
        for key, label in (
            ("enable", "enable"),
            ("disable", "disable"),
            ("both", "enable+disable"),
        ):
            a, b = statistics.median(ours[key]), statistics.median(engine[key])
            print(
                f"{label:<16} pluginkit {a * 1e3:8.1f} ms   engine {b * 1e3:8.1f} ms"
                f"   ratio {a / b:6.2f}   ({ROUNDS} rounds, medians)"
            )
        ratio = statistics.median(ours["both"]) / statistics.median(engine["both"])
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"    target enable+disable ratio <= {TARGET}: {verdict}")
    finally:
        if manager is not None:
            manager.remove(name, force=True)
            manager.shutdown()
        if engine_created:
            client.api.remove_plugin(name, force=True)
        if plugin_id is not None:
            remove_docker_leftovers(client, [plugin_id])
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
