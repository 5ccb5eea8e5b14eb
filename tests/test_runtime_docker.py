"""DockerRuntime driven directly through the runtime protocol, against the real engine.

The plugin in the container is a real plugin server (a static Go program, see
``_dockerrt_helpers``); specs are made by hand, as a Manager would make them.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from _dockerrt_helpers import (
    make_plugin_dir,
    raw_call,
    remove_docker_leftovers,
    socket_answers,
    unique,
    wait_until,
)

from pluginkit import Client, PluginError, RuntimeStartError
from pluginkit.runtime import PluginExit, RuntimeDevice, RuntimeMount, RuntimeSpec
from pluginkit.runtime.docker import LABEL_ID, DockerRuntime, ImportProgress

pytestmark = [pytest.mark.docker, pytest.mark.go]


@pytest.fixture
def client(engine_client: Any) -> Any:
    """The engine under test: each test runs on dockerd and on Podman's Docker API."""
    return engine_client


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plugin_dir(tmp_path_factory.mktemp("plugin"), busybox=True)


class Exits:
    """Collects PluginExit reports (from the watcher threads)."""

    def __init__(self) -> None:
        self.seen: list[PluginExit] = []
        self._lock = threading.Lock()

    def __call__(self, exit: PluginExit) -> None:
        with self._lock:
            self.seen.append(exit)

    def wait(self, count: int = 1) -> list[PluginExit]:
        wait_until(lambda: len(self.seen) >= count)
        return self.seen


@pytest.fixture
def exits() -> Exits:
    return Exits()


@pytest.fixture
def made_ids(client: Any) -> Iterator[list[str]]:
    """Ids of the plugins a test created: their containers and images are removed after it."""
    ids: list[str] = []
    yield ids
    remove_docker_leftovers(client, ids)


@pytest.fixture
def runtime(client: Any) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(client)
    yield rt
    rt.close()


SpecFactory = Callable[..., RuntimeSpec]


@pytest.fixture
def make_spec(short_tmp: Path, plugin_dir: Path, made_ids: list[str]) -> SpecFactory:
    def make(**overrides: Any) -> RuntimeSpec:
        plugin_id = secrets.token_hex(32)
        made_ids.append(plugin_id)
        fields: dict[str, Any] = {
            "id": plugin_id,
            "name": "pkdr-test:latest",
            "rootfs": plugin_dir / "rootfs",
            "entrypoint": ("/pkplugin",),
            "socket_dir": short_tmp / plugin_id[:8] / "run",
            "socket": "pk.sock",
            "state_dir": short_tmp / plugin_id[:8] / "state",
            "network": "none",
        }
        fields.update(overrides)
        return RuntimeSpec(**fields)

    return make


def is_podman(client: Any) -> bool:
    """Tell whether ``client`` talks to Podman's Docker API rather than dockerd."""
    return "Podman" in str(client.version().get("Components"))


def start_and_wait(runtime: DockerRuntime, spec: RuntimeSpec, on_exit: Exits) -> None:
    runtime.start(spec, on_exit)
    wait_until(lambda: socket_answers(spec.socket_path))


def labelled(client: Any, plugin_id: str, *, running_only: bool = False) -> list[dict[str, Any]]:
    filters = {"label": f"{LABEL_ID}={plugin_id}"}
    if running_only:
        filters["status"] = "running"
    return list(client.api.containers(all=not running_only, filters=filters))


def test_started_plugin_answers_on_its_socket(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """A started plugin listens on spec.socket_dir, mounted at /run/docker/plugins."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    with Client(f"unix://{spec.socket_path}") as plugin:
        assert plugin.call("VolumeDriver.List") == {"Volumes": [], "Err": ""}
        assert plugin.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}


def test_container_carries_the_plugin_labels(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """The container is labelled with the plugin id and name."""
    spec = make_spec(name="vendor/pk:1.0")
    runtime.start(spec, exits)
    (container,) = labelled(client, spec.id)
    assert container["Id"] == runtime.container_id(spec.id)
    assert container["Labels"]["pluginkit.plugin.id"] == spec.id
    assert container["Labels"]["pluginkit.plugin.name"] == "vendor/pk:1.0"
    assert container["Names"] == [f"/pluginkit-vendor_pk_1.0-{spec.id[:12]}"]


def test_process_gets_entrypoint_args_env_and_workdir(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """Entrypoint + args, env and working directory of the spec reach the process."""
    spec = make_spec(args=("--debug", "two words"), env=("DEBUG=1", "EMPTY="), workdir="/srv/x")
    start_and_wait(runtime, spec, exits)
    info = raw_call(spec.socket_path, "Test.Info")
    assert info["Args"] == ["/pkplugin", "--debug", "two words"]
    assert info["Cwd"] == "/srv/x"
    assert "DEBUG=1" in info["Env"]
    assert "EMPTY=" in info["Env"]
    assert (info["Uid"], info["Gid"]) == (0, 0)


def test_container_has_capabilities_mounts_and_network_of_the_spec(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any, short_tmp: Path
) -> None:
    """The running container has the spec's capabilities, mounts and network mode."""
    data = short_tmp / "data"
    data.mkdir()
    spec = make_spec(
        capabilities=("CAP_SYS_ADMIN", "CAP_NET_ADMIN"),
        mounts=(
            RuntimeMount(source=str(data), destination="/data", options=("rbind", "ro")),
            RuntimeMount(source="", destination="/scratch", type="tmpfs", options=("size=1m",)),
        ),
        network="none",
    )
    start_and_wait(runtime, spec, exits)
    inspect = client.api.inspect_container(runtime.container_id(spec.id))
    assert inspect["State"]["Running"] is True
    # Podman stores capabilities its own way: without the prefix, sorted.
    expected_caps = (
        ["NET_ADMIN", "SYS_ADMIN"] if is_podman(client) else ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    )
    assert inspect["HostConfig"]["CapAdd"] == expected_caps
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    if is_podman(client):  # Podman lists its default options after ours
        assert inspect["HostConfig"]["Tmpfs"]["/scratch"].startswith("size=1m,")
    else:
        assert inspect["HostConfig"]["Tmpfs"] == {"/scratch": "size=1m"}
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    assert mounts["/run/docker/plugins"]["Source"] == str(spec.socket_dir)
    assert mounts["/run/docker/plugins"]["RW"] is True
    assert mounts["/data"]["Source"] == str(data)
    assert mounts["/data"]["RW"] is False


def test_namespaces_devices_and_user_of_the_spec(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any
) -> None:
    """Host network/ipc/pid, devices, allow-all-devices and user go into the container config."""
    spec = make_spec(
        network="host",
        ipc_host=True,
        pid_host=True,
        devices=(RuntimeDevice("/dev/null"),),
        allow_all_devices=True,
        user=(1000, 1001),
    )
    runtime.prepare(spec)
    (container,) = labelled(client, spec.id)
    inspect = client.api.inspect_container(container["Id"])
    host = inspect["HostConfig"]
    assert (host["NetworkMode"], host["PidMode"]) == ("host", "host")
    # Podman 4.3 says "shareable" for a host IPC namespace it does give (the
    # container's /proc/1/ns/ipc is the host's): its inspect is wrong there.
    assert host["IpcMode"] == ("shareable" if is_podman(client) else "host")
    # Podman leaves the permissions empty: its default is rwm.
    permissions = "" if is_podman(client) else "rwm"
    assert host["Devices"] == [
        {
            "PathOnHost": "/dev/null",
            "PathInContainer": "/dev/null",
            "CgroupPermissions": permissions,
        }
    ]
    # Podman 4.3's Docker API drops device cgroup rules (the runtime warns).
    assert host["DeviceCgroupRules"] == (None if runtime.is_podman else ["a *:* rwm"])
    assert inspect["Config"]["User"] == "1000:1001"
    assert inspect["State"]["Status"] == "created"


@pytest.mark.parametrize("network", ["", "none", "null", "bridge"])
def test_network_types_without_privilege_get_no_network(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any, network: str
) -> None:
    """Types needing no network privilege get Docker's "none", like the engine's fresh netns."""
    spec = make_spec(network=network)
    runtime.prepare(spec)
    (container,) = labelled(client, spec.id)
    inspect = client.api.inspect_container(container["Id"])
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    # Podman does not report NetworkDisabled; "none" is what counts.
    assert inspect["Config"].get("NetworkDisabled", is_podman(client)) is True


def test_named_network_is_joined(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any
) -> None:
    """Any other network type names a Docker network the container joins."""
    network = client.networks.create(unique("pkdr-net"), labels={"pkdr": "test"})
    try:
        spec = make_spec(network=network.name)
        runtime.prepare(spec)
        (container,) = labelled(client, spec.id)
        inspect = client.api.inspect_container(container["Id"])
        assert network.name in inspect["NetworkSettings"]["Networks"]
        # Podman reports the mode of a container on a named network as "bridge".
        assert inspect["HostConfig"]["NetworkMode"] == (
            "bridge" if is_podman(client) else network.name
        )
        assert inspect["Config"].get("NetworkDisabled") is not True
    finally:
        runtime.discard(spec.id)
        network.remove()


def test_propagated_mount_is_an_rshared_bind(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any, short_tmp: Path
) -> None:
    """The propagated mount is bound rshared from its host source (made a shared mount)."""
    source = short_tmp / "propagated"
    spec = make_spec(propagated_mount="/mnt/volumes", propagated_mount_source=source)
    try:
        start_and_wait(runtime, spec, exits)
        mounts = client.api.inspect_container(runtime.container_id(spec.id))["Mounts"]
        (mount,) = [m for m in mounts if m["Destination"] == "/mnt/volumes"]
        assert (mount["Source"], mount["Propagation"]) == (str(source), "rshared")
    finally:
        runtime.discard(spec.id)
    assert str(source) not in Path("/proc/self/mountinfo").read_text().split()


def test_docker_kill_reports_the_exit(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """A container killed behind the runtime's back is reported once, as killed by SIGKILL."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    client.api.kill(runtime.container_id(spec.id))
    (exit,) = exits.wait()
    assert (exit.id, exit.exit_code) == (spec.id, -9)
    assert exit.stderr_tail == "pkplugin: ready"
    assert runtime.is_running(spec.id) is False


def test_exit_code_and_stderr_tail_are_reported(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """A plugin exiting on its own reports its status and the last lines of its stderr."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    raw_call(spec.socket_path, "Test.Exit", {"Code": 3})
    (exit,) = exits.wait()
    assert exit == PluginExit(spec.id, 3, "pkplugin: ready\npkplugin: exiting with 3")


def test_stop_leaves_no_running_container(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """stop() returns after the exit, reported once with status 0; no container runs."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    runtime.stop(spec.id, grace=10)
    assert exits.wait() == [PluginExit(spec.id, 0, "pkplugin: ready\npkplugin: terminated")]
    assert labelled(client, spec.id, running_only=True) == []
    assert runtime.is_running(spec.id) is False


def test_exits_are_reported_once_each_from_the_dispatcher_thread(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any
) -> None:
    """Each exit (a kill, then a stop) is reported once, from pluginkit-docker-exits."""
    seen: list[tuple[int | None, str]] = []
    lock = threading.Lock()

    def on_exit(exit_: PluginExit) -> None:
        with lock:
            seen.append((exit_.exit_code, threading.current_thread().name))

    spec = make_spec()
    runtime.start(spec, on_exit)
    wait_until(lambda: socket_answers(spec.socket_path))
    client.api.kill(runtime.container_id(spec.id))
    wait_until(lambda: len(seen) == 1)
    runtime.start(spec, on_exit)
    wait_until(lambda: socket_answers(spec.socket_path))
    runtime.stop(spec.id, grace=10)
    wait_until(lambda: len(seen) == 2)
    assert seen == [(-9, "pluginkit-docker-exits"), (0, "pluginkit-docker-exits")]


def test_stop_sends_sigkill_after_the_grace_period(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """A plugin ignoring SIGTERM (busybox as pid 1) is killed once the grace period passed."""
    spec = make_spec(entrypoint=("/bin/busybox", "sleep", "600"))
    runtime.start(spec, exits)
    runtime.stop(spec.id, grace=0.5)
    assert [(e.id, e.exit_code) for e in exits.wait()] == [(spec.id, -9)]


def test_stop_of_a_plugin_not_running_is_a_no_op(runtime: DockerRuntime) -> None:
    """Stopping an unknown plugin is not an error."""
    runtime.stop(secrets.token_hex(32))


def test_restart_reuses_the_container(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """After a stop, starting the same spec again starts the same container."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    first = runtime.container_id(spec.id)
    runtime.stop(spec.id)
    start_and_wait(runtime, spec, exits)
    assert runtime.container_id(spec.id) == first
    assert [c["Id"] for c in labelled(client, spec.id)] == [first]


def test_changed_spec_replaces_the_container(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """A start with a changed spec removes the old container and creates a new one."""
    spec = make_spec(env=("DEBUG=0",))
    start_and_wait(runtime, spec, exits)
    first = runtime.container_id(spec.id)
    runtime.stop(spec.id)
    changed = attrs.evolve(spec, env=("DEBUG=1",))
    start_and_wait(runtime, changed, exits)
    assert runtime.container_id(spec.id) != first
    assert [c["Id"] for c in labelled(client, spec.id)] == [runtime.container_id(spec.id)]
    assert "DEBUG=1" in raw_call(spec.socket_path, "Test.Info")["Env"]


def test_unchanged_rootfs_is_imported_once(make_spec: SpecFactory, client: Any) -> None:
    """The rootfs is imported (with progress reports) only once while it is unchanged."""
    progress: list[ImportProgress] = []
    runtime = DockerRuntime(client, on_progress=progress.append)
    spec = make_spec()
    runtime.prepare(spec)
    total = progress[-1].total
    assert (progress[0].done, progress[-1].done) == (0, total)
    assert {(p.plugin_id, p.name, p.total) for p in progress} == {(spec.id, spec.name, total)}
    count = len(progress)
    runtime.prepare(attrs.evolve(spec, env=("X=1",)))
    (spec.state_dir / "docker-image.json").unlink()  # without the cache, the tag still matches
    runtime.prepare(spec)
    assert len(progress) == count
    images = client.api.images(filters={"label": f"{LABEL_ID}={spec.id}"})
    assert len(images) == 1


def test_logs_reach_the_plugin_logger(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, caplog: pytest.LogCaptureFixture
) -> None:
    """Each stdout/stderr line is a record of logger pluginkit.plugin with plugin id and stream."""
    caplog.set_level(logging.INFO, logger="pluginkit.plugin")
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    raw_call(spec.socket_path, "Test.Say", {"Stdout": "hello out", "Stderr": "hello err"})

    def said() -> list[tuple[str, str, str]]:
        return [
            (r.getMessage(), r.plugin, r.stream)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "pluginkit.plugin" and r.getMessage().startswith("hello")
        ]

    wait_until(lambda: len(said()) == 2)
    assert sorted(said()) == [("hello err", spec.id, "stderr"), ("hello out", spec.id, "stdout")]


def test_logs_keep_the_plugins_level(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, caplog: pytest.LogCaptureFixture
) -> None:
    """A line saying its level (Python logging, logrus) is logged at it, without the prefix."""
    caplog.set_level(logging.DEBUG, logger="pluginkit.plugin")
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    say = {"Stderr": "WARNING:myplugin:disk full", "Stdout": 'level=error msg="no space" id=7'}
    raw_call(spec.socket_path, "Test.Say", say)

    def said() -> list[tuple[int, str, str]]:
        return [
            (r.levelno, r.getMessage(), r.stream)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "pluginkit.plugin"
            and r.getMessage() in ("myplugin:disk full", "no space id=7")
        ]

    wait_until(lambda: len(said()) == 2)
    assert sorted(said()) == [
        (logging.WARNING, "myplugin:disk full", "stderr"),
        (logging.ERROR, "no space id=7", "stdout"),
    ]


def test_restore_reattaches_to_the_same_container(
    make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """A new runtime re-attaches to the running container: same id, no new container."""
    spec = make_spec()
    first = DockerRuntime(client)
    start_and_wait(first, spec, exits)
    container_id = first.container_id(spec.id)
    first.close()
    second = DockerRuntime(client)
    try:
        assert second.restore(spec, exits) is True
        assert second.container_id(spec.id) == container_id
        assert [c["Id"] for c in labelled(client, spec.id)] == [container_id]
        assert raw_call(spec.socket_path, "VolumeDriver.List") == {"Volumes": [], "Err": ""}
        assert exits.seen == []
        client.api.kill(container_id)
        assert [(e.id, e.exit_code) for e in exits.wait()] == [(spec.id, -9)]
    finally:
        second.close()


def test_restore_of_a_supervised_plugin_takes_the_new_callback(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """restore() of a supervised plugin answers True; its exits go to the new callback."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    later = Exits()
    assert runtime.restore(spec, later) is True
    client.api.kill(runtime.container_id(spec.id))
    assert [(e.id, e.exit_code) for e in later.wait()] == [(spec.id, -9)]
    assert exits.seen == []


def test_restore_of_a_stopped_plugin_returns_false(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """restore() answers False when no container of the plugin runs."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    runtime.stop(spec.id)
    other = DockerRuntime(client)
    try:
        assert other.restore(spec, exits) is False
    finally:
        other.close()


def test_discard_removes_containers_and_images(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """discard() kills and removes the plugin's container and removes its image."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    runtime.discard(spec.id)
    assert labelled(client, spec.id) == []
    assert client.api.images(filters={"label": f"{LABEL_ID}={spec.id}"}) == []
    assert [(e.id, e.exit_code) for e in exits.wait()] == [(spec.id, -9)]


def test_cleanup_removes_only_unknown_plugins_of_its_root(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any, short_tmp: Path
) -> None:
    """cleanup() removes containers of plugins not kept under the root; other roots are left."""
    kept, stale = make_spec(), make_spec()
    elsewhere = make_spec(state_dir=short_tmp / "other-root" / "state")
    for spec in (kept, stale, elsewhere):
        runtime.prepare(spec)
    root = short_tmp / "root"
    assert runtime.cleanup([kept.id], root=root) == []  # nothing of theirs lies under root
    assert runtime.cleanup([kept.id, elsewhere.id], root=short_tmp) == [stale.id]
    assert labelled(client, stale.id) == []
    assert len(labelled(client, kept.id)) == len(labelled(client, elsewhere.id)) == 1


def test_missing_mount_source_fails_the_start(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """A bind mount whose source does not exist fails with an error naming the mount."""
    spec = make_spec(mounts=(RuntimeMount(source="/nonexistent/pk", destination="/data"),))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    assert str(info.value) == (
        'mount source "/nonexistent/pk" of mount "/data" of plugin pkdr-test:latest does not exist'
    )
    assert labelled(client, spec.id) == []


def test_mount_without_source_fails_the_start(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """A bind mount with no source fails with the engine's text, naming the mount."""
    spec = make_spec(mounts=(RuntimeMount(source="", destination="/data"),))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    assert str(info.value) == (
        'mount source is not specified (mount "/data" of plugin pkdr-test:latest)'
    )


def test_missing_device_fails_the_start(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """A device that does not exist on the host fails with an error naming it."""
    spec = make_spec(devices=(RuntimeDevice("/dev/pk-nonexistent"),))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    assert (
        str(info.value) == 'device "/dev/pk-nonexistent" of plugin pkdr-test:latest does not exist'
    )


def test_missing_rootfs_fails_the_start(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, short_tmp: Path
) -> None:
    """A rootfs that is not a directory fails with an error naming it."""
    spec = make_spec(rootfs=short_tmp / "nope")
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    assert str(info.value) == (
        f"rootfs of plugin pkdr-test:latest not found: {short_tmp / 'nope'} is not a directory"
    )


def test_image_build_failure_is_a_start_error(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, plugin_dir: Path
) -> None:
    """An image the engine refuses to build fails the start, naming the plugin and rootfs."""
    spec = make_spec(id="Not-A-Valid-Repository-Name")
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    assert str(info.value).startswith(
        f"could not build the image of plugin pkdr-test:latest from {plugin_dir / 'rootfs'}: "
    )


def test_unknown_entrypoint_fails_the_start(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits
) -> None:
    """An entrypoint missing from the rootfs fails the start with the engine's reason."""
    spec = make_spec(entrypoint=("/nonexistent-binary",))
    with pytest.raises(RuntimeStartError) as info:
        runtime.start(spec, exits)
    message = str(info.value)
    assert message.startswith("Docker could not start the container of plugin pkdr-test:latest: ")
    assert "/nonexistent-binary" in message
    assert runtime.is_running(spec.id) is False


def test_missing_engine_socket_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no socket at DOCKER_HOST, construction fails naming it and ProcessRuntime."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/pk-docker.sock")
    with pytest.raises(PluginError) as info:
        DockerRuntime()
    assert str(info.value) == (
        "no Docker engine answers at DOCKER_HOST=unix:///nonexistent/pk-docker.sock: "
        "the socket /nonexistent/pk-docker.sock does not exist. Start the engine or point "
        "DOCKER_HOST at one, or run plugins as host processes with "
        "pluginkit.runtime.ProcessRuntime()"
    )


def test_engine_not_answering_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing listening at a tcp DOCKER_HOST, construction fails naming it."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    with pytest.raises(PluginError) as info:
        DockerRuntime()
    message = str(info.value)
    assert message.startswith("no Docker engine answers at DOCKER_HOST=tcp://127.0.0.1:9: ")
    assert message.endswith(
        "Start the engine or point DOCKER_HOST at one, or run plugins as host processes "
        "with pluginkit.runtime.ProcessRuntime()"
    )


# -- the same code on Docker and on Podman's Docker API ------------------------


def test_engine_is_named(runtime: DockerRuntime, client: Any) -> None:
    """runtime.engine names the engine that answers, with its version."""
    expected = "Podman Engine" if is_podman(client) else "Docker Engine"
    assert runtime.engine == f"{expected} {client.version()['Version']}"


def test_engine_is_logged_once_at_debug_level(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With DEBUG logging on, a new runtime says which engine answers, once."""
    caplog.set_level(logging.DEBUG, logger="pluginkit.runtime.docker")
    rt = DockerRuntime(client)
    try:
        assert rt.engine == rt.engine
    finally:
        rt.close()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("DockerRuntime")]
    assert said == [f"DockerRuntime talks to {rt.engine}"]


def test_image_keeps_its_tag_and_one_label_per_key(
    runtime: DockerRuntime, make_spec: SpecFactory, client: Any
) -> None:
    """The imported image is tagged as asked and carries each label separately."""
    spec = make_spec()
    runtime.prepare(spec)
    (image,) = client.api.images(filters={"label": f"{LABEL_ID}={spec.id}"})
    (tag,) = image["RepoTags"]
    repository, _, content = tag.rpartition(":")
    # Podman spells local images with its default domain.
    assert repository.removeprefix("docker.io/") == f"pluginkit/{spec.id}"
    assert len(content) == 24
    assert image["Labels"][LABEL_ID] == spec.id
    assert image["Labels"]["pluginkit.rootfs"].startswith(content)


def test_signal_to_an_exited_container_is_not_an_error(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, client: Any
) -> None:
    """A stop racing an exit: the engine's refusal to kill a stopped container is no error."""
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    container_id = runtime.container_id(spec.id)
    raw_call(spec.socket_path, "Test.Exit", {"Code": 3})
    assert [(e.id, e.exit_code) for e in exits.wait()] == [(spec.id, 3)]
    runtime._signal(container_id, "SIGTERM")  # must not raise
    runtime.stop(spec.id)
    assert runtime.is_running(spec.id) is False


def test_waiting_on_an_idle_plugin_logs_nothing(
    runtime: DockerRuntime, make_spec: SpecFactory, exits: Exits, caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher's one-second waits that time out are not failures (Podman: ConnectionError)."""
    caplog.set_level(logging.WARNING, logger="pluginkit.runtime.docker")
    spec = make_spec()
    start_and_wait(runtime, spec, exits)
    threading.Event().wait(2.5)  # more than two wait slices
    assert runtime.is_running(spec.id) is True
    assert [r.getMessage() for r in caplog.records if r.name == "pluginkit.runtime.docker"] == []
