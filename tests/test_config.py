import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluginkit import (
    CapabilityID,
    Device,
    EnvVar,
    InvalidConfigError,
    Mount,
    PluginConfig,
    Privilege,
    Settings,
)
from pluginkit._config import (
    Args,
    Interface,
    Linux,
    Network,
    Rootfs,
    User,
    capabilities,
    compute_privileges,
    dump_config,
    dump_privileges,
    dump_settings,
    initial_settings,
    load_config,
    merge_env,
    parse_config,
    parse_privileges,
    parse_settings,
)

# Timing is not under test, and the machines running the suite are shared.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The example of Docker's docs/extend/config.md (vieux/sshfs), lower-case keys.
SSHFS = {
    "description": "sshFS plugin for Docker",
    "documentation": "https://docs.docker.com/engine/extend/plugins/",
    "entrypoint": ["/docker-volume-sshfs"],
    "network": {"type": "host"},
    "interface": {"types": ["docker.volumedriver/1.0"], "socket": "sshfs.sock"},
    "linux": {"capabilities": ["CAP_SYS_ADMIN"], "devices": [{"path": "/dev/fuse"}]},
    "mounts": [
        {
            "destination": "/mnt/state",
            "options": ["rbind"],
            "name": "state",
            "source": "/var/lib/docker/plugins/",
            "settable": ["source"],
            "type": "bind",
        }
    ],
    "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}],
    "propagatedMount": "/mnt/volumes",
}

MINIMAL = {
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/bin/plugin"],
}

# What `docker plugin inspect` (engine 20.10) showed as Config for this
# config.json, minus the DockerVersion and rootfs the engine adds on create.
ENGINE_INPUT = {
    "description": "test plugin",
    "documentation": "https://x",
    "entrypoint": ["/bin/busybox", "sleep", "1000"],
    "interface": {"types": ["docker.volumedriver/1.0"], "socket": "p.sock"},
    "network": {"type": "host"},
    "mounts": [
        {
            "name": "m1",
            "source": "/tmp",
            "destination": "/mnt",
            "type": "bind",
            "options": ["rbind"],
            "settable": ["source"],
        },
        {"name": "m2", "destination": "/mnt2", "type": "tmpfs"},
    ],
    "env": [{"name": "DEBUG", "value": "0", "settable": ["value"]}, {"name": "NOVAL"}],
    "args": {"name": "args", "value": ["a", "b"], "settable": ["value"]},
    "linux": {
        "capabilities": ["CAP_SYS_ADMIN"],
        "devices": [{"name": "d1", "path": "/dev/null", "settable": ["path"]}],
    },
    "user": {"uid": 0},
}
ENGINE_CONFIG = {
    "Args": {"Description": "", "Name": "args", "Settable": ["value"], "Value": ["a", "b"]},
    "Description": "test plugin",
    "Documentation": "https://x",
    "Entrypoint": ["/bin/busybox", "sleep", "1000"],
    "Env": [
        {"Description": "", "Name": "DEBUG", "Settable": ["value"], "Value": "0"},
        {"Description": "", "Name": "NOVAL", "Settable": None, "Value": None},
    ],
    "Interface": {"Socket": "p.sock", "Types": ["docker.volumedriver/1.0"]},
    "IpcHost": False,
    "Linux": {
        "AllowAllDevices": False,
        "Capabilities": ["CAP_SYS_ADMIN"],
        "Devices": [{"Description": "", "Name": "d1", "Path": "/dev/null", "Settable": ["path"]}],
    },
    "Mounts": [
        {
            "Description": "",
            "Destination": "/mnt",
            "Name": "m1",
            "Options": ["rbind"],
            "Settable": ["source"],
            "Source": "/tmp",
            "Type": "bind",
        },
        {
            "Description": "",
            "Destination": "/mnt2",
            "Name": "m2",
            "Options": None,
            "Settable": None,
            "Source": None,
            "Type": "tmpfs",
        },
    ],
    "Network": {"Type": "host"},
    "PidHost": False,
    "PropagatedMount": "",
    "User": {},
    "WorkDir": "",
}
ENGINE_SETTINGS = {
    "Args": ["a", "b"],
    "Devices": [{"Description": "", "Name": "d1", "Path": "/dev/null", "Settable": ["path"]}],
    "Env": ["DEBUG=0"],
    "Mounts": ENGINE_CONFIG["Mounts"],
}


def _config(**changes):
    return attrs.evolve(parse_config(MINIMAL), **changes)


# -- parsing -----------------------------------------------------------------


def test_parse_docs_example():
    """The config.json of Docker's documentation parses into the expected model."""
    cfg = parse_config(SSHFS)
    assert cfg == PluginConfig(
        description="sshFS plugin for Docker",
        documentation="https://docs.docker.com/engine/extend/plugins/",
        interface=Interface(
            types=(CapabilityID("docker", "volumedriver", "1.0"),), socket="sshfs.sock"
        ),
        entrypoint=("/docker-volume-sshfs",),
        network=Network(type="host"),
        linux=Linux(capabilities=("CAP_SYS_ADMIN",), devices=(Device(path="/dev/fuse"),)),
        propagated_mount="/mnt/volumes",
        mounts=(
            Mount(
                name="state",
                settable=("source",),
                source="/var/lib/docker/plugins/",
                destination="/mnt/state",
                type="bind",
                options=("rbind",),
            ),
        ),
        env=(EnvVar(name="DEBUG", settable=("value",), value="0"),),
    )


def test_keys_match_case_insensitively():
    """Keys match in any case, as with Go's decoder (PascalCase, lower, upper, mixed)."""
    data = {
        "INTERFACE": {"tYpEs": ["docker.authz/1.0"], "SOCKET": "a.sock"},
        "entryPoint": ["/a"],
        "workdir": "/w",
        "user": {"uid": 5, "Gid": 7},
        "IPCHOST": True,
        "Linux": {"allowalldevices": True},
    }
    cfg = parse_config(data)
    assert cfg.interface.socket == "a.sock"
    assert cfg.workdir == "/w"
    assert cfg.user == User(uid=5, gid=7)
    assert cfg.ipc_host is True
    assert cfg.linux.allow_all_devices is True


def test_go_folds_kelvin_sign_and_long_s():
    """Go also matches the Kelvin sign and the long s; so do we."""
    data = {**MINIMAL, "\u017fettable": 1, "Description": "x", "Args": {"\u017fettable": ["value"]}}
    assert parse_config(data).args.settable == ("value",)


def test_unknown_keys_are_ignored():
    """Unknown keys anywhere are tolerated, as Docker's decoder does."""
    data = copy.deepcopy(MINIMAL)
    data["Unknown"] = {"deep": [1, 2]}
    data["Interface"]["Extra"] = 1
    assert parse_config(data) == parse_config(MINIMAL)


def test_duplicate_keys_in_other_case_merge_like_go():
    """Two spellings of one object key decode into the same struct, later keys winning."""
    data = {
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
        "interface": {"protocolscheme": "moby.plugins.http/v1"},
        "Entrypoint": ["/a"],
        "entrypoint": ["/b"],
    }
    cfg = parse_config(data)
    assert cfg.interface == Interface(
        types=(CapabilityID("docker", "volumedriver", "1.0"),),
        socket="p.sock",
        protocol_scheme="moby.plugins.http/v1",
    )
    assert cfg.entrypoint == ("/b",)


def test_null_is_the_zero_value():
    """JSON null leaves a field at its zero value, as in Go."""
    data = {
        **MINIMAL,
        "Description": None,
        "Mounts": None,
        "Linux": None,
        "IpcHost": None,
        "Env": [{"Name": "A", "Value": None, "Settable": None}],
        "User": None,
    }
    cfg = parse_config(data)
    assert cfg.description == ""
    assert cfg.mounts == ()
    assert cfg.linux == Linux()
    assert cfg.ipc_host is False
    assert cfg.env == (EnvVar(name="A"),)
    assert cfg.user is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"Interface": {"Types": [3], "Socket": "p.sock"}},
            'Interface.Types[0]: expected a string like "docker.volumedriver/1.0", got 3',
        ),
        ({"Entrypoint": "/bin/plugin"}, 'Entrypoint: expected a list, got "/bin/plugin"'),
        ({"Description": 1.5}, "Description: expected a string, got 1.5"),
        ({"IpcHost": "yes"}, 'IpcHost: expected true or false, got "yes"'),
        ({"PidHost": 1}, "PidHost: expected true or false, got 1"),
        ({"Network": "host"}, 'Network: expected an object, got "host"'),
        ({"User": {"UID": -1}}, "User.UID: expected an integer from 0 to 4294967295, got -1"),
        (
            {"User": {"GID": 2**32}},
            "User.GID: expected an integer from 0 to 4294967295, got 4294967296",
        ),
        ({"User": {"UID": True}}, "User.UID: expected an integer from 0 to 4294967295, got true"),
        ({"User": {"UID": 1.0}}, "User.UID: expected an integer from 0 to 4294967295, got 1.0"),
        ({"Mounts": [{"Name": "m"}, {"Source": 7}]}, "Mounts[1].Source: expected a string, got 7"),
        ({"Env": [{"Settable": "value"}]}, 'Env[0].Settable: expected a list, got "value"'),
        ({"Linux": {"Devices": [[]]}}, "Linux.Devices[0]: expected an object, got []"),
        ({"Args": {"Value": ["a", None, 3]}}, "Args.Value[2]: expected a string, got 3"),
        ({"rootfs": {"diff_ids": "x"}}, 'rootfs.diff_ids: expected a list, got "x"'),
    ],
)
def test_wrong_types_name_file_and_field(change, message):
    """A value of the wrong type is an InvalidConfigError naming the file and the field path."""
    with pytest.raises(InvalidConfigError) as info:
        parse_config({**MINIMAL, **change}, source="/x/config.json")
    assert str(info.value) == f"invalid plugin config /x/config.json: {message}"
    assert info.value.path == "/x/config.json"
    assert info.value.field == message.split(":")[0]


def test_every_wrong_field_is_reported():
    """All bad fields are listed, in field order; ``field`` is the first."""
    data = {**MINIMAL, "Description": 1, "IpcHost": "x"}
    with pytest.raises(InvalidConfigError) as info:
        parse_config(data)
    assert str(info.value) == (
        "invalid plugin config config.json: Description: expected a string, got 1; "
        'IpcHost: expected true or false, got "x"'
    )
    assert info.value.field == "Description"


def test_long_bad_values_are_shortened():
    """A huge bad value is cut in the message."""
    with pytest.raises(InvalidConfigError) as info:
        parse_config({**MINIMAL, "Description": ["x" * 500]})
    shown = '["' + "x" * 55 + "..."
    assert (
        str(info.value)
        == f"invalid plugin config config.json: Description: expected a string, got {shown}"
    )


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"Interface": {"Socket": "p.sock"}},
            "Interface.Types",
            'at least one type is required, e.g. ["docker.volumedriver/1.0"]',
        ),
        (
            {"Interface": {"Types": ["docker.volumedriver/1.0"]}},
            "Interface.Socket",
            'a socket file name is required, e.g. "p.sock"',
        ),
        (
            {"Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "../p.sock"}},
            "Interface.Socket",
            'must be a plain file name, got "../p.sock"',
        ),
        (
            {"Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": ".."}},
            "Interface.Socket",
            'must be a plain file name, got ".."',
        ),
        (
            {
                "Interface": {
                    "Types": ["docker.volumedriver/1.0"],
                    "Socket": "p.sock",
                    "ProtocolScheme": "grpc",
                }
            },
            "Interface.ProtocolScheme",
            'unsupported protocol scheme "grpc" (use "moby.plugins.http/v1" or leave it empty)',
        ),
        ({"Entrypoint": []}, "Entrypoint", 'an entrypoint is required, e.g. ["/bin/plugin"]'),
        ({"Entrypoint": None}, "Entrypoint", 'an entrypoint is required, e.g. ["/bin/plugin"]'),
        (
            {"Env": [{"Name": "OK"}, {"Name": "A=B"}]},
            "Env[1].Name",
            'must be a non-empty name without "=", got "A=B"',
        ),
        ({"Env": [{"Value": "x"}]}, "Env[0].Name", 'must be a non-empty name without "=", got ""'),
    ],
)
def test_required_parts(change, field, message):
    """Types, a plain socket file name and an entrypoint are required."""
    with pytest.raises(InvalidConfigError) as info:
        parse_config({**MINIMAL, **change}, source="c.json")
    assert str(info.value) == f"invalid plugin config c.json: {field}: {message}"
    assert info.value.field == field


@pytest.mark.parametrize("data", [[], "x", None, 3])
def test_config_must_be_an_object(data):
    """A config.json that is not a JSON object is refused."""
    with pytest.raises(
        InvalidConfigError, match=r"^invalid plugin config c: expected a JSON object, got "
    ):
        parse_config(data, source="c")


def test_user_zero_is_no_user():
    """uid 0 / gid 0 is shown by Docker as "User": {} and parses as no user."""
    assert parse_config({**MINIMAL, "User": {"UID": 0, "GID": 0}}).user is None
    assert dump_config(_config(user=None))["User"] == {}
    assert dump_config(_config(user=User(uid=5)))["User"] == {"UID": 5}
    assert dump_config(_config(user=User(uid=5, gid=7)))["User"] == {"GID": 7, "UID": 5}


# -- capability ids ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker.volumedriver/1.0", CapabilityID("docker", "volumedriver", "1.0")),
        ("docker.authz/1.0.1", CapabilityID("docker", "authz", "1.0.1")),
        ("a.b.c/1.0", CapabilityID("a.b", "c", "1.0")),
        ("volumedriver", CapabilityID("", "volumedriver", "")),
        ("x.y/v/w", CapabilityID("x", "y", "v/w")),
        ("bar.foo/baz", CapabilityID("bar", "foo", "baz")),
    ],
)
def test_capability_parse(text, expected):
    """Version after the first '/', then prefix/capability split at the last '.'."""
    assert CapabilityID.parse(text) == expected


def test_capability_str():
    """str() is Docker's "<prefix>.<capability>/<version>", even with empty parts."""
    assert str(CapabilityID("docker", "volumedriver", "1.0")) == "docker.volumedriver/1.0"
    assert str(CapabilityID("", "volumedriver", "")) == ".volumedriver/"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("docker", "volume.driver", "1.0"),
            'capability "volume.driver" must not contain "." or "/"',
        ),
        (("docker", "a/b", "1.0"), 'capability "a/b" must not contain "." or "/"'),
        (("do/cker", "x", "1.0"), 'capability prefix "do/cker" must not contain "/"'),
    ],
)
def test_capability_that_cannot_round_trip_is_refused(args, message):
    """Docker refuses to marshal these; we refuse to build them."""
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        CapabilityID(*args)


@relaxed
@given(
    prefix=st.text(st.characters(blacklist_characters="/", codec="utf-8"), max_size=12),
    capability=st.text(st.characters(blacklist_characters="./", codec="utf-8"), max_size=12),
    version=st.text(st.characters(codec="utf-8"), max_size=12),
)
def test_capability_round_trip(prefix, capability, version):
    """parse(str(c)) == c for every capability id Docker can marshal."""
    cap = CapabilityID(prefix, capability, version)
    assert CapabilityID.parse(str(cap)) == cap


def test_capability_json_round_trip():
    """A type survives a JSON round trip through the config (Docker's capability_test)."""
    cfg = _config(interface=Interface(types=(CapabilityID("bar", "foo", "baz"),), socket="s"))
    text = json.dumps(dump_config(cfg))
    assert json.loads(text)["Interface"]["Types"] == ["bar.foo/baz"]
    assert parse_config(json.loads(text)) == cfg


def test_capabilities_are_docker_prefixed_and_lower_case():
    """Only docker.* types give capabilities; names are lower-cased and unique."""
    types = tuple(
        CapabilityID.parse(t)
        for t in [
            "docker.volumedriver/1.0",
            "docker.NetworkDriver/1.0",
            "other.ipamdriver/1.0",
            "docker.volumedriver/2.0",
        ]
    )
    cfg = _config(interface=Interface(types=types, socket="s"))
    assert capabilities(cfg) == ("volumedriver", "networkdriver")


# -- dumping -------------------------------------------------------------------


def test_dump_matches_the_engine():
    """dump_config gives exactly what `docker plugin inspect` showed for the same config.json."""
    assert dump_config(parse_config(ENGINE_INPUT)) == ENGINE_CONFIG


def test_dump_keys_are_in_the_engines_order():
    """Keys come in Go's (alphabetical) field order, as the engine prints them."""
    dumped = dump_config(parse_config(ENGINE_INPUT))
    assert list(dumped) == sorted(dumped)
    assert list(dumped["Mounts"][0]) == sorted(dumped["Mounts"][0])


def test_dump_of_minimal_config():
    """Absent lists are null, ProtocolScheme/DockerVersion/rootfs are omitted when empty."""
    assert dump_config(parse_config(MINIMAL)) == {
        "Args": {"Description": "", "Name": "", "Settable": None, "Value": None},
        "Description": "",
        "Documentation": "",
        "Entrypoint": ["/bin/plugin"],
        "Env": None,
        "Interface": {"Socket": "p.sock", "Types": ["docker.volumedriver/1.0"]},
        "IpcHost": False,
        "Linux": {"AllowAllDevices": False, "Capabilities": None, "Devices": None},
        "Mounts": None,
        "Network": {"Type": ""},
        "PidHost": False,
        "PropagatedMount": "",
        "User": {},
        "WorkDir": "",
    }


# Every list the engine shows as [] when config.json says [] (engine 20.10:
# `docker plugin create` + `inspect`), as opposed to null when absent.
EXPLICIT_EMPTY = {
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
    "Entrypoint": ["/bin/plugin"],
    "Linux": {"Capabilities": [], "Devices": [{"Name": "d", "Path": "/dev/null", "Settable": []}]},
    "Mounts": [{"Name": "m", "Source": "/tmp", "Destination": "/m", "Options": [], "Settable": []}],
    "Env": [{"Name": "E", "Value": "1", "Settable": []}],
    "Args": {"Name": "a", "Settable": [], "Value": []},
}


def test_explicit_empty_lists_dump_as_empty_lists():
    """A list given as [] is shown as [], as the engine shows it; absent ones stay null."""
    dumped = dump_config(parse_config(EXPLICIT_EMPTY))
    assert dumped["Args"] == {"Description": "", "Name": "a", "Settable": [], "Value": []}
    assert dumped["Linux"] == {
        "AllowAllDevices": False,
        "Capabilities": [],
        "Devices": [{"Description": "", "Name": "d", "Path": "/dev/null", "Settable": []}],
    }
    assert dumped["Mounts"] == [
        {
            "Description": "",
            "Destination": "/m",
            "Name": "m",
            "Options": [],
            "Settable": [],
            "Source": "/tmp",
            "Type": "",
        }
    ]
    assert dumped["Env"] == [{"Description": "", "Name": "E", "Settable": [], "Value": "1"}]
    assert dump_config(parse_config({**MINIMAL, "Mounts": [], "Env": None}))["Mounts"] == []
    assert dump_config(parse_config({**MINIMAL, "Mounts": [], "Env": None}))["Env"] is None


def test_explicit_and_absent_empty_lists_make_equal_models():
    """[] and null parse to models that compare equal; only the dump tells them apart."""
    absent = parse_config({**MINIMAL, "Args": {"Name": "a"}, "Linux": {}})
    explicit = parse_config(
        {**MINIMAL, "Args": {"Name": "a", "Value": []}, "Linux": {"Devices": []}}
    )
    assert absent == explicit
    assert hash(absent) == hash(explicit)
    assert explicit.args.value == ()
    assert repr(explicit.args) == repr(absent.args)


def test_explicit_empty_lists_survive_dump_parse_and_settings():
    """[] survives parse(dump(cfg)), and the settings' mounts show [] like the engine's."""
    cfg = parse_config(EXPLICIT_EMPTY)
    again = parse_config(dump_config(cfg))
    assert dump_config(again) == dump_config(cfg)
    settings = dump_settings(initial_settings(cfg))
    assert settings["Mounts"][0]["Options"] == []
    assert settings["Mounts"][0]["Settable"] == []
    reloaded = parse_settings(settings)
    assert dump_settings(reloaded) == settings


def test_dumps_do_not_depend_on_what_was_converted_first():
    """A fresh interpreter dumping Settings before any parse gives the usual null/[] result."""
    code = (
        "import json\n"
        "from pluginkit._config import Mount, Settings, dump_settings\n"
        "print(json.dumps(dump_settings(Settings(mounts=(Mount(name='m'),)))))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout
    assert json.loads(out) == {
        "Args": [],
        "Devices": [],
        "Env": [],
        "Mounts": [
            {
                "Description": "",
                "Destination": "",
                "Name": "m",
                "Options": None,
                "Settable": None,
                "Source": None,
                "Type": "",
            }
        ],
    }


def test_engine_fields_round_trip():
    """DockerVersion, ProtocolScheme and rootfs as the engine writes them survive a round trip."""
    data = {
        **ENGINE_CONFIG,
        "DockerVersion": "20.10.24+dfsg1",
        "Interface": {**ENGINE_CONFIG["Interface"], "ProtocolScheme": "moby.plugins.http/v1"},
        "rootfs": {"diff_ids": ["sha256:" + "a" * 64], "type": "layers"},
    }
    cfg = parse_config(data)
    assert cfg.rootfs == Rootfs(type="layers", diff_ids=("sha256:" + "a" * 64,))
    assert cfg.docker_version == "20.10.24+dfsg1"
    assert dump_config(cfg) == data


# -- files -----------------------------------------------------------------------


def test_load_config(tmp_path):
    """load_config reads and parses a config.json file."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SSHFS))
    assert load_config(path) == parse_config(SSHFS)


def test_load_config_names_the_file_in_type_errors(tmp_path):
    """Errors from a file carry its path."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**MINIMAL, "Mounts": {}}))
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid plugin config {path}: Mounts: expected a list, got {{}}"
    assert info.value.path == str(path)
    assert info.value.field == "Mounts"


def test_invalid_json_names_line_and_column(tmp_path):
    """Broken JSON is reported with the file, line and column."""
    path = tmp_path / "config.json"
    path.write_text('{\n  "Entrypoint": ["/a"],\n  "Interface": {,\n}')
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"invalid plugin config {path}: line 3 column 17: "
        "Expecting property name enclosed in double quotes"
    )


def test_missing_file(tmp_path):
    """A missing config.json is Docker's "config not found", with the path."""
    path = tmp_path / "config.json"
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config not found: {path}"
    assert info.value.path == str(path)


def test_nan_is_not_json(tmp_path):
    """NaN and Infinity are refused, as by Go."""
    path = tmp_path / "config.json"
    path.write_text('{"Description": NaN}')
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid plugin config {path}: NaN is not valid JSON"


def test_deeply_nested_json(tmp_path):
    """JSON nested beyond Python's recursion limit is a clear error, not a crash."""
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000)
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid plugin config {path}: JSON nested too deeply"


def test_non_utf8_file(tmp_path):
    """A file that is not UTF-8 text is refused."""
    path = tmp_path / "config.json"
    path.write_bytes(b'{"Description": "\xff"}')
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid plugin config {path}: not UTF-8 text (byte 17)"


# -- settings --------------------------------------------------------------------


def test_initial_settings_match_the_engine():
    """initial_settings is Docker's InitEmptySettings, as the engine shows it."""
    assert dump_settings(initial_settings(parse_config(ENGINE_INPUT))) == ENGINE_SETTINGS


def test_initial_settings_of_minimal_config():
    """Settings lists are [] (never null), like the engine's."""
    settings = initial_settings(parse_config(MINIMAL))
    assert settings == Settings()
    assert dump_settings(settings) == {"Args": [], "Devices": [], "Env": [], "Mounts": []}


def test_settings_round_trip():
    """parse_settings reads what dump_settings writes, keys in any case."""
    settings = initial_settings(parse_config(ENGINE_INPUT))
    dumped = dump_settings(settings)
    assert parse_settings(dumped) == settings
    assert parse_settings({k.lower(): v for k, v in dumped.items()}) == settings


def test_settings_type_error():
    """Bad settings name the source and the field."""
    with pytest.raises(InvalidConfigError) as info:
        parse_settings({"Env": ["A=1", 2]}, source="/s/config.json")
    assert (
        str(info.value)
        == "invalid plugin settings /s/config.json: Env[1]: expected a string, got 2"
    )
    with pytest.raises(InvalidConfigError, match="expected a JSON object, got"):
        parse_settings([], source="s")


def test_merge_env_keeps_order_and_overrides():
    """Install-time KEY=VALUE lines replace in place or append, in order."""
    settings = Settings(env=("A=1", "B=2"))
    merged = merge_env(settings, ["B=3", "C=x=y", "D="])
    assert merged.env == ("A=1", "B=3", "C=x=y", "D=")


@pytest.mark.parametrize("line", ["NOEQUALS", "=value"])
def test_merge_env_refuses_lines_without_name(line):
    """A line without '=' or without a name is an error, not silently dropped."""
    with pytest.raises(InvalidConfigError) as info:
        merge_env(Settings(), [line])
    assert str(info.value) == f'invalid environment variable "{line}": expected NAME=VALUE'


# -- privileges ------------------------------------------------------------------------


def test_privileges_in_dockers_order_with_dockers_texts():
    """All seven kinds come in Docker's order with Docker's descriptions."""
    cfg = _config(
        network=Network(type="host"),
        ipc_host=True,
        pid_host=True,
        mounts=(Mount(name="a", source="/src"), Mount(name="nosrc")),
        linux=Linux(
            capabilities=("CAP_SYS_ADMIN", "CAP_NET_ADMIN"),
            allow_all_devices=True,
            devices=(Device(name="d", path="/dev/fuse"), Device(name="nopath")),
        ),
    )
    assert compute_privileges(cfg) == [
        Privilege("network", "permissions to access a network", ("host",)),
        Privilege("host ipc namespace", "allow access to host ipc namespace", ("true",)),
        Privilege("host pid namespace", "allow access to host pid namespace", ("true",)),
        Privilege("mount", "host path to mount", ("/src",)),
        Privilege("device", "host device to access", ("/dev/fuse",)),
        Privilege("allow-all-devices", "allow 'rwm' access to all devices", ("true",)),
        Privilege(
            "capabilities",
            "list of additional capabilities required",
            ("CAP_SYS_ADMIN", "CAP_NET_ADMIN"),
        ),
    ]


@pytest.mark.parametrize("network", ["", "null", "bridge"])
def test_networks_that_need_no_privilege(network):
    """No network privilege for "", "null" and "bridge"."""
    assert compute_privileges(_config(network=Network(type=network))) == []


def test_privileges_json_round_trip():
    """Privileges dump to Docker's JSON and parse back."""
    privileges = compute_privileges(parse_config(SSHFS))
    dumped = dump_privileges(privileges)
    assert dumped[0] == {
        "Description": "permissions to access a network",
        "Name": "network",
        "Value": ["host"],
    }
    assert parse_privileges(json.loads(json.dumps(dumped))) == privileges


def test_parse_privileges_errors():
    """Bad privilege lists name the entry."""
    with pytest.raises(InvalidConfigError) as info:
        parse_privileges([{"Name": "network", "Value": "host"}], source="grant")
    assert str(info.value) == 'invalid privileges grant: [0].Value: expected a list, got "host"'
    with pytest.raises(InvalidConfigError) as info:
        parse_privileges({}, source="grant")
    assert str(info.value) == "invalid privileges grant: expected a list, got {}"


@pytest.mark.parametrize(
    ("function", "data", "message"),
    [
        (
            parse_config,
            {**MINIMAL, "mounts": [{"name": "m"}, {"SOURCE": 7}]},
            "invalid plugin config f: Mounts[1].Source: expected a string, got 7",
        ),
        (
            parse_config,
            {**MINIMAL, "interface": {"types": ["docker.volumedriver/1.0", 3]}},
            'invalid plugin config f: Interface.Types[1]: expected a string like "docker.'
            'volumedriver/1.0", got 3',
        ),
        (
            parse_config,
            {**MINIMAL, "Linux": {"Devices": [{"Path": 1}, {"Settable": "path"}]}},
            "invalid plugin config f: Linux.Devices[0].Path: expected a string, got 1; "
            'Linux.Devices[1].Settable: expected a list, got "path"',
        ),
        (
            parse_settings,
            {"Mounts": [{"Source": []}], "Args": "x"},
            "invalid plugin settings f: Mounts[0].Source: expected a string, got []; "
            'Args: expected a list, got "x"',
        ),
    ],
)
def test_errors_name_every_bad_field_at_any_depth(function, data, message):
    """Nested and repeated problems are all named, with their paths, in the order of the fields."""
    with pytest.raises(InvalidConfigError) as info:
        function(data, source="f")
    assert str(info.value) == message


# -- properties ----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=8)
_texts = st.lists(_text, max_size=3).map(tuple)
_opt_text = st.none() | _text
_cap = st.builds(
    CapabilityID,
    prefix=st.text(st.characters(blacklist_characters="/", codec="utf-8"), min_size=1, max_size=8),
    capability=st.text(
        st.characters(blacklist_characters="./", codec="utf-8"), min_size=1, max_size=8
    ),
    version=_text,
)
_word = st.text(st.characters(codec="utf-8", blacklist_characters="\0"), max_size=8)
_socket = st.text(
    st.characters(codec="utf-8", blacklist_characters="/\0"), min_size=1, max_size=8
).filter(lambda s: s not in (".", ".."))
_mount = st.builds(
    Mount,
    name=_text,
    description=_text,
    settable=_texts,
    source=_opt_text,
    destination=_text,
    type=_text,
    options=_texts,
)
_device = st.builds(Device, name=_text, description=_text, settable=_texts, path=_opt_text)
_uint32 = st.integers(min_value=0, max_value=2**32 - 1)
CONFIGS = st.builds(
    PluginConfig,
    description=_text,
    documentation=_text,
    interface=st.builds(
        Interface,
        types=st.lists(_cap, min_size=1, max_size=3).map(tuple),
        socket=_socket,
        protocol_scheme=st.sampled_from(["", "moby.plugins.http/v1"]),
    ),
    entrypoint=st.tuples(_word.filter(bool), st.lists(_word, max_size=2)).map(
        lambda t: (t[0], *t[1])
    ),
    workdir=_text,
    user=st.none() | st.builds(User, uid=_uint32, gid=_uint32).filter(lambda u: u != User()),
    network=st.builds(Network, type=_text),
    linux=st.builds(
        Linux,
        capabilities=_texts,
        allow_all_devices=st.booleans(),
        devices=st.lists(_device, max_size=2).map(tuple),
    ),
    propagated_mount=_text,
    ipc_host=st.booleans(),
    pid_host=st.booleans(),
    mounts=st.lists(_mount, max_size=2).map(tuple),
    env=st.lists(
        st.builds(
            EnvVar,
            name=st.text(
                st.characters(codec="utf-8", blacklist_characters="=\0"), min_size=1, max_size=8
            ),
            description=_text,
            settable=_texts,
            value=_opt_text,
        ),
        max_size=2,
    ).map(tuple),
    args=st.builds(Args, name=_text, description=_text, settable=_texts, value=_texts),
    rootfs=st.none() | st.builds(Rootfs, type=_text, diff_ids=_texts),
    docker_version=_text,
)


@relaxed
@given(CONFIGS)
def test_config_round_trip(cfg):
    """parse_config(dump_config(c)) == c, also through JSON text."""
    assert parse_config(dump_config(cfg)) == cfg
    assert parse_config(json.loads(json.dumps(dump_config(cfg)))) == cfg


def _recase(data, flips):
    if isinstance(data, dict):
        return {
            (key.swapcase() if next(flips) else key): _recase(value, flips)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_recase(item, flips) for item in data]
    return data


@relaxed
@given(CONFIGS, st.lists(st.booleans(), min_size=1))
def test_key_case_never_matters(cfg, pattern):
    """Any mix of key cases parses to the same config."""
    flips = iter(pattern * 1000)
    assert parse_config(_recase(dump_config(cfg), flips)) == cfg


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@relaxed
@given(CONFIGS, st.data())
def test_junk_anywhere_gives_invalid_config_error(cfg, data):
    """Any JSON in place of any value either parses or is an InvalidConfigError."""
    dumped = dump_config(cfg)
    node = dumped
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(_json)
        break
    outcome: object
    try:
        outcome = parse_config(dumped)
    except InvalidConfigError as exc:
        outcome = str(exc)
    if isinstance(outcome, str):
        assert outcome.startswith("invalid plugin config config.json: ")
    else:
        assert isinstance(outcome, PluginConfig)


@relaxed
@given(CONFIGS)
def test_settings_round_trip_property(cfg):
    """parse_settings(dump_settings(s)) == s for the initial settings of any config."""
    settings = initial_settings(cfg)
    assert parse_settings(json.loads(json.dumps(dump_settings(settings)))) == settings
