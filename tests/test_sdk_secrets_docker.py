"""A swarm of one private dockerd asks a pluginkit SecretProvider for a driver-backed secret."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PluginError
from pluginkit.sdk import SecretProvider
from pluginkit.sdk import secrets as secret_models
from tests._dockerd import busybox_image, legacy_plugin, private_dockerd
from tests._sdk_helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Vault(SecretProvider):
    """Knows one secret; records what the engine asked."""

    def __init__(self) -> None:
        self.requests: list[secret_models.SecretRequest] = []

    def get_secret(self, request: secret_models.SecretRequest) -> secret_models.SecretResponse:
        self.requests.append(request)
        if request.secret_name != "db-password":
            raise PluginError(f"no secret {request.secret_name!r} in the vault")
        return secret_models.SecretResponse(value="hunter2", do_not_reuse=True)


@pytest.fixture(scope="module")
def vault() -> Iterator[tuple[str, Vault]]:
    driver = Vault()
    with legacy_plugin(driver, "pk-secrets") as name:
        yield name, driver


@pytest.fixture(scope="module")
def swarm(vault: tuple[str, Vault]) -> Iterator[tuple[Any, str]]:
    """A private engine in swarm mode, and the tag of a busybox image in it."""
    workdir = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    try:
        with private_dockerd(workdir) as engine:
            engine.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:0")
            with busybox_image(engine, "pk-secrets", ("sh", "cat", "sleep")) as image:
                yield engine, image
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _service(swarm: tuple[Any, str], driver: str, secret_name: str) -> Any:
    import docker

    engine, image = swarm
    secret = engine.secrets.create(
        name=secret_name, data=b"", labels={"env": "test"}, driver=docker.types.DriverConfig(driver)
    )
    return engine.services.create(
        image,
        ["sleep", "600"],
        name=f"pk-{secrets.token_hex(4)}",
        secrets=[docker.types.SecretReference(secret.id, secret_name)],
        restart_policy=docker.types.RestartPolicy(condition="none"),
    )


def _task(service: Any) -> dict[str, Any]:
    tasks = service.tasks()
    return tasks[0] if tasks else {}


def test_engine_mounts_the_value_the_plugin_gave(
    swarm: tuple[Any, str], vault: tuple[str, Vault]
) -> None:
    """The task's /run/secrets file holds the plugin's value; the request names it all."""
    engine, image = swarm
    name, driver = vault
    service = _service(swarm, name, "db-password")
    wait_for(lambda: _task(service).get("Status", {}).get("State") == "running", timeout=60)
    task = _task(service)
    [container] = engine.containers.list(
        filters={"label": f"com.docker.swarm.task.id={task['ID']}"}
    )
    assert container.exec_run(["cat", "/run/secrets/db-password"]).output == b"hunter2"
    # The dispatcher may ask again when it recomputes assignments: same request.
    asked = [r for r in driver.requests if r.task_id == task["ID"]]
    assert asked
    assert all(r == asked[0] for r in asked)
    request = asked[0]
    assert request.secret_name == "db-password"
    assert request.secret_labels == {"env": "test"}
    assert (request.service_id, request.service_name) == (service.id, service.name)
    assert request.task_name == f"{service.name}.1.{task['ID']}"
    assert request.task_image.startswith(image)
    assert request.node_id == engine.info()["Swarm"]["NodeID"]
    service.remove()


def test_a_refused_secret_fails_the_task(swarm: tuple[Any, str], vault: tuple[str, Vault]) -> None:
    """A secret the plugin refuses (HTTP 500 {"Err"}) fails the task: the engine has no value.

    The engine keeps the plugin's message to itself (not even in its log at
    the default level): the task says the secret was not found.
    """
    engine, _ = swarm
    name, driver = vault
    service = _service(swarm, name, "unknown-secret")
    wait_for(lambda: _task(service).get("Status", {}).get("Err"), timeout=60)
    status = _task(service)["Status"]
    assert status["State"] in ("rejected", "failed")
    [secret] = engine.secrets.list(filters={"name": "unknown-secret"})
    assert status["Err"] == (
        f"starting container failed: unable to get secret from secret store: "
        f"secret {secret.id} not found"
    )
    assert {r.secret_name for r in driver.requests if r.service_id == service.id} == {
        "unknown-secret"
    }
    service.remove()
