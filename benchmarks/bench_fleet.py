"""Fleet convergence vs a bare global service, on Swarms of 1, 2 and 3 nodes.

Run alone with ``python3 benchmarks/bench_fleet.py`` (root; namespaces).
For each size a Swarm of namespaced engines is made (``tests/_swarm.py``),
the agent image and a volume plugin are pushed to its registry, then in
alternating rounds:

- **fleet**: ``Fleet.apply`` of one plugin, then polling until every node's
  engine creates a volume with it; then ``Fleet.remove`` (not timed);
- **bare**: a global service of the same image running ``sleep``, until a
  task runs on every node; then it is removed (not timed).

The median ratio fleet / bare per size is printed, and how the fleet's time
grows with nodes. A report, not a target.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _fleet_helpers import plugin_context  # noqa: E402
from _swarm import Node, Swarm, swarm_problem  # noqa: E402

from pluginkit.fleet import AgentSpec, Fleet, FleetPlugin, FleetSpec  # noqa: E402
from pluginkit.fleet._image import build_agent_image  # noqa: E402

ROUNDS = 3


def volume_ok(node: Node) -> bool:
    try:
        node.docker("volume", "create", "-d", "fleetvol", "bench")
    except AssertionError:
        return False
    node.docker("volume", "rm", "bench")
    return True


def fleet_round(swarm: Swarm, fleet: Fleet, spec: FleetSpec) -> float:
    started = time.perf_counter()
    fleet.apply(spec)
    pending = list(swarm.nodes)
    while pending:
        pending = [n for n in pending if not volume_ok(n)]
        if pending:
            time.sleep(0.1)
    elapsed = time.perf_counter() - started
    fleet.remove("fleetvol")
    return elapsed


def bare_round(swarm: Swarm, image: str) -> float:
    started = time.perf_counter()
    swarm.manager.docker(
        "service", "create", "-d", "--mode", "global", "--name", "bench-bare",
        "--entrypoint", "/usr/bin/python3", image, "-c", "import time; time.sleep(3600)",
    )  # fmt: skip
    while True:
        states = swarm.manager.docker(
            "service", "ps", "bench-bare", "--format", "{{.CurrentState}}"
        ).split("\n")
        if sum(1 for s in states if s.startswith("Running")) == len(swarm.nodes):
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    swarm.manager.docker("service", "rm", "bench-bare")
    time.sleep(2)  # let the tasks go before the next round
    return elapsed


def measure(size: int) -> tuple[float, float]:
    swarm = Swarm()
    try:
        swarm.start(size)
        image = f"{swarm.registry}/pluginkit-agent:bench"
        plugin = f"{swarm.registry}/fleetvol:1"
        with tempfile.TemporaryDirectory() as tmp:
            context = plugin_context(Path(tmp) / "plugin")
            swarm.manager.docker("plugin", "create", plugin, str(context))
            swarm.manager.docker("plugin", "push", plugin)
            swarm.manager.docker("plugin", "rm", plugin)
        client = swarm.manager.client()
        build_agent_image(client, image)
        fleet = Fleet(client)
        spec = FleetSpec(
            AgentSpec(image, (swarm.registry,)),
            {"fleetvol": FleetPlugin("fleetvol", plugin, (), True)},
        )
        # Warm every node's image store once, as a deployment would be.
        bare_round(swarm, image)
        fleets, bares, ratios = [], [], []
        for round_ in range(ROUNDS):
            if round_ % 2 == 0:
                f, b = fleet_round(swarm, fleet, spec), bare_round(swarm, image)
            else:
                b, f = bare_round(swarm, image), fleet_round(swarm, fleet, spec)
            fleets.append(f)
            bares.append(b)
            ratios.append(f / b)
        client.close()
        fleet_median, bare_median = statistics.median(fleets), statistics.median(bares)
        print(
            f"{size} node(s): fleet {fleet_median:.2f} s, bare global service "
            f"{bare_median:.2f} s, ratio {statistics.median(ratios):.2f}",
            flush=True,
        )
        return fleet_median, bare_median
    finally:
        swarm.stop()


def main() -> int:
    problem = swarm_problem()
    if problem is not None:
        print(f"skipped: {problem}")
        return 0
    results = {size: measure(size) for size in (1, 2, 3)}
    one = results[1][0]
    growth = ", ".join(f"{n}: {results[n][0] / one:.2f}" for n in sorted(results))
    print(f"fleet time relative to 1 node: {growth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
