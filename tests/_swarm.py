"""A real multi-node Docker Swarm on one machine, for the fleet tests.

Each node is a dockerd of its own, in network, mount and UTS namespaces of
its own: its own hostname (the Swarm node name), its own ``/run`` (so its own
``/run/docker/plugins``, where its engine finds plugin sockets, and its own
``/var/run/docker.sock``) and its own ``/var/lib/pluginkit`` (a directory of the node's, kept across
engine restarts; ``/run`` is a fresh tmpfs at each start, as after a reboot). The nodes are
joined by veth pairs to a bridge in a "switch" namespace, which also runs a
registry (Debian's ``docker-registry``) that every node lists as insecure.
Every address lives inside these namespaces (a random ``10.77.N.0/24``);
the test process reaches each engine through a unix socket in the node's
directory, never over the network.

``ip netns exec`` would remount ``/sys`` and hide the cgroup v1 mounts, so a
node is entered with ``nsenter --net`` and ``unshare -m -u``, and its script
remounts sysfs and the cgroup tree itself. Nodes are stopped with SIGTERM
(after a SIGKILL a new dockerd waits ~60 s on the dead containerd), workers
before the manager, and only then are the namespaces deleted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests._engine_wait import pings, wait_serving

_NODE_SCRIPT = r"""#!/bin/sh
# Runs inside the node's new mount and UTS namespaces, in its network namespace.
set -e
name=$1; dir=$2; shift 2
mount --make-rprivate /
mount -t sysfs sysfs /sys
mount -t tmpfs cgroup_root /sys/fs/cgroup
for c in $(cut -d: -f2 /proc/1/cgroup | tr , '\n' | grep -v '^$' | grep -v '^name=' | sort -u); do
  mkdir -p "/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>/dev/null || rmdir "/sys/fs/cgroup/$c"
done
mkdir -p /sys/fs/cgroup/systemd
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd 2>/dev/null || true
mkdir -p /sys/fs/cgroup/unified
mount -t cgroup2 none /sys/fs/cgroup/unified 2>/dev/null || rmdir /sys/fs/cgroup/unified
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/docker/plugins /run/pluginkit /var/lib/pluginkit
# The node's own disk: it survives an engine restart, like /var/lib on a host.
mkdir -p "$dir/varlib"
mount --bind "$dir/varlib" /var/lib/pluginkit
hostname "$name"
exec dockerd --iptables=false --ip6tables=false --ip-masq=false \
  -H unix:///var/run/docker.sock -H "unix://$dir/docker.sock" \
  --data-root "$dir/data" --exec-root /run/docker --pidfile /run/docker.pid "$@"
"""


@functools.cache
def swarm_problem() -> str | None:
    """Why a Swarm of namespaced engines cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the fleet tests need root (network and mount namespaces)"
    for tool in ("dockerd", "ip", "nsenter", "unshare", "docker-registry"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install docker.io iproute2 docker-registry)"
    probe = f"pkprobe{secrets.token_hex(3)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done


class Node:
    """One namespaced dockerd."""

    def __init__(self, swarm: Swarm, index: int) -> None:
        self.swarm = swarm
        self.index = index
        self.name = f"node{index}"
        self.netns = f"{swarm.tag}n{index}"
        self.address = f"{swarm.subnet}.{index}"
        self.dir = swarm.dir / self.name
        self.socket = self.dir / "docker.sock"
        self.url = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Create the namespace and link, start dockerd, wait until it answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        outer, inner = f"{self.netns}a", f"{self.netns}b"
        sw = self.swarm.switch_netns
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", outer, "netns", sw)
        _run("ip", "link", "set", inner, "netns", self.netns)
        _run("ip", "-n", sw, "link", "set", outer, "master", "br0")
        _run("ip", "-n", sw, "link", "set", outer, "up")
        _run("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", inner)
        _run("ip", "-n", self.netns, "link", "set", inner, "up")
        _run("ip", "-n", self.netns, "link", "set", "lo", "up")
        self.boot()

    def boot(self) -> None:
        """Start (or restart) this node's dockerd and wait until it answers."""
        log = (self.dir / "dockerd.log").open("ab")
        self._process = subprocess.Popen(
            [
                "nsenter", f"--net=/run/netns/{self.netns}", "unshare", "-m", "-u",
                str(self.swarm.script), self.name, str(self.dir),
                "--insecure-registry", self.swarm.registry,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_serving(
            f"dockerd of {self.name}",
            self._process,
            self.socket,
            self._answers,
            self.log_tail,
            timeout=90,
            interval=0.1,
        )

    def client(self) -> Any:
        """A docker-py client of this node's engine."""
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def docker(self, *args: str, check: bool = True) -> str:
        """Run the docker CLI against this node's engine; return its stdout."""
        done = subprocess.run(
            ["/usr/bin/docker", "-H", self.url, *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {self.name}: {done.stderr.strip()}")
        return done.stdout

    def log_tail(self) -> str:
        """The last lines this node's dockerd wrote."""
        path = self.dir / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_engine(self) -> None:
        """SIGTERM dockerd and wait for it (SIGKILL only after 60 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        # Its containerd and shims were in the same session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def remove(self) -> None:
        """Stop the engine, delete the namespace, remove the node's files."""
        self.stop_engine()
        _run("ip", "netns", "del", self.netns, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self) -> bool:
        return pings(self.client)


class Swarm:
    """A switch namespace with a registry, and nodes joined into one Swarm."""

    def __init__(self) -> None:
        self.tag = f"pkf{secrets.token_hex(2)}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp"))
        self.subnet = f"10.77.{secrets.randbelow(250) + 1}"
        self.switch_netns = f"{self.tag}sw"
        self.registry = f"{self.subnet}.254:5000"
        self.script = self.dir / "node.sh"
        self.script.write_text(_NODE_SCRIPT)
        self.script.chmod(0o755)
        self.nodes: list[Node] = []
        self._registry: subprocess.Popen[bytes] | None = None
        self._worker_token = ""

    @property
    def manager(self) -> Node:
        """The first node: the Swarm's manager."""
        return self.nodes[0]

    def start(self, nodes: int) -> None:
        """Make the switch and the registry, start ``nodes`` engines, init and join the Swarm."""
        sw = self.switch_netns
        _run("ip", "netns", "add", sw)
        _run("ip", "-n", sw, "link", "set", "lo", "up")
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "addr", "add", f"{self.subnet}.254/24", "dev", "br0")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        self._start_registry()
        for _ in range(nodes):
            self.add_node()

    def add_node(self) -> Node:
        """Start one more engine and join it (the first one inits the Swarm)."""
        node = Node(self, len(self.nodes) + 1)
        self.nodes.append(node)
        node.start()
        self.join(node)
        return node

    def join(self, node: Node) -> None:
        """Make ``node`` part of the Swarm (init it when it is the first)."""
        if node is self.nodes[0]:
            node.docker("swarm", "init", "--advertise-addr", node.address)
            self._worker_token = node.docker("swarm", "join-token", "-q", "worker").strip()
        else:
            node.docker(
                "swarm", "join", "--advertise-addr", node.address, "--token", self._worker_token,
                f"{self.manager.address}:2377",
            )  # fmt: skip

    def leave(self, node: Node) -> None:
        """``node`` leaves the Swarm (its engine keeps running)."""
        node.docker("swarm", "leave", "--force")

    def wait_nodes_ready(self, count: int, timeout: float = 60) -> None:
        """Wait until the manager sees ``count`` nodes Ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.manager.docker("node", "ls", "--format", "{{.Status}}").split()
            if states.count("Ready") == count:
                return
            time.sleep(0.5)
        raise AssertionError(f"{count} nodes were not Ready within {timeout} s")

    def stop(self) -> None:
        """Stop every engine (workers first), the registry; delete namespaces and files."""
        for node in reversed(self.nodes):
            node.remove()
        if self._registry is not None and self._registry.poll() is None:
            self._registry.terminate()
            self._registry.wait(15)
        _run("ip", "netns", "del", self.switch_netns, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def in_switch(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a command in the switch namespace (it reaches the registry and nodes)."""
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.switch_netns}", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _start_registry(self) -> None:
        config = self.dir / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'registry'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry}\n"
        )
        log = (self.dir / "registry.log").open("ab")
        self._registry = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.switch_netns}", "docker-registry", "serve",
             str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["nsenter", f"--net=/run/netns/{self.switch_netns}", "python3", "-c",
                 f"import urllib.request; urllib.request.urlopen('http://{self.registry}/v2/')"],
                capture_output=True,
            )  # fmt: skip
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("the registry did not answer in 20 s")
