"""The fleet on a real three-node Swarm: apply, status, roll-outs, joins, faults, removal.

The Swarm is made of namespaced dockerds on this machine (``_swarm``); the
agent image is built from this installation and pushed, like the plugin, to
the registry every node reaches. The tests run in order and share the Swarm.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import plugin_context
from _swarm import Node, Swarm

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.timeout(900)]


class World:
    """The Swarm, the references and the fleet file of this module's tests."""

    def __init__(self, swarm: Swarm, tmp: Path) -> None:
        self.swarm = swarm
        self.tmp = tmp
        self.agent_image = f"{swarm.registry}/pluginkit-agent:test"
        self.plugin_ref = f"{swarm.registry}/fleetvol:1"
        self.fleet_file = tmp / "fleet.toml"
        # The caller's Docker credentials for the fleet's registry: they reach
        # the agents as a Swarm secret (this registry asks for none).
        self.docker_config = tmp / "docker-config"
        self.docker_config.mkdir()
        login = base64.b64encode(b"fleet:pw").decode()
        (self.docker_config / "config.json").write_text(
            json.dumps({"auths": {swarm.registry: {"auth": login}}})
        )

    def write_fleet(self, settings: list[str] | None = None) -> Path:
        lines = [
            "[agent]",
            f'image = "{self.agent_image}"',
            f'insecure_registries = ["{self.swarm.registry}"]',
            "",
            "[plugins.fleetvol]",
            f'reference = "{self.plugin_ref}"',
            "grant_all_permissions = true",
        ]
        if settings:
            lines.append(f"settings = {json.dumps(settings)}")
        self.fleet_file.write_text("\n".join(lines) + "\n")
        return self.fleet_file

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pluginkit", "fleet", "--docker-host",
             self.swarm.manager.url, *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO), "DOCKER_CONFIG": str(self.docker_config)},
        )  # fmt: skip
        if check:
            assert done.returncode == 0, done.stderr
        return done


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    swarm = Swarm()
    try:
        swarm.start(2)
        world = World(swarm, tmp_path_factory.mktemp("fleet"))
        manager = swarm.manager
        context = plugin_context(world.tmp / "plugin")
        manager.docker("plugin", "create", world.plugin_ref, str(context))
        manager.docker("plugin", "push", world.plugin_ref)
        manager.docker("plugin", "rm", world.plugin_ref)
        built = world.cli("agent-image", world.agent_image)
        assert built.stdout.startswith(f"{world.agent_image}@sha256:")
        yield world
    finally:
        swarm.stop()


def plugin_containers(node: Node) -> list[dict[str, Any]]:
    client = node.client()
    try:
        found = client.api.containers(filters={"label": "pluginkit.plugin.id"})
        return list(found)
    finally:
        client.close()


def in_node(node: Node, *args: str) -> str:
    """Run a command in the node's mount namespace (its own /run)."""
    pid = node._process.pid if node._process is not None else 0
    done = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def agent_tasks(world: World) -> dict[str, str]:
    out = world.swarm.manager.docker(
        "service", "ps", "pluginkit-fleet-agent", "--filter", "desired-state=running",
        "--format", "{{.ID}} {{.Node}} {{.CurrentState}}",
    )  # fmt: skip
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def volume_works(node: Node, name: str) -> None:
    node.docker("volume", "create", "-d", "fleetvol", name)
    listed = node.docker("volume", "ls", "--filter", "driver=fleetvol", "--format", "{{.Name}}")
    assert name in listed.split()
    mountpoint = node.docker("volume", "inspect", name, "--format", "{{.Mountpoint}}").strip()
    assert mountpoint == f"/var/lib/pluginkit/fleet-volumes/{name}"
    node.docker("volume", "rm", name)


def test_apply_converges_on_every_node(world: World) -> None:
    """After apply --wait every node's engine creates volumes with the plugin."""
    started = time.monotonic()
    done = world.cli("apply", str(world.write_fleet()), "--wait")
    assert done.stdout == "updated: 1 plugins\nconverged\n"
    print(f"apply --wait on 2 nodes: {time.monotonic() - started:.1f} s")
    for node in world.swarm.nodes:
        volume_works(node, f"v-{node.name}")
        assert len(plugin_containers(node)) == 1
    manager = world.swarm.manager
    (secret,) = manager.docker("secret", "ls", "--format", "{{.Name}}").split()
    assert secret.startswith("pluginkit-fleet-auth-")
    mounted = manager.docker(
        "service", "inspect", "pluginkit-fleet-agent",
        "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}",
    )  # fmt: skip
    assert json.loads(mounted)[0]["File"]["Name"] == "docker/config.json"


def test_reapplying_the_same_file_changes_nothing(world: World) -> None:
    """Same file: 'unchanged', and no agent task is restarted."""
    before = agent_tasks(world)
    done = world.cli("apply", str(world.fleet_file))
    assert done.stdout == "unchanged: 1 plugins\n"
    time.sleep(3)
    assert agent_tasks(world) == before


def test_status_shows_each_node(world: World) -> None:
    """fleet status --format json: one row per node, enabled, with reference and digest."""
    rows = json.loads(world.cli("status", "--format", "json").stdout)
    assert [(r["node"], r["plugin"]) for r in rows] == [
        ("node1", "fleetvol"),
        ("node2", "fleetvol"),
    ]
    for row in rows:
        assert row["reference"] == world.plugin_ref
        assert row["digest"].startswith("sha256:")
        assert (row["enabled"], row["error"], row["agent_state"], row["spec_current"]) == (
            True,
            "",
            "running",
            True,
        )
    table = world.cli("status", "fleetvol").stdout.splitlines()
    assert table[0].split() == [
        "NODE", "PLUGIN", "REFERENCE", "DIGEST", "ENABLED", "HEALTH", "AGENT", "ERROR",
    ]  # fmt: skip
    assert [line.split()[0] for line in table[1:]] == ["node1", "node2"]


def test_changed_setting_rolls_out_one_node_at_a_time(world: World) -> None:
    """A new setting reaches every node; at no moment are two nodes without the plugin."""
    done = subprocess.Popen(
        [sys.executable, "-m", "pluginkit", "fleet", "--docker-host", world.swarm.manager.url,
         "apply", str(world.write_fleet(["FLAVOUR=spicy"])), "--wait"],
        env={**os.environ, "PYTHONPATH": str(REPO), "DOCKER_CONFIG": str(world.docker_config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    fewest = len(world.swarm.nodes)
    timeline: list[str] = []
    started = time.monotonic()
    while done.poll() is None:
        up = [node.name for node in world.swarm.nodes if plugin_containers(node)]
        timeline.append(f"{time.monotonic() - started:.1f}s {up}")
        fewest = min(fewest, len(up))
        time.sleep(0.2)
    out, err = done.communicate()
    assert done.returncode == 0, err
    assert out == "updated: 1 plugins\nconverged\n"
    assert fewest >= len(world.swarm.nodes) - 1, "\n".join(timeline)
    for node in world.swarm.nodes:
        (container,) = plugin_containers(node)
        client = node.client()
        try:
            env = client.api.inspect_container(container["Id"])["Config"]["Env"]
        finally:
            client.close()
        assert "FLAVOUR=spicy" in env


def test_a_node_joining_later_gets_the_plugin(world: World) -> None:
    """A third node joins: Swarm starts an agent there, which installs the plugin."""
    node = world.swarm.add_node()
    world.swarm.wait_nodes_ready(3)
    world.cli("apply", str(world.fleet_file), "--wait")
    volume_works(node, "v-late")


def test_a_killed_agent_is_replaced_and_adopts_the_plugin(world: World) -> None:
    """kill -9 of an agent: Swarm starts another, which keeps the same plugin container."""
    node = world.swarm.nodes[1]
    (before,) = plugin_containers(node)
    client = node.client()
    try:
        (agent,) = client.api.containers(
            filters={"label": "com.docker.swarm.service.name=pluginkit-fleet-agent"}
        )
        client.api.kill(agent["Id"], signal="SIGKILL")
    finally:
        client.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tasks = agent_tasks(world)
        if node.name in tasks and "Running" in world.swarm.manager.docker(
            "service", "ps", "pluginkit-fleet-agent", "--filter", f"node={node.name}",
            "--filter", "desired-state=running", "--format", "{{.CurrentState}}",
        ):  # fmt: skip
            break
        time.sleep(0.5)
    world.cli("apply", str(world.fleet_file), "--wait")
    (after,) = plugin_containers(node)
    assert after["Id"] == before["Id"]


def test_a_crashed_plugin_is_restarted_by_its_agent(world: World) -> None:
    """The plugin's container dies on one node: that node's agent starts it again."""
    node = world.swarm.nodes[0]
    (before,) = plugin_containers(node)
    client = node.client()
    try:
        client.api.kill(before["Id"], signal="SIGKILL")
    finally:
        client.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not plugin_containers(node):
        time.sleep(0.2)
    volume_works(node, "v-restarted")


def test_a_node_that_leaves_and_rejoins_converges_again(world: World) -> None:
    """A node leaves the Swarm (its agent stops, the plugin keeps running) and comes back."""
    node = world.swarm.nodes[2]
    world.swarm.leave(node)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = world.swarm.manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
        if f"{node.name} Down" in states:
            break
        time.sleep(0.5)
    world.swarm.manager.docker("node", "rm", "--force", node.name)
    world.swarm.join(node)
    world.swarm.wait_nodes_ready(3)
    world.cli("apply", str(world.fleet_file), "--wait")
    assert len(plugin_containers(node)) == 1
    volume_works(node, "v-rejoined")


def test_an_engine_restart_brings_the_plugin_back(world: World) -> None:
    """A node's dockerd restarts (its containers stop): the agent comes back and so does the plugin.

    The node keeps a volume of the plugin, so its engine asks for the plugin
    while it starts, before the agent runs it: Docker's boot-ordering problem.
    The time the engine takes to answer is printed.
    """
    node = world.swarm.nodes[1]
    node.docker("volume", "create", "-d", "fleetvol", "v-kept")
    node.stop_engine()
    started = time.monotonic()
    node.boot()
    print(f"engine with a fleet plugin's volume answers after {time.monotonic() - started:.1f} s")
    world.swarm.wait_nodes_ready(3)
    world.cli("apply", str(world.fleet_file), "--wait")
    assert len(plugin_containers(node)) == 1
    volume_works(node, "v-after-restart")
    # The engine gave up on the kept volume at boot (its plugin was not there
    # yet); once it has used the driver again, it lists it again.
    assert "v-kept" in node.docker("volume", "ls", "--format", "{{.Name}}").split()
    node.docker("volume", "rm", "v-kept")


def test_rm_of_the_last_plugin_leaves_nothing(world: World) -> None:
    """fleet rm: plugins, their containers, images and sockets go, then the agents and configs."""
    done = world.cli("rm", "fleetvol")
    assert done.stdout == "fleetvol\n"
    manager = world.swarm.manager
    assert manager.docker("service", "ls", "--format", "{{.Name}}").split() == []
    assert manager.docker("config", "ls", "--format", "{{.Name}}").split() == []
    assert manager.docker("secret", "ls", "--format", "{{.Name}}").split() == []
    for node in world.swarm.nodes:
        assert plugin_containers(node) == []
        images = node.docker("images", "--filter", "label=pluginkit.plugin.id", "-q")
        assert images.split() == []
        assert in_node(node, "ls", "-A", "/run/docker/plugins").split() == []
        assert in_node(node, "ls", "-A", "/var/lib/pluginkit").split() == ["fleet-volumes"]
