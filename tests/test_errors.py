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
