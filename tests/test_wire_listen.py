"""The wire layer's listen addresses (what the SDK server takes): parsed, never bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluginkit._wire._listen import DEFAULT_SOCKET_DIR, ListenAddress, resolve_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("/run/x.sock", ListenAddress(path=Path("/run/x.sock"))),
        ("unix:///run/x.sock", ListenAddress(path=Path("/run/x.sock"))),
        (Path("/run/x.sock"), ListenAddress(path=Path("/run/x.sock"))),
        ("tcp://127.0.0.1:0", ListenAddress(host="127.0.0.1", port=0)),
        ("tcp://:8080", ListenAddress(host="0.0.0.0", port=8080)),
        ("tcp://[::1]:9000/", ListenAddress(host="::1", port=9000)),
    ],
)
def test_listen_addresses(address: str | Path, expected: ListenAddress) -> None:
    """Socket paths, unix:// and tcp:// URLs resolve to a path or a host and port."""
    assert resolve_address(address, None) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("tcp://host", "address 'tcp://host' needs a port: tcp://host:port"),
        ("tcp://host:70000", "address 'tcp://host:70000' has port 70000 out of range 0-65535"),
        ("unix://", "address 'unix://' has no socket path"),
        (
            "http://x:1",
            "address 'http://x:1' has unsupported scheme 'http' "
            "(use a socket path, unix:///path or tcp://host:port)",
        ),
        ("", "address is empty (use a socket path, unix:///path or tcp://host:port)"),
        (
            "/" + "x" * 110,
            f"unix socket path {'/' + 'x' * 110!r} is too long (111 bytes, the limit is 107)",
        ),
    ],
)
def test_bad_listen_addresses_are_named(address: str, message: str) -> None:
    """A malformed address is a ValueError saying what is wrong with it."""
    with pytest.raises(ValueError, match=r"address|path") as info:
        resolve_address(address, None)
    assert str(info.value) == message


def test_default_socket_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """None: $PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET, else <dir>/<name>.sock, else Docker's."""
    monkeypatch.delenv("PLUGINKIT_SOCKET_DIR", raising=False)
    monkeypatch.delenv("PLUGINKIT_SOCKET", raising=False)
    assert resolve_address(None, "vol").path == DEFAULT_SOCKET_DIR / "vol.sock"
    monkeypatch.setenv("PLUGINKIT_SOCKET_DIR", "/run/pk/abc")
    assert resolve_address(None, "vol").path == Path("/run/pk/abc/vol.sock")
    monkeypatch.setenv("PLUGINKIT_SOCKET", "p.sock")
    assert resolve_address(None, None).path == Path("/run/pk/abc/p.sock")
