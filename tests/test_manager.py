"""Manager operations and Docker's error texts."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import Env, Legacy, write_plugin_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluginkit import (
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    InvalidReferenceError,
    Manager,
    Plugin,
    PluginDisabledError,
    PluginEnabledError,
    PluginError,
    PluginExistsError,
    PluginInUseError,
    Privilege,
    PrivilegesNotGrantedError,
)


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    yield e
    e.close()


@pytest.fixture
def m(env: Env) -> Manager:
    manager: Manager = env.manager()
    return manager


PRIVILEGED: dict[str, Any] = {
    "Network": {"Type": "host"},
    "IpcHost": True,
    "PidHost": True,
    "Mounts": [
        {
            "Name": "data",
            "Description": "",
            "Settable": ["source"],
            "Source": "/var/data",
            "Destination": "/data",
            "Type": "bind",
            "Options": ["rbind"],
        }
    ],
    "Linux": {
        "Capabilities": ["CAP_SYS_ADMIN"],
        "AllowAllDevices": True,
        "Devices": [{"Name": "fuse", "Description": "", "Settable": ["path"], "Path": "/dev/fuse"}],
    },
}


# -- create -------------------------------------------------------------------


def test_create_installs_a_disabled_plugin_with_a_tagged_name(env: Env, m: Manager) -> None:
    """create() stores the plugin as name:latest, disabled, with a 64-hex id and capabilities."""
    p = m.create("foo", env.plugin_dir())
    assert p.name == "foo:latest"
    assert re.fullmatch(r"[0-9a-f]{64}", p.id or "")
    assert p.enabled is False
    assert p.is_legacy is False
    assert p.capabilities == ("volumedriver",)
    assert p.plugin_reference == "foo:latest"
    assert p.addr == f"unix://{env.run_root}/{p.id}/p.sock"
    assert env.actions() == ["create"]


def test_create_twice_gives_docker_already_exists(env: Env, m: Manager) -> None:
    """A second create of the same name fails with Docker's text and the list keeps one."""
    m.create("foo", env.plugin_dir())
    with pytest.raises(PluginExistsError, match=r"^plugin foo:latest already exists$"):
        m.create("foo:latest", env.plugin_dir())
    assert [p.name for p in m.list()] == ["foo:latest"]


def test_a_taken_name_is_refused_before_the_source_is_read(env: Env, m: Manager) -> None:
    """As in Docker, "already exists" comes first: before config, archive or privilege checks."""
    m.create("foo", env.plugin_dir())
    empty = env.tmp / "empty"
    empty.mkdir()
    with pytest.raises(PluginExistsError, match=r"^plugin foo:latest already exists$"):
        m.create("foo", empty)
    junk = env.tmp / "junk.tar"
    junk.write_text("not an archive")
    with pytest.raises(PluginExistsError, match=r"^plugin foo:latest already exists$"):
        m.install(junk, name="foo")
    privileged = env.plugin_dir("privileged", Network={"Type": "host"})
    with pytest.raises(PluginExistsError, match=r"^plugin foo:latest already exists$"):
        m.install(privileged, name="foo")
    assert [p.name for p in m.list()] == ["foo:latest"]


def test_create_rejects_a_bad_name(env: Env, m: Manager) -> None:
    """Upper-case names do not parse and nothing is installed."""
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        m.create("Foo", env.plugin_dir())
    assert m.list() == []


def test_create_without_config_json(env: Env, m: Manager) -> None:
    """A context without config.json fails with Docker's "config not found"."""
    ctx = env.tmp / "empty"
    (ctx / "rootfs").mkdir(parents=True)
    with pytest.raises(InvalidConfigError, match=r"^config not found: .*config\.json$") as info:
        m.create("foo", ctx)
    assert str(info.value) == f"config not found: {ctx / 'config.json'}"
    assert info.value.path == str(ctx / "config.json")
    assert m.list() == []


def test_privileges_and_install_without_config_json(env: Env, m: Manager) -> None:
    """privileges() and install() report a missing config.json with the same text as create()."""
    ctx = env.tmp / "empty"
    (ctx / "rootfs").mkdir(parents=True)
    expected = f"config not found: {ctx / 'config.json'}"
    with pytest.raises(InvalidConfigError) as info:
        m.privileges(ctx)
    assert str(info.value) == expected
    with pytest.raises(InvalidConfigError) as info:
        m.install(ctx, name="foo", grant=True)
    assert str(info.value) == expected
    assert m.list() == []


def test_create_with_a_config_json_directory(env: Env, m: Manager) -> None:
    """A config.json that is a directory is unreadable, not "not found"."""
    ctx = env.tmp / "odd"
    (ctx / "rootfs").mkdir(parents=True)
    (ctx / "config.json").mkdir()
    with pytest.raises(InvalidConfigError) as info:
        m.create("foo", ctx)
    assert str(info.value) == (
        f"invalid plugin config {ctx / 'config.json'}: cannot read it: Is a directory"
    )


def test_create_without_rootfs(env: Env, m: Manager) -> None:
    """A context without rootfs/ fails with Docker's "no rootfs found"."""
    ctx = env.plugin_dir()
    (ctx / "rootfs" / "plugin").unlink()
    (ctx / "rootfs").rmdir()
    with pytest.raises(InvalidConfigError, match=r"^no rootfs found in "):
        m.create("foo", ctx)


def test_create_with_a_bad_config_names_the_field(env: Env, m: Manager) -> None:
    """A wrong type in config.json is rejected, naming the field; nothing is installed."""
    ctx = env.plugin_dir(IpcHost="yes")
    with pytest.raises(InvalidConfigError, match="IpcHost"):
        m.create("foo", ctx)
    assert m.list() == []
    assert list((env.root / "tmp").iterdir()) == []


def test_create_copies_the_rootfs_with_links(env: Env, m: Manager) -> None:
    """The rootfs is copied into the root; symlinks stay symlinks."""
    ctx = env.plugin_dir()
    (ctx / "rootfs" / "bin").mkdir()
    (ctx / "rootfs" / "bin" / "sh").symlink_to("/bin/busybox")
    p = m.create("foo", ctx)
    rootfs = env.root / "plugins" / str(p.id) / "rootfs"
    assert (rootfs / "plugin").read_text() == "#!/bin/sh\n"
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"


def test_create_refuses_device_files_in_the_rootfs(env: Env, m: Manager) -> None:
    """A fifo in the rootfs is refused rather than read."""
    ctx = env.plugin_dir()
    os.mkfifo(ctx / "rootfs" / "fifo")
    with pytest.raises(InvalidConfigError, match="not a file, directory or symlink"):
        m.create("foo", ctx)
    assert m.list() == []


def test_a_socket_path_too_long_is_refused_at_create(env: Env, m: Manager) -> None:
    """A socket name that makes <run_root>/<id>/<socket> exceed 107 bytes fails clearly."""
    ctx = env.plugin_dir(socket_name="s" * 60 + ".sock")
    with pytest.raises(InvalidConfigError, match="longer than the 107 bytes unix sockets allow"):
        m.create("foo", ctx)


def test_a_run_root_too_long_is_refused(env: Env) -> None:
    """A run_root that leaves no room for <64-hex id>/<socket> is refused at once."""
    with pytest.raises(ValueError, match=r"run_root .* is too long"):
        env.manager(run_root=env.tmp / ("r" * 60))


# -- get / list / inspect -----------------------------------------------------


def test_get_by_name_tag_id_and_prefix(env: Env, m: Manager) -> None:
    """get() resolves a name, name:tag, the full id and a unique id prefix."""
    p = m.create("foo", env.plugin_dir())
    assert p.id is not None
    assert m.get("foo") is p
    assert m.get("foo:latest") is p
    assert m.get("docker.io/library/foo") is p
    assert m.get(p.id) is p
    assert m.get(p.id[:5]) is p


def test_lookups_resolve_a_hex_looking_name_like_get(env: Env, m: Manager) -> None:
    """A 64-hex string is only ever an id and a prefix matches ids only, in lookups as in get()."""
    hex_name = "ab" * 32
    p = m.create(f"{hex_name}:latest", env.plugin_dir())
    m.enable(f"{hex_name}:latest")
    assert p.id is not None
    assert not p.id.startswith(hex_name[:8])
    assert m.lookup_with_capability(f"{hex_name}:latest", "volumedriver") is p
    for ref in (hex_name, hex_name[:8]):
        with pytest.raises(ErrNotFound, match=rf'^plugin "{ref}" not found$'):
            m.get(ref)
        with pytest.raises(ErrNotFound, match=rf'^plugin "{ref}" not found$'):
            m.lookup_with_capability(ref, "volumedriver")
        with pytest.raises(ErrNotFound, match=rf'^plugin "{ref}" not found$'):
            m.use(ref, "volumedriver").__enter__()
    assert p.refcount == 0
    assert m.lookup_with_capability(p.id[:6], "volumedriver") is p


def test_get_unknown_gives_docker_not_found(m: Manager) -> None:
    """An unknown name fails with plugin "NAME" not found."""
    with pytest.raises(ErrNotFound, match=r'^plugin "nope" not found$'):
        m.get("nope")
    with pytest.raises(ErrNotFound, match=r'^plugin "Bad Name" not found$'):
        m.get("Bad Name")


def test_an_ambiguous_id_prefix_is_an_error(env: Env, m: Manager) -> None:
    """Two ids sharing the prefix give Docker's "multiple plugins found"."""
    ids = [m.create(f"p{i}", env.plugin_dir()).id for i in range(17)]
    first = [i[0] for i in ids if i]
    shared = next(c for c in first if first.count(c) > 1)
    with pytest.raises(InvalidReferenceError, match=rf'^multiple plugins found for "{shared}"$'):
        m.get(shared)


def test_prefix_lookup_fails_after_removal(env: Env, m: Manager) -> None:
    """Once removed, the id prefix no longer resolves."""
    p = m.create("foo", env.plugin_dir())
    assert p.id is not None
    m.remove("foo")
    with pytest.raises(ErrNotFound):
        m.get(p.id[:5])


def test_list_filters_by_enabled_and_capability(env: Env, m: Manager) -> None:
    """list() filters on enabled and on any of the plugin's types, sorted by name."""
    m.create("vol", env.plugin_dir("a"))
    m.create("both", env.plugin_dir("b", types=("docker.volumedriver/1.0", "docker.authz/1.0")))
    m.enable("both")
    assert [p.name for p in m.list()] == ["both:latest", "vol:latest"]
    assert [p.name for p in m.list(enabled=True)] == ["both:latest"]
    assert [p.name for p in m.list(enabled=False)] == ["vol:latest"]
    assert [p.name for p in m.list(capability="authz")] == ["both:latest"]
    assert [p.name for p in m.list(capability="VolumeDriver")] == ["both:latest", "vol:latest"]
    assert m.list(capability="networkdriver") == []


def test_inspect_has_docker_shape(env: Env, m: Manager) -> None:
    """inspect() returns Docker's plugin inspect JSON."""
    ctx = env.plugin_dir(
        Env=[{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}]
    )
    p = m.create("foo", ctx)
    data = m.inspect("foo")
    assert list(data) == ["Id", "Name", "Enabled", "PluginReference", "Settings", "Config"]
    assert data["Id"] == p.id
    assert data["Name"] == "foo:latest"
    assert data["Enabled"] is False
    assert data["PluginReference"] == "foo:latest"
    assert data["Settings"] == {"Args": [], "Devices": [], "Env": ["DEBUG=0"], "Mounts": []}
    assert data["Config"]["Interface"] == {"Socket": "p.sock", "Types": ["docker.volumedriver/1.0"]}
    assert data["Config"]["Entrypoint"] == ["/plugin"]
    json.dumps(data)


# -- enable / disable / remove --------------------------------------------------


def test_enable_twice_gives_already_enabled(env: Env, m: Manager) -> None:
    """Enabling an enabled plugin gives Docker's "plugin already enabled" text."""
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    with pytest.raises(
        PluginEnabledError, match=r"^plugin already enabled: plugin foo:latest is enabled$"
    ):
        m.enable("foo")


def test_disable_twice_gives_already_disabled(env: Env, m: Manager) -> None:
    """Disabling a disabled plugin raises PluginDisabledError with Docker's text."""
    m.create("foo", env.plugin_dir())
    with pytest.raises(
        PluginDisabledError,
        match=r"^plugin is already disabled: plugin foo:latest found but disabled$",
    ) as caught:
        m.disable("foo")
    assert caught.value.name == "foo:latest"
    assert not isinstance(caught.value, LookupError)


def test_enable_and_disable_start_and_stop_the_plugin(env: Env, m: Manager) -> None:
    """Enable starts the plugin on the runtime and disable stops it; flags follow."""
    p = m.create("foo", env.plugin_dir())
    assert p.id is not None
    m.enable("foo")
    assert p.enabled is True
    assert env.runtime.is_running(p.id)
    m.disable("foo")
    assert p.enabled is False
    assert not env.runtime.is_running(p.id)
    assert env.actions() == ["create", "enable", "disable"]


def test_enable_rejects_a_non_positive_timeout(env: Env, m: Manager) -> None:
    """timeout must be > 0 (Docker's missing-timeout 400 does not exist here)."""
    m.create("foo", env.plugin_dir())
    with pytest.raises(ValueError, match="timeout must be > 0"):
        m.enable("foo", timeout=0)


@pytest.mark.parametrize("timeout", ["30", None, True])
def test_enable_rejects_a_timeout_that_is_not_a_number(
    env: Env, m: Manager, timeout: object
) -> None:
    """A timeout that is not a number of seconds is a TypeError naming it; nothing starts."""
    m.create("foo", env.plugin_dir())
    with pytest.raises(
        TypeError, match=rf"^timeout must be a number of seconds, not {re.escape(repr(timeout))}$"
    ):
        m.enable("foo", timeout=timeout)  # type: ignore[arg-type]
    assert env.runtime.started_count("foo") == 0
    assert m.get("foo").enabled is False


def test_remove_enabled_needs_force(env: Env, m: Manager) -> None:
    """Removing an enabled plugin gives "plugin X is enabled"; force stops and removes it."""
    p = m.create("foo", env.plugin_dir())
    assert p.id is not None
    m.enable("foo")
    with pytest.raises(PluginEnabledError, match=r"^plugin foo:latest is enabled$"):
        m.remove("foo")
    m.remove("foo", force=True)
    assert not env.runtime.is_running(p.id)
    assert m.list() == []
    assert not (env.root / "plugins" / p.id).exists()
    assert not (env.run_root / p.id).exists()
    assert env.actions() == ["create", "enable", "remove"]


def test_remove_deletes_files_and_frees_the_name(env: Env, m: Manager) -> None:
    """After remove the directory is gone (no -removing left) and the name can be reused."""
    p = m.create("foo", env.plugin_dir())
    m.remove("foo")
    assert sorted(os.listdir(env.root / "plugins")) == []
    q = m.create("foo", env.plugin_dir())
    assert q.id != p.id


# -- use / refcount -------------------------------------------------------------


def test_use_counts_references_and_blocks_disable(env: Env, m: Manager) -> None:
    """A plugin in use refuses disable and remove without force; force keeps the count."""
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    with m.use("foo", "volumedriver") as p:
        assert p.refcount == 1
        with m.use("foo", "volumedriver"):
            assert p.refcount == 2
        assert p.refcount == 1
        with pytest.raises(PluginInUseError, match=r"^plugin foo:latest is in use$"):
            m.disable("foo")
        with pytest.raises(PluginInUseError, match=r"^plugin foo:latest is in use$"):
            m.remove("foo")
        m.disable("foo", force=True)
        assert p.refcount == 1
    assert p.refcount == 0


def test_use_with_a_failed_lookup_takes_no_reference(env: Env, m: Manager) -> None:
    """A capability mismatch takes no reference, disabled or enabled (moby#32609, #35265)."""
    p = m.create("test", env.plugin_dir(types=("docker.whatever/1.0",)))
    with pytest.raises(ErrDisabled), m.use("test", "volumedriver"):
        pass
    assert p.refcount == 0
    m.enable("test")
    with pytest.raises(ErrInadequateCapability), m.use("test", "volumedriver"):
        pass
    assert p.refcount == 0
    m.disable("test")


def test_use_falls_back_to_legacy_without_counting(env: Env) -> None:
    """use() of a name only the legacy registry knows yields its plugin."""
    legacy_plugin = Plugin("old", "unix:///x.sock", capabilities=("VolumeDriver",))
    m = env.manager(legacy=Legacy({"old": legacy_plugin}))
    with m.use("old", "volumedriver") as p:
        assert p is legacy_plugin
    assert legacy_plugin.refcount == 0


# -- set ------------------------------------------------------------------------

SETTABLE: dict[str, Any] = {
    "Env": [{"Name": "DEBUG", "Description": "", "Settable": ["value"], "Value": "0"}],
    "Mounts": [
        {
            "Name": "data",
            "Description": "",
            "Settable": ["source"],
            "Source": "/old",
            "Destination": "/data",
            "Type": "bind",
            "Options": ["rbind"],
        }
    ],
    "Args": {"Name": "args", "Description": "", "Settable": ["value"], "Value": ["-v"]},
}


def test_set_changes_env_mounts_and_args(env: Env, m: Manager) -> None:
    """set() applies Docker's grammar to env, mount sources and args, and emits set."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    m.set("foo", ["DEBUG=1", "data.source=/new", "args=-a -b"])
    data = m.inspect("foo")
    assert data["Settings"]["Env"] == ["DEBUG=1"]
    assert data["Settings"]["Mounts"][0]["Source"] == "/new"
    assert data["Config"]["Mounts"][0]["Source"] == "/new"
    assert data["Settings"]["Args"] == ["-a", "-b"]
    assert env.actions() == ["create", "set"]


def test_set_on_an_enabled_plugin_gives_docker_text(env: Env, m: Manager) -> None:
    """set() on an enabled plugin fails with Docker's text."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    m.enable("foo")
    with pytest.raises(
        PluginEnabledError,
        match=r"^cannot set on an active plugin, disable plugin before setting$",
    ):
        m.set("foo", ["DEBUG=1"])


def test_set_is_all_or_nothing(env: Env, m: Manager) -> None:
    """A bad argument leaves every setting unchanged, in memory and on disk."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    with pytest.raises(
        InvalidConfigError, match=r'^setting "nope" not found in the plugin configuration$'
    ):
        m.set("foo", ["DEBUG=1", "nope=2"])
    assert m.inspect("foo")["Settings"]["Env"] == ["DEBUG=0"]
    env.managers.remove(m)
    m.shutdown()
    assert env.manager().inspect("foo")["Settings"]["Env"] == ["DEBUG=0"]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("=1", "invalid format, must be <name>[.<field>][=<value>]"),
        ("DEBUG.foo=1", '"DEBUG.foo" is not settable'),
    ],
)
def test_set_errors_have_docker_texts(env: Env, m: Manager, arg: str, message: str) -> None:
    """set() reports Docker's texts for bad arguments."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    with pytest.raises(InvalidConfigError, match=f"^{re.escape(message)}$"):
        m.set("foo", [arg])


def test_set_rejects_a_bare_string(env: Env, m: Manager) -> None:
    """Passing "A=B" instead of ["A=B"] is a TypeError, not 3 one-letter settings."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    with pytest.raises(TypeError, match="list of strings"):
        m.set("foo", "DEBUG=1")


def test_set_persists(env: Env, m: Manager) -> None:
    """Settings survive a manager restart."""
    m.create("foo", env.plugin_dir(**SETTABLE))
    m.set("foo", ["DEBUG=1"])
    env.managers.remove(m)
    m.shutdown()
    assert env.manager().inspect("foo")["Settings"]["Env"] == ["DEBUG=1"]


# -- lookups --------------------------------------------------------------------


def test_lookup_returns_an_enabled_plugin_case_insensitively(env: Env, m: Manager) -> None:
    """lookup_with_capability finds an enabled plugin by name, name:tag or id."""
    p = m.create("foo", env.plugin_dir())
    assert p.id is not None
    m.enable("foo")
    assert m.lookup_with_capability("foo", "VolumeDriver") is p
    assert m.lookup_with_capability("foo:latest", "volumedriver") is p
    assert m.lookup_with_capability(p.id, "volumedriver") is p
    assert m.lookup_with_capability(p.id[:6], "volumedriver") is p


def test_lookup_without_the_capability(env: Env, m: Manager) -> None:
    """A managed plugin without the capability gives ErrInadequateCapability's exact text."""
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    with pytest.raises(
        ErrInadequateCapability, match=r'^plugin "foo" found, but not with "authz" capability$'
    ):
        m.lookup_with_capability("foo", "AuthZ")


def test_lookup_of_a_disabled_plugin_does_not_fall_back(env: Env) -> None:
    """A disabled managed plugin gives ErrDisabled even if a legacy one has the name."""
    legacy = Legacy({"foo": Plugin("foo", "unix:///x.sock", capabilities=("volumedriver",))})
    m = env.manager(legacy=legacy)
    m.create("foo", env.plugin_dir())
    with pytest.raises(ErrDisabled, match=r'^plugin "foo" found but disabled$'):
        m.lookup_with_capability("foo", "volumedriver")
    assert legacy.asked == []


def test_lookup_falls_back_to_legacy_when_not_managed(env: Env) -> None:
    """A name no managed plugin has is asked of the legacy registry."""
    old = Plugin("old", "unix:///x.sock", capabilities=("VolumeDriver",))
    legacy = Legacy({"old": old})
    m = env.manager(legacy=legacy)
    assert m.lookup_with_capability("old", "volumedriver") is old
    assert legacy.asked == [("old", "volumedriver")]
    with pytest.raises(ErrNotFound, match=r'^plugin "gone" not found$'):
        m.lookup_with_capability("gone", "volumedriver")


def test_lookup_without_legacy_is_not_found(m: Manager) -> None:
    """legacy=None disables the fallback: unknown names are ErrNotFound."""
    with pytest.raises(ErrNotFound, match=r'^plugin "old" not found$'):
        m.lookup_with_capability("old", "volumedriver")


def test_find_with_capability_lists_running_managed_then_legacy(env: Env) -> None:
    """find_with_capability returns enabled managed plugins with the capability, then legacy."""
    old = Plugin("old", "unix:///x.sock", capabilities=("VolumeDriver",))
    m = env.manager(legacy=Legacy({"old": old}))
    a = m.create("a", env.plugin_dir("a"))
    m.create("b", env.plugin_dir("b"))
    m.create("c", env.plugin_dir("c", types=("docker.authz/1.0",)))
    m.enable("a")
    m.enable("c")
    assert m.find_with_capability("VolumeDriver") == [a, old]


def test_handle_runs_after_enable_and_for_running_plugins(env: Env, m: Manager) -> None:
    """A handler runs for running plugins at once and after each later enable."""
    m.create("a", env.plugin_dir("a"))
    m.create("b", env.plugin_dir("b"))
    m.enable("a")
    seen: list[str] = []
    m.handle("VolumeDriver", lambda name, client: seen.append(name))
    assert seen == ["a:latest"]
    m.enable("b")
    assert seen == ["a:latest", "b:latest"]


def test_handle_is_passed_to_legacy(env: Env) -> None:
    """handle() registers the callback with the legacy registry too."""
    legacy = Legacy()
    m = env.manager(legacy=legacy)

    def callback(name: str, client: Any) -> None:
        pass

    m.handle("VolumeDriver", callback)
    assert legacy.handlers == [("VolumeDriver", callback)]


def test_a_handler_may_call_the_manager(env: Env, m: Manager) -> None:
    """Handlers do not run under the manager's lock: calling back into it works."""
    m.create("a", env.plugin_dir("a"))
    seen: list[int] = []
    m.handle("volumedriver", lambda name, client: seen.append(len(m.list(enabled=True))))
    m.enable("a")
    assert seen == [1]


# -- install and privileges -----------------------------------------------------


def test_privileges_in_docker_order(env: Env, m: Manager) -> None:
    """privileges() lists network, ipc, pid, mount, device, allow-all-devices, capabilities."""
    ctx = env.plugin_dir(**PRIVILEGED)
    names = [p.name for p in m.privileges(ctx)]
    assert names == [
        "network",
        "host ipc namespace",
        "host pid namespace",
        "mount",
        "device",
        "allow-all-devices",
        "capabilities",
    ]
    m.create("foo", ctx)
    assert m.privileges("foo") == m.privileges(ctx)


def test_install_without_grant_is_refused_naming_what_is_missing(env: Env, m: Manager) -> None:
    """install() of a privileged plugin without a grant says which privileges are missing."""
    ctx = env.plugin_dir(Network={"Type": "host"})
    with pytest.raises(
        PrivilegesNotGrantedError, match=r"^incorrect privileges: not granted: network \[host\]$"
    ):
        m.install(ctx, name="foo")
    assert m.list() == []


def test_install_checks_every_privilege(env: Env, m: Manager) -> None:
    """Every entry is checked, the first sorted one too (Docker's off-by-one)."""
    ctx = env.plugin_dir(**PRIVILEGED)
    required = m.privileges(ctx)
    forged = [
        Privilege("allow-all-devices", "", ("false",)) if p.name == "allow-all-devices" else p
        for p in required
    ]
    with pytest.raises(PrivilegesNotGrantedError) as info:
        m.install(ctx, name="foo", grant=forged)
    assert str(info.value) == (
        "incorrect privileges: not granted: allow-all-devices [true]; "
        "granted but not required: allow-all-devices [false]"
    )


def test_install_accepts_the_required_list_in_any_order(env: Env, m: Manager) -> None:
    """A grant equal to the required privileges, shuffled, is accepted."""
    ctx = env.plugin_dir(**PRIVILEGED)
    required = m.privileges(ctx)
    p = m.install(ctx, name="foo", grant=list(reversed(required)))
    assert p.name == "foo:latest"
    assert p.plugin_reference == os.fspath(ctx)
    assert env.actions() == ["install"]


def test_install_with_grant_true_and_callables(env: Env, m: Manager) -> None:
    """grant=True accepts all; a callable sees the list and decides."""
    ctx = env.plugin_dir(**PRIVILEGED)
    asked: list[list[Privilege]] = []
    with pytest.raises(PrivilegesNotGrantedError, match=r"^incorrect privileges: not granted: "):
        m.install(ctx, name="foo", grant=lambda privs: bool(asked.append(privs)))
    assert asked[0][0].name == "network"
    m.install(ctx, name="foo", grant=lambda privs: True)
    m.install(ctx, name="bar", grant=True)
    assert [p.name for p in m.list()] == ["bar:latest", "foo:latest"]


def test_install_refuses_a_grant_of_the_wrong_type(env: Env, m: Manager) -> None:
    """A grant that is a string, or holds something else than Privilege objects, is a TypeError."""
    ctx = env.plugin_dir(Network={"Type": "host"})
    with pytest.raises(
        TypeError,
        match=r"^grant must be True, a list of Privilege or a callable, not 'network'$",
    ):
        m.install(ctx, name="foo", grant="network")  # type: ignore[arg-type]
    docker_json = {"Name": "network", "Description": "", "Value": ["host"]}
    with pytest.raises(
        TypeError,
        match=r"^grant\[0\] must be a Privilege, not \{'Name': 'network', ",
    ):
        m.install(ctx, name="foo", grant=[docker_json])  # type: ignore[list-item]
    assert m.list() == []


def test_install_of_an_unprivileged_plugin_needs_no_grant(env: Env, m: Manager) -> None:
    """A plugin that needs no privileges installs without grant; the name comes from the dir."""
    p = m.install(env.plugin_dir("my-plugin"))
    assert p.name == "my-plugin:latest"


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, **kwargs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755
    for key, value in kwargs.items():
        setattr(info, key, value)
    return info


def test_install_from_a_tar_archive(env: Env, m: Manager) -> None:
    """A .tar.gz of a plugin directory (wrapped in one top directory) installs."""
    ctx = env.plugin_dir("vol")
    archive = env.tmp / "vol.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ctx, arcname="vol")
    p = m.install(archive)
    assert p.name == "vol:latest"
    assert (env.root / "plugins" / str(p.id) / "rootfs" / "plugin").is_file()
    assert list((env.root / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("/etc/evil"), "absolute path"),
        (_member("rootfs/../../evil"), "'..' component"),
        (_member("rootfs/dev/null", tarfile.CHRTYPE), "device files"),
        (_member("rootfs/fifo", tarfile.FIFOTYPE), "device files"),
        (_member("rootfs/up", tarfile.SYMTYPE, linkname="../../.."), "points outside"),
        (_member("abs", tarfile.SYMTYPE, linkname="/etc"), "absolute symlink outside rootfs"),
        (_member("rootfs/h", tarfile.LNKTYPE, linkname="../x"), "hard link"),
    ],
)
def test_install_refuses_unsafe_archives(env: Env, m: Manager, member: Any, why: str) -> None:
    """Absolute paths, '..', escaping links and device files in an archive are refused."""
    ctx = env.plugin_dir()
    config = (ctx / "config.json").read_bytes()
    archive = _tar(
        env.tmp / "bad.tar.gz",
        [
            (_member("config.json"), config),
            (_member("rootfs", tarfile.DIRTYPE), None),
            (member, b"x" if member.isreg() else None),
        ],
    )
    with pytest.raises(InvalidConfigError, match=f"unsafe member .*{re.escape(why)}"):
        m.install(archive, name="bad")
    assert m.list() == []
    assert list((env.root / "tmp").iterdir()) == []
    assert not (env.tmp / "evil").exists()


def test_install_refuses_writing_through_a_symlink(env: Env, m: Manager) -> None:
    """A member written below a symlink that points out of the archive is refused."""
    ctx = env.plugin_dir()
    outside = env.tmp / "outside"
    outside.mkdir()
    archive = _tar(
        env.tmp / "bad.tar.gz",
        [
            (_member("config.json"), (ctx / "config.json").read_bytes()),
            (_member("rootfs/link", tarfile.SYMTYPE, linkname=os.fspath(outside)), None),
            (_member("rootfs/link/pwned"), b"x"),
        ],
    )
    with pytest.raises(InvalidConfigError, match="written through a symlink"):
        m.install(archive, name="bad")
    assert list(outside.iterdir()) == []


def test_install_of_a_missing_source(env: Env, m: Manager) -> None:
    """A source that does not exist is named in the error."""
    with pytest.raises(InvalidConfigError, match=r"^plugin source .*/nope does not exist$"):
        m.install(env.tmp / "nope")


@pytest.mark.parametrize("spelling", [".", "./", "rootfs/.."])
def test_install_from_dot_names_the_directory(
    env: Env, m: Manager, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """install(".") and the like take their default name from the directory they mean."""
    ctx = env.plugin_dir("myvol")
    monkeypatch.chdir(ctx)
    assert m.install(spelling).name == "myvol:latest"


def test_install_from_a_source_whose_name_does_not_parse(env: Env, m: Manager) -> None:
    """A source whose base name is no plugin name says so and how to give one."""
    ctx = env.plugin_dir("My_Vol")
    with pytest.raises(InvalidReferenceError) as info:
        m.install(ctx)
    assert str(info.value) == (
        f"cannot use 'My_Vol' (from {ctx}) as a plugin name: "
        'failed to parse reference "My_Vol": invalid reference format: '
        "repository name must be lowercase; pass name= (--alias on the command line)"
    )
    assert m.list() == []


def test_install_of_a_file_that_is_not_an_archive(env: Env, m: Manager) -> None:
    """A plain file is neither a directory nor an archive."""
    junk = env.tmp / "junk.tar"
    junk.write_text("hello")
    with pytest.raises(InvalidConfigError, match="neither a plugin directory nor a tar archive"):
        m.install(junk)


# -- events and shutdown --------------------------------------------------------


def test_events_carry_id_name_and_time(env: Env, m: Manager) -> None:
    """Each operation emits one event with the plugin's id and name."""
    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    m.disable("foo")
    m.remove("foo")
    assert env.actions() == ["create", "enable", "disable", "remove"]
    assert {(e.id, e.name) for e in env.events} == {(p.id, "foo:latest")}
    assert all(e.time > 0 for e in env.events)


def test_a_failing_event_callback_does_not_break_operations(env: Env) -> None:
    """An exception in on_event is logged, the operation still succeeds."""

    def boom(event: Any) -> None:
        raise RuntimeError("boom")

    m = env.manager(on_event=boom)
    m.create("foo", env.plugin_dir())
    assert [p.name for p in m.list()] == ["foo:latest"]


def test_a_shut_down_manager_refuses_operations(env: Env, m: Manager) -> None:
    """After shutdown() operations fail with a clear error; shutdown is idempotent."""
    m.shutdown()
    m.shutdown()
    with pytest.raises(PluginError, match=r"^the plugin manager is shut down$"):
        m.create("foo", env.plugin_dir())


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.lookup_with_capability("foo", "volumedriver"),
        lambda m: m.lookup_with_capability("old", "volumedriver"),
        lambda m: m.find_with_capability("volumedriver"),
        lambda m: m.use("foo", "volumedriver").__enter__(),
        lambda m: m.use("old", "volumedriver").__enter__(),
        lambda m: m.list(),
        lambda m: m.handle("volumedriver", lambda name, client: None),
        lambda m: m.get("foo"),
        lambda m: m.inspect("foo"),
        lambda m: m.privileges("foo"),
        lambda m: m.enable("foo"),
        lambda m: m.disable("foo"),
        lambda m: m.set("foo", ["DEBUG=1"]),
        lambda m: m.remove("foo", force=True),
    ],
    ids=[
        "lookup",
        "lookup-legacy",
        "find",
        "use",
        "use-legacy",
        "list",
        "handle",
        "get",
        "inspect",
        "privileges",
        "enable",
        "disable",
        "set",
        "remove",
    ],
)
def test_a_shut_down_manager_refuses_lookups_and_queries(env: Env, call: Any) -> None:
    """After shutdown() every query and lookup fails clearly instead of answering stale data."""
    legacy = Legacy({"old": Plugin("old", "unix:///x.sock", capabilities=("VolumeDriver",))})
    m = env.manager(legacy=legacy)
    m.create("foo", env.plugin_dir())
    m.enable("foo")
    m.shutdown()
    with pytest.raises(PluginError, match=r"^the plugin manager is shut down$"):
        call(m)
    assert legacy.asked == []
    assert legacy.handlers == []


def test_context_manager_shuts_down(env: Env) -> None:
    """Leaving a with block stops enabled plugins and releases the root."""
    with env.manager() as m:
        p = m.create("foo", env.plugin_dir())
        m.enable("foo")
    assert p.id is not None
    assert not env.runtime.is_running(p.id)
    env.manager()  # the root is free again


def test_root_and_run_root_are_resolved(env: Env, m: Manager) -> None:
    """manager.root and manager.run_root are the resolved paths."""
    assert m.root == env.root
    assert m.run_root == env.run_root
    assert (env.root / "plugins").is_dir()


def test_plugins_written_by_hand_get_a_standard_config(env: Env, m: Manager) -> None:
    """config.json keys are matched case-insensitively, as Docker does."""
    ctx = write_plugin_dir(env.tmp / "lower")
    data = json.loads((ctx / "config.json").read_text())
    lower = {k.lower(): v for k, v in data.items()}
    (ctx / "config.json").write_text(json.dumps(lower))
    p = m.create("lower", ctx)
    assert p.capabilities == ("volumedriver",)


# -- clients, module lookups, default runtime -------------------------------------


def test_the_plugin_client_talks_to_the_running_plugin(env: Env, m: Manager) -> None:
    """A managed plugin's client calls the plugin on its socket; handlers get that client."""
    env.runtime.set_handlers(
        "foo", {"VolumeDriver.Get": lambda req: {"Volume": {"Name": req["Name"]}}}
    )
    m.create("foo", env.plugin_dir())
    replies: list[Any] = []
    m.handle(
        "volumedriver",
        lambda name, client: replies.append(client.call("VolumeDriver.Get", {"Name": name})),
    )
    m.enable("foo")
    assert replies == [{"Volume": {"Name": "foo:latest"}}]
    p = m.lookup_with_capability("foo", "volumedriver")
    assert p.client.call("VolumeDriver.Get", {"Name": "v"}) == {"Volume": {"Name": "v"}}


def test_module_lookups_use_the_default_manager(env: Env, m: Manager) -> None:
    """pluginkit.lookup_with_capability / find_with_capability go through set_default_manager."""
    import pluginkit

    p = m.create("foo", env.plugin_dir())
    m.enable("foo")
    pluginkit.set_default_manager(m)
    try:
        assert pluginkit.lookup_with_capability("foo", "VolumeDriver") is p
        assert pluginkit.LookupWithCapability("foo", "VolumeDriver") is p
        assert pluginkit.find_with_capability("VolumeDriver") == [p]
    finally:
        pluginkit.set_default_manager(None)
    assert pluginkit.lookup_with_capability("foo", "VolumeDriver", manager=m) is p


def test_a_single_privilege_is_checked(env: Env, m: Manager) -> None:
    """A plugin with one privilege is checked too (Docker never checked those)."""
    ctx = env.plugin_dir(Network={"Type": "host"})
    with pytest.raises(PrivilegesNotGrantedError, match=r"not granted: network \[host\]"):
        m.install(ctx, name="foo", grant=[Privilege("network", "", ("none",))])
    m.install(ctx, name="foo", grant=[Privilege("network", "whatever", ("host",))])


@pytest.mark.docker
def test_the_default_runtime_is_docker(env: Env) -> None:
    """Without runtime=, the manager runs plugins with DockerRuntime."""
    from pluginkit.runtime import DockerRuntime

    m = env.manager(runtime=None)
    assert isinstance(m.runtime, DockerRuntime)


_SET_ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            ["DEBUG=1", "DEBUG", "data.source=/x", "data=/y", "args=-a -b", "=", "=v", "nope=1"]
        ),
        st.text(max_size=20),
    ),
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=_SET_ARGS)
def test_set_is_all_or_nothing_for_any_arguments(env: Env, args: list[str]) -> None:
    """Any batch of set arguments either applies and persists, or changes nothing at all."""
    if not env.managers:
        env.manager().create("foo", env.plugin_dir(**SETTABLE))
    m = env.managers[0]
    before = m.inspect("foo")
    try:
        m.set("foo", args)
    except InvalidConfigError:
        assert m.inspect("foo") == before
    record = json.loads((env.root / "plugins" / before["Id"] / "plugin.json").read_text())
    assert record["Settings"] == m.inspect("foo")["Settings"]
    assert record["Config"] == m.inspect("foo")["Config"]


def test_install_refuses_a_top_level_symlink_climbing_out(env: Env, m: Manager) -> None:
    """A config.json symlink with more '..' than the archive is deep is refused, not followed."""
    outside = env.plugin_dir("outside")  # a valid plugin directory outside the archive
    climb = "../" * 30 + os.fspath(outside / "config.json").lstrip("/")
    archive = _tar(
        env.tmp / "bad.tar.gz",
        [
            (_member("config.json", tarfile.SYMTYPE, linkname=climb), None),
            (_member("rootfs", tarfile.DIRTYPE), None),
        ],
    )
    with pytest.raises(
        InvalidConfigError,
        match=rf"^unsafe member 'config.json' in .*: symlink to {re.escape(repr(climb))} "
        "points outside the archive$",
    ):
        m.install(archive, name="bad")
    assert m.list() == []
    assert list((env.root / "tmp").iterdir()) == []


def test_install_refuses_a_config_reached_through_an_absolute_rootfs_link(
    env: Env, m: Manager
) -> None:
    """config.json linked through rootfs/abs -> /outside resolves out of the archive: refused."""
    outside = env.plugin_dir("outside")
    archive = _tar(
        env.tmp / "bad.tar.gz",
        [
            (_member("rootfs", tarfile.DIRTYPE), None),
            (_member("rootfs/abs", tarfile.SYMTYPE, linkname=os.fspath(outside)), None),
            (_member("config.json", tarfile.SYMTYPE, linkname="rootfs/abs/config.json"), None),
        ],
    )
    with pytest.raises(
        InvalidConfigError, match=r"^config.json in archive .*bad.tar.gz resolves outside it$"
    ):
        m.install(archive, name="bad")
    assert m.list() == []
    assert list((env.root / "tmp").iterdir()) == []
