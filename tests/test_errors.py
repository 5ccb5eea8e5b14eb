import pickle

import pytest

import pluginkit
from pluginkit import (
    ErrDisabled,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    PluginCallError,
    PluginConnectionError,
    PluginError,
    PluginTimeoutError,
)


def test_not_found_message_and_bases():
    """ErrNotFound has Docker's exact text and is a LookupError too."""
    err = ErrNotFound("sshfs:latest")
    assert str(err) == 'plugin "sshfs:latest" not found'
    assert err.name == "sshfs:latest"
    assert isinstance(err, LookupError)
    assert isinstance(err, PluginError)


def test_disabled_is_not_found():
    """ErrDisabled is a kind of ErrNotFound with its own text."""
    err = ErrDisabled("vol:latest")
    assert str(err) == 'plugin "vol:latest" found but disabled'
    assert isinstance(err, ErrNotFound)


def test_inadequate_capability_lowercases():
    """The capability in the message and attribute is lower-cased."""
    err = ErrInadequateCapability("vol", "VolumeDriver")
    assert str(err) == 'plugin "vol" found, but not with "volumedriver" capability'
    assert err.capability == "volumedriver"
    assert err.name == "vol"


def test_call_error_fields():
    """PluginCallError carries method, status, message and Docker's text."""
    err = PluginCallError("VolumeDriver.Create", 500, "volume exists")
    assert (err.method, err.status, err.message) == ("VolumeDriver.Create", 500, "volume exists")
    assert str(err) == "VolumeDriver.Create: volume exists"


def test_builtin_bases():
    """Transport errors are catchable as the matching builtins."""
    assert issubclass(PluginConnectionError, ConnectionError)
    assert issubclass(PluginTimeoutError, TimeoutError)
    assert issubclass(InvalidConfigError, ValueError)
    assert issubclass(pluginkit.InvalidReferenceError, ValueError)


@pytest.mark.parametrize(
    "err",
    [
        ErrNotFound("a"),
        ErrDisabled("b"),
        ErrInadequateCapability("c", "Authz"),
        PluginCallError("M", 404, "nope"),
        pluginkit.PluginInUseError("d"),
        pluginkit.PluginEnabledError("e"),
        pluginkit.PluginDisabledError("e2"),
        pluginkit.PluginExistsError("f"),
        InvalidConfigError("bad", path="/x/config.json", field="Interface.Types"),
        pluginkit.InvalidArchiveError("torn", path="/x/p.tar", member="rootfs/a"),
        pluginkit.InstallLimitError("big", limit="max_bytes", value=10, path="/x/p.tar"),
    ],
)
def test_errors_pickle(err):
    """Errors survive pickling (they cross process boundaries in user code)."""
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err)
    assert str(clone) == str(err)
    assert clone.__dict__ == err.__dict__


def test_public_names_show_their_public_module() -> None:
    """Tracebacks, repr and help() show pluginkit.X, not the private module it lives in."""
    import traceback

    import pluginkit.runtime
    import pluginkit.sdk

    assert traceback.format_exception_only(ErrNotFound("foo")) == [
        'pluginkit.ErrNotFound: plugin "foo" not found\n'
    ]
    assert repr(pluginkit.Manager) == "<class 'pluginkit.Manager'>"
    assert pluginkit.load_config.__module__ == "pluginkit"
    assert pluginkit.sdk.PluginServer.__module__ == "pluginkit.sdk"
    assert pluginkit.runtime.RuntimeSpec.__module__ == "pluginkit.runtime"
    # Defined in a public module: kept.
    assert pluginkit.sdk.VolumeDriver.__module__ == "pluginkit.sdk.volume"
    assert pluginkit.runtime.ProcessRuntime.__module__ == "pluginkit.runtime.process"


def test_disabled_error_is_not_a_lookup_error() -> None:
    """disable() twice is a conflict, not a lookup: it has its own class and Docker's text."""
    err = pluginkit.PluginDisabledError("acme/vol:latest")
    assert str(err) == "plugin is already disabled: plugin acme/vol:latest found but disabled"
    assert isinstance(err, PluginError)
    assert not isinstance(err, (LookupError, ErrDisabled))


def test_errors_raised_inside_name_their_public_module() -> None:
    """An error raised deep inside, before pluginkit.X was ever touched, says pluginkit.X."""
    import subprocess
    import sys

    code = (
        "import traceback\n"
        "from pluginkit._reference import parse_reference\n"
        "try:\n"
        "    parse_reference('Bad')\n"
        "except Exception:\n"
        "    print(traceback.format_exc().splitlines()[-1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("pluginkit.InvalidReferenceError: failed to parse reference")
