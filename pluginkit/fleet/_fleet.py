"""Apply a fleet spec to a Docker Swarm: a config object and a global agent service.

The desired state travels through Swarm itself, never through a channel of
our own: :meth:`Fleet.apply` stores the spec as a Swarm *config object*
(named after the spec's digest, so an unchanged spec is the same object) and
runs the agent as a *global service* that mounts it. Swarm then does the
rest: it starts an agent on every node, also on nodes that join later; when
the spec changes, the service's config reference changes and Swarm rolls the
agents over one node at a time (``parallelism=1``, stop-first, and the next
node only once the new agent is healthy, i.e. its plugins are enabled).
Applying the same spec again changes nothing, so no task restarts.

:meth:`Fleet.status` reads everything back through Swarm as well: the nodes,
the agent's tasks, and the status lines each agent prints (the service's
logs, which the Swarm manager gathers from every node).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from typing import Any

import attrs

from .._errors import PluginError
from ._agent import STATUS_PREFIX
from ._credentials import SECRET_DIR, agent_docker_config
from ._spec import FleetSpec, parse_spec

__all__ = ["AGENT_SERVICE", "Fleet", "NodeStatus"]

AGENT_SERVICE = "pluginkit-fleet-agent"
"""The name of the global service that runs the agents."""
_LABEL = "io.pluginkit.fleet"
_SPEC_TARGET = "/etc/pluginkit/fleet.json"
# Inside the agent's own container (not on the node), so that a new agent is
# not taken for ready by the file of the one it replaces.
_READY_FILE = "/tmp/pluginkit-fleet-ready"
# Paths on each node that the agent needs, mounted at the same path.
_NODE_MOUNTS = (
    "/var/run/docker.sock",
    "/run/docker/plugins",
    "/run/pluginkit",
    "/var/lib/pluginkit",
)


@attrs.frozen
class NodeStatus:
    """One plugin on one node, as the node's agent last reported it."""

    node: str
    plugin: str
    reference: str
    digest: str
    enabled: bool
    health: str | None
    error: str
    agent_state: str
    spec_current: bool

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (``fleet status --format json``)."""
        return attrs.asdict(self)


class Fleet:
    """The plugins of a Docker Swarm, through its manager's engine.

    Args:
        docker_client: A ``docker.DockerClient`` of a Swarm manager node.
    """

    def __init__(self, docker_client: Any) -> None:
        self.client = docker_client

    # -- apply / remove -------------------------------------------------------

    def apply(self, spec: FleetSpec, *, credentials: bool = True) -> bool:
        """Make the Swarm run ``spec``; return whether anything changed.

        Returns at once: the agents converge on their own (see :meth:`wait`).
        With ``credentials``, the caller's Docker credentials for the
        registries of the spec's plugins go to the agents as a Swarm secret
        (see :mod:`pluginkit.fleet._credentials`).

        Raises:
            PluginError: The engine is not a Swarm manager, or refused the
                config or the service.
        """
        import docker.errors
        import docker.types

        config_name = f"pluginkit-fleet-{spec.digest}"
        auth = agent_docker_config(spec) if credentials else None
        auth_name = (
            f"pluginkit-fleet-auth-{hashlib.sha256(auth).hexdigest()[:16]}" if auth else None
        )
        try:
            config_id = self._ensure_config(config_name, spec)
            auth_id = self._ensure_secret(auth_name, auth) if auth_name and auth else None
            service = self._service()
            if (
                service is not None
                and self._current_config(service) == config_name
                and self._image(service) == spec.agent.image
                and self._current_secret(service) == auth_name
            ):
                return False
            task = self._task_template(spec, config_id, config_name, auth_id, auth_name)
            update = docker.types.UpdateConfig(
                parallelism=1, order="stop-first", failure_action="pause", monitor=2_000_000_000
            )
            if service is None:
                self.client.api.create_service(
                    task,
                    name=AGENT_SERVICE,
                    labels={_LABEL: "agent"},
                    mode=docker.types.ServiceMode("global"),
                    update_config=update,
                )
            else:
                version = service.attrs["Version"]["Index"]
                self.client.api.update_service(
                    service.id,
                    version,
                    task_template=task,
                    name=AGENT_SERVICE,
                    labels={_LABEL: "agent"},
                    mode=docker.types.ServiceMode("global"),
                    update_config=update,
                    fetch_current_spec=False,
                )
            self._drop_configs(keep=config_name)
            self._drop_secrets(keep=auth_name)
        except docker.errors.APIError as exc:
            raise PluginError(f"the Swarm refused the fleet: {_explain(exc)}") from exc
        return True

    def current_spec(self) -> FleetSpec | None:
        """Return the spec the agent service runs now, or ``None`` without a fleet."""
        service = self._service()
        if service is None:
            return None
        name = self._current_config(service)
        for config in self.client.configs.list(filters={"name": name}):
            if config.name == name:
                data = base64.b64decode(config.attrs["Spec"]["Data"])
                return parse_spec(json.loads(data), source=f"config {name}")
        return None

    def remove(self, name: str, *, timeout: float = 300.0) -> None:
        """Remove the plugin ``name`` from every node; with the last one, the agents too.

        With plugins left, this is :meth:`apply` of the spec without it. For
        the last plugin, the agents first remove it (and their state) from
        every node; then the service and its config objects are removed, so
        nothing of the fleet is left on the nodes.

        Raises:
            PluginError: No fleet runs, or it has no plugin ``name``, or the
                nodes did not finish within ``timeout`` seconds.
        """
        spec = self.current_spec()
        if spec is None:
            raise PluginError("no fleet runs on this Swarm")
        if name not in spec.plugins:
            raise PluginError(f'plugin "{name}" is not in the fleet')
        rest = spec.without(name)
        self.apply(rest)
        if rest.plugins:
            return
        self.wait(rest, timeout=timeout)
        service = self._service()
        if service is not None:
            service.remove()
        self._drop_configs(keep=None)
        self._drop_secrets(keep=None)

    # -- status ---------------------------------------------------------------

    def status(self, name: str | None = None) -> list[NodeStatus]:
        """Per node and plugin, what the agents last reported (through Swarm)."""
        spec = self.current_spec()
        service = self._service()
        if spec is None or service is None:
            return []
        nodes = {n.id: n.attrs["Description"]["Hostname"] for n in self.client.nodes.list()}
        states: dict[str, str] = {}
        for task in sorted(service.tasks(), key=lambda t: t.get("CreatedAt", "")):
            node = nodes.get(task.get("NodeID", ""), "")
            states[node] = task["Status"]["State"]
        reports = self._reports(service)
        rows: list[NodeStatus] = []
        for node in sorted(set(nodes.values())):
            report = reports.get(node, {})
            plugins = report.get("plugins", {})
            current = report.get("spec") == spec.digest
            for plugin_name in sorted(set(spec.plugins) | set(plugins)):
                if name is not None and plugin_name != name:
                    continue
                got = plugins.get(plugin_name, {})
                rows.append(
                    NodeStatus(
                        node=node,
                        plugin=plugin_name,
                        reference=str(got.get("reference", "")),
                        digest=str(got.get("digest", "")),
                        enabled=bool(got.get("enabled", False)),
                        health=got.get("health"),
                        error=str(got.get("error", "" if got else "no report yet")),
                        agent_state=states.get(node, "none"),
                        spec_current=current,
                    )
                )
        return rows

    def converged(self, spec: FleetSpec) -> bool:
        """Tell whether every Ready node reports ``spec`` applied, each plugin enabled."""
        service = self._service()
        if service is None:
            return not spec.plugins
        reports = self._reports(service)
        for node in self.client.nodes.list():
            if node.attrs["Status"]["State"] != "ready":
                continue
            report = reports.get(node.attrs["Description"]["Hostname"])
            if report is None or report.get("spec") != spec.digest:
                return False
            plugins = report.get("plugins", {})
            if set(plugins) != set(spec.plugins):
                return False
            if not all(p.get("enabled") and not p.get("error") for p in plugins.values()):
                return False
        return True

    def wait(self, spec: FleetSpec, *, timeout: float = 300.0, poll: float = 0.5) -> None:
        """Wait until :meth:`converged`; raise ``PluginError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.converged(spec):
            if time.monotonic() > deadline:
                raise PluginError(f"the fleet did not converge within {timeout:g} s")
            time.sleep(poll)

    # -- helpers --------------------------------------------------------------

    def _service(self) -> Any:
        import docker.errors

        try:
            return self.client.services.get(AGENT_SERVICE)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise PluginError(f"cannot read the fleet service: {_explain(exc)}") from exc

    def _ensure_config(self, name: str, spec: FleetSpec) -> str:
        for config in self.client.configs.list(filters={"name": name}):
            if config.name == name:
                return str(config.id)
        created = self.client.configs.create(
            name=name, data=spec.encode(), labels={_LABEL: spec.digest}
        )
        return str(created.id)

    def _drop_configs(self, *, keep: str | None) -> None:
        import docker.errors

        for config in self.client.configs.list(filters={"label": _LABEL}):
            if config.name != keep:
                # Still referenced by a task being replaced: removed next time.
                with contextlib.suppress(docker.errors.APIError):
                    config.remove()

    def _ensure_secret(self, name: str, data: bytes) -> str:
        for secret in self.client.secrets.list(filters={"name": name}):
            if secret.name == name:
                return str(secret.id)
        created = self.client.secrets.create(name=name, data=data, labels={_LABEL: "auth"})
        return str(created.id)

    def _drop_secrets(self, *, keep: str | None) -> None:
        import docker.errors

        for secret in self.client.secrets.list(filters={"label": _LABEL}):
            if secret.name != keep:
                # Still referenced by a task being replaced: removed next time.
                with contextlib.suppress(docker.errors.APIError):
                    secret.remove()

    @staticmethod
    def _current_secret(service: Any) -> str | None:
        task = service.attrs["Spec"]["TaskTemplate"]
        secrets = task.get("ContainerSpec", {}).get("Secrets") or []
        return str(secrets[0]["SecretName"]) if secrets else None

    @staticmethod
    def _current_config(service: Any) -> str:
        task = service.attrs["Spec"]["TaskTemplate"]
        configs = task.get("ContainerSpec", {}).get("Configs") or []
        return str(configs[0]["ConfigName"]) if configs else ""

    @staticmethod
    def _image(service: Any) -> str:
        return str(service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])

    def _task_template(
        self,
        spec: FleetSpec,
        config_id: str,
        config_name: str,
        auth_id: str | None,
        auth_name: str | None,
    ) -> Any:
        import docker.types

        env: dict[str, str | bytes | None] = {
            "PLUGINKIT_NODE": "{{.Node.Hostname}}",
            "PLUGINKIT_TASK": "{{.Task.ID}}",
            "PLUGINKIT_INSECURE_REGISTRIES": ",".join(spec.agent.insecure_registries),
            "PYTHONUNBUFFERED": "1",
        }
        secrets = []
        if auth_id is not None and auth_name is not None:
            env["DOCKER_CONFIG"] = f"/run/secrets/{SECRET_DIR}"
            secrets.append(
                docker.types.SecretReference(
                    auth_id, auth_name, filename=f"{SECRET_DIR}/config.json", mode=0o400
                )
            )

        container = docker.types.ContainerSpec(
            image=spec.agent.image,
            command=[
                "/usr/bin/python3", "-m", "pluginkit", "fleet", "agent", _SPEC_TARGET,
                "--ready-file", _READY_FILE,
            ],
            env=env,
            secrets=secrets or None,
            mounts=[docker.types.Mount(path, path, type="bind") for path in _NODE_MOUNTS],
            configs=[
                docker.types.ConfigReference(config_id, config_name, filename=_SPEC_TARGET)
            ],
            healthcheck=docker.types.Healthcheck(
                test=[
                    "CMD", "/usr/bin/python3", "-c",
                    f"import os, sys; sys.exit(not os.path.exists({_READY_FILE!r}))",
                ],
                interval=1_000_000_000,
                timeout=5_000_000_000,
                retries=300,
                start_period=1_000_000_000,
            ),
            stop_grace_period=20_000_000_000,
        )  # fmt: skip
        return docker.types.TaskTemplate(
            container_spec=container,
            # The node's own network: the agent reaches the registry as the
            # node's engine does (no NAT needed on the node).
            networks=[docker.types.NetworkAttachmentConfig("host")],
            restart_policy=docker.types.RestartPolicy(condition="any", delay=1_000_000_000),
        )

    def _running_tasks(self, service: Any) -> set[str]:
        """Return the ids of the agent's running tasks (older tasks' reports are stale)."""
        return {
            str(task["ID"])
            for task in service.tasks(filters={"desired-state": "running"})
            if task["Status"]["State"] == "running"
        }

    def _reports(self, service: Any) -> dict[str, dict[str, Any]]:
        """Return the last status line of each node's agent (newest report wins)."""
        import docker.errors

        try:
            raw = self.client.api.service_logs(service.id, stdout=True, stderr=False, tail=200)
        except docker.errors.APIError:
            return {}
        running = self._running_tasks(service)
        reports: dict[str, tuple[float, dict[str, Any]]] = {}
        for text in _log_lines(raw):
            start = text.find(STATUS_PREFIX)
            if start < 0:
                continue
            try:
                report = json.loads(text[start + len(STATUS_PREFIX) :])
            except ValueError:
                continue
            if not isinstance(report, dict):
                continue
            if report.get("task") not in running:
                continue  # from an agent that has stopped since (an old report)
            node = str(report.get("node", ""))
            stamp = report.get("time")
            if not isinstance(stamp, (int, float)):
                continue
            if node not in reports or reports[node][0] <= stamp:
                reports[node] = (stamp, report)
        return {node: report for node, (_, report) in reports.items()}


def _log_lines(raw: Any) -> list[str]:
    data = raw if isinstance(raw, bytes) else b"".join(raw)
    lines: list[str] = []
    # Multiplexed frames (no TTY): 8-byte header, then the payload.
    while len(data) >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0":
        size = int.from_bytes(data[4:8], "big")
        lines.extend(data[8 : 8 + size].decode("utf-8", "replace").splitlines())
        data = data[8 + size :]
    if data:
        lines.extend(data.decode("utf-8", "replace").splitlines())
    return lines


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation) if explanation else str(exc)
