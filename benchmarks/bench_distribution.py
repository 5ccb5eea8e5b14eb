"""Registry install and push: pluginkit vs the Docker engine, same plugin, same registry, same run.

Run alone with ``python3 benchmarks/bench_distribution.py``. A local
``docker-registry`` (plain HTTP on loopback) holds an ~8 MB plugin pushed by
``docker plugin push``. In interleaved A/B rounds:

* install: ``Manager.install(REF, grant=True)`` (disabled, in-process) vs
  ``docker plugin install --grant-all-permissions --disable REF`` (the CLI,
  as a user runs it) and vs the engine's API alone (``POST /plugins/pull``
  through the docker SDK, no CLI start-up);
* push: ``Manager.push`` vs ``docker plugin push``, each to a fresh
  repository so every blob is uploaded; and create + push vs ``docker plugin
  create`` + ``push`` (the engine compresses the rootfs at create, pluginkit
  at the first push); and a second push of the same plugin to a fresh
  repository (its compressed layer kept: upload only) vs the engine's push.

Medians and ratios (pluginkit / Docker; below 1.0 means pluginkit is faster)
are printed: a report, not an assertion. Target for install vs the CLI: <= 0.6.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pluginkit import Manager  # noqa: E402
from pluginkit.testing import FakeRuntime  # noqa: E402
from tests._registry import run_registry  # noqa: E402

ROUNDS = 7
SIZE = 8_000_000


def _docker(*args: str) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")


def _timed(func: object, *args: object) -> float:
    started = time.perf_counter()
    func(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def _context(where: Path) -> Path:
    (where / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", where / "rootfs" / "bin" / "busybox")
    (where / "rootfs" / "data").write_bytes(os.urandom(SIZE - os.path.getsize("/bin/busybox")))
    (where / "config.json").write_text(
        '{"Description": "bench", "Documentation": "", "Entrypoint": ["/bin/busybox"],'
        ' "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},'
        ' "Network": {"Type": ""}, "Linux": {"Capabilities": []}}'
    )
    return where


def _engine_pull(client: object, ref: str, alias: str, privileges: object) -> None:
    """POST /plugins/pull straight to the engine (no CLI start-up), read to the end."""
    api = client.api  # type: ignore[attr-defined]
    response = api._post(
        api._url("/plugins/pull"),
        params={"remote": ref, "name": alias},
        data=json.dumps(privileges),
        headers={"Content-Type": "application/json"},
        stream=True,
    )
    api._raise_for_status(response)
    for _ in response.iter_content(65536):
        pass


def _report(what: str, ours: list[float], theirs: list[float], baseline: str) -> None:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(
        f"{what}: pluginkit {statistics.median(ours) * 1000:.0f} ms, {baseline} "
        f"{statistics.median(theirs) * 1000:.0f} ms, median ratio {statistics.median(ratios):.2f}"
    )


def main() -> int:
    if shutil.which("docker-registry") is None or shutil.which("docker") is None:
        print("skipped: needs docker-registry and a Docker engine")
        return 0
    import docker

    logging.getLogger("pluginkit").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="pk-bench-", dir="/tmp"))
    client = docker.from_env(timeout=300)
    tag = secrets.token_hex(4)
    created: list[str] = []
    try:
        with run_registry(tmp / "registry") as host:
            ref = f"{host}/bench/plugin-{tag}:1"
            context = _context(tmp / "ctx")
            _docker("plugin", "create", ref, str(context))
            _docker("plugin", "push", ref)
            _docker("plugin", "rm", "-f", ref)
            manager = Manager(tmp / "root", runtime=FakeRuntime(), legacy=None, run_root=tmp / "r")
            privileges = client.api.plugin_privileges(ref)

            ours, cli, api = [], [], []
            for i in range(ROUNDS + 1):
                alias = f"pkbench-{tag}-{i}"
                t_ours = _timed(lambda a=alias: manager.install(ref, name=a, grant=True))
                manager.remove(alias)
                t_cli = _timed(
                    _docker,
                    "plugin",
                    "install",
                    "--grant-all-permissions",
                    "--disable",
                    "--alias",
                    alias,
                    ref,
                )
                _docker("plugin", "rm", "-f", alias)
                t_api = _timed(lambda a=alias: _engine_pull(client, ref, a, privileges))
                _docker("plugin", "rm", "-f", alias)
                if i:  # the first round warms caches on both sides
                    ours.append(t_ours)
                    cli.append(t_cli)
                    api.append(t_api)
            _report("install ~8 MB", ours, cli, "docker plugin install (CLI)")
            _report("install ~8 MB", ours, api, "engine API /plugins/pull")

            ours, theirs, ours_cp, theirs_cp, ours_kept = [], [], [], [], []
            for i in range(ROUNDS + 1):
                # The engine refuses a second plugin with the same content: one
                # byte changes per round, for both sides.
                (context / "rootfs" / "round").write_text(str(i))
                target = f"{host}/bench/push-{tag}-{i}"
                t_create = _timed(manager.create, f"pkbench-{tag}-{i}", context)
                t_dcreate = _timed(_docker, "plugin", "create", f"{target}-docker:1", str(context))
                created.append(f"{target}-docker:1")
                t_ours = _timed(
                    lambda n=i, t=target: manager.push(f"pkbench-{tag}-{n}", f"{t}-pk:1")
                )
                t_theirs = _timed(_docker, "plugin", "push", f"{target}-docker:1")
                # Again to a fresh repository: the compressed layer is kept,
                # so this uploads without compressing, like the engine's push.
                t_kept = _timed(
                    lambda n=i, t=target: manager.push(f"pkbench-{tag}-{n}", f"{t}-pk2:1")
                )
                if i:
                    ours_kept.append(t_kept)
                    ours.append(t_ours)
                    theirs.append(t_theirs)
                    ours_cp.append(t_create + t_ours)
                    theirs_cp.append(t_dcreate + t_theirs)
            _report("push ~8 MB", ours, theirs, "docker plugin push (CLI)")
            # The engine compresses the rootfs at create, pluginkit at push:
            # create + push compares the same work.
            _report("create + push ~8 MB", ours_cp, theirs_cp, "docker plugin create + push")
            _report("push, layer kept ~8 MB", ours_kept, theirs, "docker plugin push (CLI)")
            manager.shutdown()
    finally:
        for name in created:
            subprocess.run(["docker", "plugin", "rm", "-f", name], capture_output=True)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
