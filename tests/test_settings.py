import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluginkit import Device, EnvVar, InvalidConfigError, Mount, Privilege, Settings
from pluginkit._config import (
    Args,
    Interface,
    Linux,
    PluginConfig,
    _set_env,
    _Settable,
    apply_set,
    capabilities,
    initial_settings,
    parse_config,
    privileges_equal,
)

# Timing is not under test, and the machines running the suite are shared.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIG = PluginConfig(
    interface=Interface(types=(), socket="p.sock"),
    entrypoint=("/bin/plugin",),
    env=(
        EnvVar(name="DEBUG", settable=("value",), value="0"),
        EnvVar(name="EMPTY", settable=("value",)),
        EnvVar(name="FIXED", value="1"),
        EnvVar(name="MULTI", settable=("value", "other")),
        EnvVar(name="ODD", settable=("source",)),
        EnvVar(name="a.b", settable=("value",)),
        EnvVar(name="shared", settable=("value",)),
    ),
    mounts=(
        Mount(name="state", settable=("source",), source="/var/lib/x", destination="/mnt/state"),
        Mount(name="nosrc", settable=("source",), destination="/mnt/nosrc"),
        Mount(name="fixed", source="/etc", destination="/etc"),
        Mount(name="shared", settable=("source",), source="/m"),
    ),
    linux=Linux(
        devices=(
            Device(name="fuse", settable=("path",), path="/dev/fuse"),
            Device(name="nopath", settable=("path",)),
        )
    ),
    args=Args(name="args", settable=("value",), value=("--a", "1")),
)
SETTINGS = initial_settings(CONFIG)


def _set(*args):
    return apply_set(CONFIG, SETTINGS, list(args))


# -- Docker's TestNewSettable --------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "name", "field", "value"),
    [
        ("name=value", "name", "", "value"),
        ("name", "name", "", ""),
        ("name.field=value", "name", "field", "value"),
        ("name.field", "name", "field", ""),
        ("a.b.c=1", "a.b", "c", "1"),
        ("name=a=b", "name", "", "a=b"),
        (".hidden=1", ".hidden", "", "1"),
        ("name.=1", "name", "", "1"),
    ],
)
def test_new_settable(arg, name, field, value):
    """<name>[.<field>][=<value>]: field after the last '.' (index > 0), value after '='."""
    assert _Settable.parse(arg) == _Settable(name=name, field=field, value=value)


@pytest.mark.parametrize("arg", ["=value", "="])
def test_new_settable_invalid_format(arg):
    """A leading '=' is Docker's invalid format error."""
    with pytest.raises(InvalidConfigError) as info:
        _Settable.parse(arg)
    assert str(info.value) == "invalid format, must be <name>[.<field>][=<value>]"


# -- Docker's TestIsSettable ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "settable", "expected"),
    [
        ("", (), '"x" is not settable'),
        ("value", (), '"x.value" is not settable'),
        ("", ("value",), "value"),
        ("value", ("value",), "value"),
        ("foo", ("value",), '"x.foo" is not settable'),
        ("foo", ("foo",), '"x.foo" is not settable'),
        ("", ("value1", "value2"), "multiple fields are settable, one must be specified"),
    ],
)
def test_is_settable(field, settable, expected):
    """The field must be allowed and settable; a lone Settable entry is the default."""
    s = _Settable(name="x", field=field, value="")
    if expected == "value":
        assert s.resolve_field(("value",), settable) == "value"
        return
    with pytest.raises(InvalidConfigError) as info:
        s.resolve_field(("value",), settable)
    assert str(info.value) == expected
    assert info.value.field == "x"


# -- Docker's TestUpdateSettingsEnv ----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ((), ("DEBUG=1",)),
        (("DEBUG=0",), ("DEBUG=1",)),
        (("FOO=0",), ("FOO=0", "DEBUG=1")),
        (("FOO=0", "DEBUG=0"), ("FOO=0", "DEBUG=1")),
        (("FOO=0", "DEBUG=0", "BAR=1"), ("FOO=0", "DEBUG=1", "BAR=1")),
    ],
)
def test_update_settings_env(env, expected):
    """An existing NAME= entry is replaced in place, else the entry is appended."""
    assert _set_env(env, "DEBUG", "1") == expected


# -- apply_set ---------------------------------------------------------------------------------


def test_set_env():
    """Setting an env var changes Settings.Env only."""
    cfg, settings = _set("DEBUG=1")
    assert settings.env == ("DEBUG=1", "FIXED=1")
    assert cfg == CONFIG


def test_set_env_without_default_appends():
    """An env var without a default value is appended to Settings.Env."""
    _, settings = _set("EMPTY=x")
    assert settings.env == ("DEBUG=0", "FIXED=1", "EMPTY=x")


def test_set_env_with_explicit_field():
    """NAME.value=... names the field explicitly."""
    _, settings = _set("DEBUG.value=2")
    assert settings.env == ("DEBUG=2", "FIXED=1")


def test_set_without_value_sets_empty():
    """No '=' means the empty value."""
    _, settings = _set("DEBUG")
    assert settings.env == ("DEBUG=", "FIXED=1")


def test_set_env_with_dot_in_its_name_needs_the_field():
    """An env var named a.b is only reachable as a.b.value (a.b=... means name a, field b)."""
    with pytest.raises(InvalidConfigError) as info:
        _set("a.b=1")
    assert str(info.value) == 'setting "a" not found in the plugin configuration'
    _, settings = _set("a.b.value=1")
    assert settings.env[-1] == "a.b=1"


def test_set_mount_source_changes_config_and_settings():
    """A mount source changes in Config.Mounts and Settings.Mounts, as the engine shows."""
    cfg, settings = _set("state.source=/srv")
    assert cfg.mounts[0].source == "/srv"
    assert settings.mounts[0].source == "/srv"
    assert cfg.mounts[1:] == CONFIG.mounts[1:]
    assert settings.env == SETTINGS.env


def test_set_mount_default_field():
    """With one settable field, the field may be left out."""
    cfg, settings = _set("state=/srv")
    assert cfg.mounts[0].source == settings.mounts[0].source == "/srv"


def test_set_device_path_changes_config_and_settings():
    """A device path changes in Config.Linux.Devices and Settings.Devices."""
    cfg, settings = _set("fuse.path=/dev/other")
    assert cfg.linux.devices[0].path == "/dev/other"
    assert settings.devices[0].path == "/dev/other"


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("args=-v --x", ("-v", "--x")),
        ("args=a  b", ("a", "", "b")),
        ("args", ("",)),
        ("args.value=one", ("one",)),
    ],
)
def test_set_args_splits_on_single_spaces(arg, expected):
    """Args are split on every single space, like Go's strings.Split."""
    _, settings = _set(arg)
    assert settings.args == expected


def test_env_wins_over_mount_of_the_same_name():
    """Resolution order is env, mounts, devices, args."""
    cfg, settings = _set("shared=x")
    assert settings.env[-1] == "shared=x"
    assert cfg.mounts[3].source == "/m"


def test_batch_applies_in_order():
    """Later entries of a batch see earlier ones."""
    cfg, settings = _set("DEBUG=1", "DEBUG=2", "state=/a", "state=/b")
    assert settings.env == ("DEBUG=2", "FIXED=1")
    assert cfg.mounts[0].source == "/b"


@pytest.mark.parametrize(
    ("args", "message", "field"),
    [
        (["=x"], "invalid format, must be <name>[.<field>][=<value>]", "=x"),
        (["NOPE=1"], 'setting "NOPE" not found in the plugin configuration', "NOPE"),
        (["FIXED=2"], '"FIXED" is not settable', "FIXED"),
        (["DEBUG.other=2"], '"DEBUG.other" is not settable', "DEBUG"),
        (["ODD=2"], '"ODD.source" is not settable', "ODD"),
        (["MULTI=2"], "multiple fields are settable, one must be specified", "MULTI"),
        (["fixed.source=/x"], '"fixed.source" is not settable', "fixed"),
        (["nosrc=/x"], "plugin config has no mount source", "nosrc"),
        (["nopath=/dev/x"], "plugin config has no device path", "nopath"),
        (["state.path=/x"], '"state.path" is not settable', "state"),
        (["fuse.source=/x"], '"fuse.source" is not settable', "fuse"),
    ],
)
def test_set_errors_have_dockers_texts(args, message, field):
    """Every set error carries Docker's exact text; ``field`` names the setting."""
    with pytest.raises(InvalidConfigError) as info:
        apply_set(CONFIG, SETTINGS, args)
    assert str(info.value) == message
    assert info.value.field == field


def test_failed_batch_applies_nothing():
    """A failing entry leaves the whole batch unapplied (Docker keeps the earlier ones)."""
    before = (CONFIG, SETTINGS)
    with pytest.raises(InvalidConfigError, match='setting "NOPE" not found'):
        apply_set(CONFIG, SETTINGS, ["DEBUG=5", "state=/x", "NOPE=1"])
    assert before == (CONFIG, SETTINGS)


def test_format_error_is_found_before_anything_else():
    """Every argument is parsed before any is resolved, as in Docker."""
    with pytest.raises(InvalidConfigError, match=r"^invalid format"):
        apply_set(CONFIG, SETTINGS, ["NOPE=1", "=x"])


def test_set_args_must_not_be_a_string():
    """A bare string (not a list of arguments) is a programming error."""
    with pytest.raises(TypeError, match="args must be a sequence of strings"):
        apply_set(CONFIG, SETTINGS, "DEBUG=1")


def test_settings_mount_found_by_name():
    """Settings that list mounts in another order are still updated by name."""
    settings = Settings(mounts=(CONFIG.mounts[3], CONFIG.mounts[0]))
    cfg, new = apply_set(CONFIG, settings, ["state=/q"])
    assert new.mounts == (CONFIG.mounts[3], Mount(**{**_fields(CONFIG.mounts[0]), "source": "/q"}))
    assert cfg.mounts[0].source == "/q"


def _fields(mount):
    return {
        "name": mount.name,
        "description": mount.description,
        "settable": mount.settable,
        "source": mount.source,
        "destination": mount.destination,
        "type": mount.type,
        "options": mount.options,
    }


_arg = st.text(st.characters(codec="utf-8"), max_size=20) | st.builds(
    lambda name, field, value: name + field + value,
    st.sampled_from(["DEBUG", "state", "fuse", "args", "EMPTY", "nosrc", "a.b", "x"]),
    st.sampled_from(["", ".value", ".source", ".path", ".x"]),
    st.sampled_from(["", "=", "=v", "=a b", "=/p=q"]),
)


@relaxed
@given(st.lists(_arg, max_size=5))
def test_any_set_arguments_apply_or_raise_invalid_config(args):
    """Any argument list either applies or raises InvalidConfigError, never anything else."""
    field: str | None = "unset"
    try:
        cfg, settings = apply_set(CONFIG, SETTINGS, args)
    except InvalidConfigError as exc:
        field = exc.field
    else:
        assert isinstance(cfg, PluginConfig)
        assert isinstance(settings, Settings)
    assert field is not None


@relaxed
@given(st.lists(_arg, max_size=6))
def test_config_and_settings_mounts_stay_equal(args):
    """After any successful batch, Settings.Mounts/Devices equal Config.Mounts/Linux.Devices."""
    try:
        cfg, settings = apply_set(CONFIG, SETTINGS, args)
    except InvalidConfigError:
        cfg, settings = CONFIG, SETTINGS
    assert settings.mounts == cfg.mounts
    assert settings.devices == cfg.linux.devices


@relaxed
@given(st.text(st.characters(codec="utf-8")))
def test_any_env_value_is_set_verbatim(value):
    """Whatever the value (with '=', '.', spaces), NAME=value is stored verbatim."""
    _, settings = _set(f"DEBUG={value}")
    assert settings.env[0] == f"DEBUG={value}"


@relaxed
@given(st.lists(st.text(st.characters(codec="utf-8", blacklist_characters=" ")), min_size=1))
def test_args_value_split_round_trip(words):
    """args=<words joined by spaces> gives back the words."""
    _, settings = _set("args=" + " ".join(words))
    assert settings.args == tuple(words)


# -- Docker's TestValidatePrivileges ----------------------------------------------------------

P = Privilege


@pytest.mark.parametrize(
    ("required", "granted", "expected"),
    [
        # different length
        ([P("a", "", ("1",))], [P("a", "", ("1",)), P("b", "", ("2",))], False),
        # different value
        ([P("a", "", ("1",)), P("b", "", ("2",))], [P("a", "", ("1",)), P("b", "", ("3",))], False),
        # same set, other order, values shuffled, descriptions ignored
        (
            [P("mount", "d", ("/a",)), P("capabilities", "", ("X", "Y")), P("mount", "", ("/b",))],
            [
                P("capabilities", "other", ("Y", "X")),
                P("mount", "", ("/b",)),
                P("mount", "x", ("/a",)),
            ],
            True,
        ),
        # single element, same
        ([P("allow-all-devices", "", ("true",))], [P("allow-all-devices", "", ("true",))], True),
        # single element, different value: the off-by-one accepted this
        ([P("allow-all-devices", "", ("true",))], [P("allow-all-devices", "", ("false",))], False),
        # the first sorted element differs: the off-by-one accepted this
        (
            [P("allow-all-devices", "", ("true",)), P("network", "", ("host",))],
            [P("aaa", "", ("true",)), P("network", "", ("host",))],
            False,
        ),
        # empty vs empty
        ([], [], True),
        # same names, values moved between entries
        (
            [P("mount", "", ("/a", "/b")), P("mount", "", ("/c",))],
            [P("mount", "", ("/a",)), P("mount", "", ("/b", "/c"))],
            False,
        ),
    ],
)
def test_validate_privileges(required, granted, expected):
    """Every entry is compared, order-insensitively, descriptions ignored."""
    assert privileges_equal(required, granted) is expected
    assert privileges_equal(granted, required) is expected


@relaxed
@given(
    st.lists(
        st.builds(
            P,
            name=st.text(max_size=5),
            description=st.text(max_size=5),
            value=st.lists(st.text(max_size=3), max_size=3).map(tuple),
        ),
        max_size=5,
    ),
    st.randoms(),
)
def test_privileges_equal_ignores_order(privileges, rnd):
    """Any permutation of the list and of each value list is equal; dropping one is not."""
    shuffled = [P(p.name, "", tuple(rnd.sample(p.value, len(p.value)))) for p in privileges]
    rnd.shuffle(shuffled)
    assert privileges_equal(privileges, shuffled)
    if privileges:
        assert not privileges_equal(privileges, shuffled[1:])


def test_capability_types_come_from_the_config():
    """capabilities() reads Interface.Types of a parsed config."""
    cfg = parse_config(
        {
            "Interface": {"Types": ["docker.volumedriver/1.0", "docker.authz/1.0"], "Socket": "s"},
            "Entrypoint": ["/p"],
        }
    )
    assert capabilities(cfg) == ("volumedriver", "authz")
