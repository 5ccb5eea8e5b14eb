"""Parity with the real engine: what `docker plugin create/set/inspect` show for a config.

Each test creates a plugin from a tiny rootfs (one file, never run) under a
unique name and removes it afterwards.
"""

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginkit import InvalidConfigError
from pluginkit._config import (
    apply_set,
    dump_config,
    dump_settings,
    initial_settings,
    parse_config,
    parse_settings,
)

pytestmark = pytest.mark.docker

RICH = {
    "description": "pluginkit parity plugin",
    "documentation": "https://example.invalid/doc",
    "entrypoint": ["/bin/plugin", "--serve"],
    "workdir": "/w",
    "interface": {"types": ["docker.volumedriver/1.0", "docker.authz/1.0"], "socket": "p.sock"},
    "network": {"type": "host"},
    "ipchost": True,
    "propagatedMount": "/mnt/volumes",
    "user": {"uid": 1000, "gid": 1000},
    "mounts": [
        {
            "name": "state",
            "description": "state dir",
            "source": "/var/lib/pk",
            "destination": "/mnt/state",
            "type": "bind",
            "options": ["rbind"],
            "settable": ["source"],
        },
        {"name": "scratch", "destination": "/scratch", "type": "tmpfs", "source": None},
        {"name": "fixed", "source": "/etc", "destination": "/host-etc", "type": "bind"},
        {"name": "nosrc", "destination": "/nosrc", "type": "bind", "settable": ["source"]},
    ],
    "env": [
        {"name": "DEBUG", "value": "0", "settable": ["value"]},
        {"name": "TOKEN", "description": "no default", "settable": ["value"]},
        {"name": "MODE", "value": "fast"},
        {"name": "MULTI", "settable": ["value", "other"]},
    ],
    "args": {"name": "args", "value": ["--a", "1"], "settable": ["value"]},
    "linux": {
        "capabilities": ["CAP_SYS_ADMIN"],
        "allowAllDevices": False,
        "devices": [
            {"name": "fuse", "path": "/dev/fuse", "settable": ["path"]},
            {"name": "nopath", "settable": ["path"]},
        ],
    },
}


# Lists given as [] (the engine shows [], not null as for absent ones).
EXPLICIT_EMPTY = {
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/p"],
    "Linux": {
        "Capabilities": [],
        "Devices": [{"Name": "d", "Path": "/dev/null", "Settable": []}],
    },
    "Mounts": [{"Name": "m", "Source": "/tmp", "Destination": "/m", "Options": [], "Settable": []}],
    "Env": [{"Name": "E", "Value": "1", "Settable": []}],
    "Args": {"Name": "a", "Settable": [], "Value": []},
}
TOP_LEVEL_EMPTY = {
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/p"],
    "Linux": {"Devices": []},
    "Mounts": [],
    "Env": [],
}


@pytest.fixture
def create_plugin(docker_client, tmp_path) -> Iterator[object]:
    """create_plugin(config) -> name: `docker plugin create` from config.json + a tiny rootfs."""
    created: list[str] = []

    def create(config: dict) -> str:
        unique = uuid.uuid4().hex[:12]
        name = f"pluginkit-models-test-{unique}:latest"
        context = tmp_path / unique
        (context / "rootfs").mkdir(parents=True)
        # unique content: the engine refuses to ingest a blob it is ingesting already
        (context / "rootfs" / "id").write_text(unique)
        (context / "config.json").write_text(json.dumps(config))
        docker_client.api.create_plugin(name, str(context))
        created.append(name)
        return name

    yield create
    for name in created:
        with contextlib.suppress(Exception):  # already gone
            docker_client.api.remove_plugin(name, force=True)


def _inspect(docker_client, name: str) -> dict:
    return docker_client.api.inspect_plugin(name)


def _without_engine_fields(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("DockerVersion", "rootfs")}


@pytest.mark.parametrize(
    "config",
    [
        RICH,
        {
            "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
            "Entrypoint": ["/p"],
        },
        EXPLICIT_EMPTY,
        TOP_LEVEL_EMPTY,
    ],
    ids=["rich", "minimal", "explicit-empty", "top-level-empty"],
)
def test_dump_config_is_what_the_engine_shows(docker_client, create_plugin, config):
    """dump_config(parse_config(x)) is the Config the engine shows for x (bar what create adds)."""
    engine = _inspect(docker_client, create_plugin(config))
    assert dump_config(parse_config(config)) == _without_engine_fields(engine["Config"])


def test_engine_config_round_trips_exactly(docker_client, create_plugin):
    """The engine's own Config (DockerVersion, rootfs included) parses and dumps back unchanged."""
    engine = _inspect(docker_client, create_plugin(RICH))
    assert dump_config(parse_config(engine["Config"])) == engine["Config"]


@pytest.mark.parametrize("config", [RICH, EXPLICIT_EMPTY], ids=["rich", "explicit-empty"])
def test_initial_settings_are_the_engines(docker_client, create_plugin, config):
    """initial_settings gives the Settings of a freshly created plugin."""
    engine = _inspect(docker_client, create_plugin(config))
    assert dump_settings(initial_settings(parse_config(config))) == engine["Settings"]
    assert parse_settings(engine["Settings"]) == initial_settings(parse_config(config))
    assert dump_settings(parse_settings(engine["Settings"])) == engine["Settings"]


def test_engine_config_with_empty_lists_round_trips_exactly(docker_client, create_plugin):
    """The engine's Config holding [] and null lists parses and dumps back unchanged."""
    engine = _inspect(docker_client, create_plugin(EXPLICIT_EMPTY))
    assert dump_config(parse_config(engine["Config"])) == engine["Config"]


def test_key_spelling_and_duplicates_decode_like_the_engine(docker_client, create_plugin):
    """Mixed-case and duplicate keys (Go merges same-struct objects) give the engine's result."""
    config = {
        "INTERFACE": {"TYPES": ["docker.volumedriver/1.0"], "socket": "p.sock"},
        "interface": {"protocolscheme": "moby.plugins.http/v1"},
        "entrypoint": ["/a"],
        "EntryPoint": ["/b"],
        "uSeR": {"uId": 5, "GID": 7},
        "Unknown": {"x": 1},
        "mounts": [{"NAME": "m", "sOuRcE": "/x", "Options": None}],
    }
    engine = _inspect(docker_client, create_plugin(config))
    assert dump_config(parse_config(config)) == _without_engine_fields(engine["Config"])


SET_BATCHES = [
    ["DEBUG=1"],
    ["TOKEN=abc", "DEBUG.value=2"],
    ["state.source=/srv/pk", "fuse=/dev/zero"],
    ["args=-v  --x y"],
    ["args"],
    ["DEBUG"],
    ["state=/a", "state=/b", "MULTI.value=m"],
]


@pytest.mark.parametrize("batch", SET_BATCHES, ids=[" ".join(b) for b in SET_BATCHES])
def test_apply_set_matches_docker_plugin_set(docker_client, create_plugin, batch):
    """apply_set gives the Config and Settings the engine shows after `docker plugin set`."""
    name = create_plugin(RICH)
    docker_client.api.configure_plugin(name, batch)
    engine = _inspect(docker_client, name)
    cfg = parse_config(RICH)
    cfg, settings = apply_set(cfg, initial_settings(cfg), batch)
    assert dump_config(cfg) == _without_engine_fields(engine["Config"])
    assert dump_settings(settings) == engine["Settings"]


SET_ERRORS = [
    ["=x"],
    ["NOPE=1"],
    ["MODE=slow"],
    ["DEBUG.other=1"],
    ["MULTI=1"],
    ["fixed=/x"],
    ["scratch=/x"],
    ["nopath=/dev/x"],
    ["nosrc=/x"],
    ["state.path=/x"],
    ["args.x=1"],
]


@pytest.mark.parametrize("batch", SET_ERRORS, ids=[" ".join(b) for b in SET_ERRORS])
def test_set_errors_have_the_engines_texts(docker_client, create_plugin, batch):
    """apply_set fails with the very text the engine answers for the same arguments."""
    import docker

    name = create_plugin(RICH)
    with pytest.raises(docker.errors.APIError) as engine_error:
        docker_client.api.configure_plugin(name, batch)
    cfg = parse_config(RICH)
    with pytest.raises(InvalidConfigError) as ours:
        apply_set(cfg, initial_settings(cfg), batch)
    assert str(ours.value) == _head_text(engine_error.value.explanation)


def _head_text(message: str) -> str:
    # Engine 20.10 says "Plugin config has no ..."; moby HEAD (and pluginkit)
    # lower-cased it ("plugin config has no mount source").
    prefix = "Plugin config has no "
    return "p" + message[1:] if message.startswith(prefix) else message


def test_context_dir_config_file_is_read_the_same(docker_client, create_plugin, tmp_path: Path):
    """load_config of the file the engine was given agrees with the engine's Config."""
    from pluginkit._config import load_config

    name = create_plugin(RICH)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(RICH, indent=2))
    engine = _inspect(docker_client, name)
    assert dump_config(load_config(path)) == _without_engine_fields(engine["Config"])
