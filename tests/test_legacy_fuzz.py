"""LegacyRegistry against hostile spec files: none hides a good plugin, each fails clearly."""

from __future__ import annotations

import json
import logging
import random
import string
from pathlib import Path

import pytest
from _client_helpers import HTTPPluginServer, activate

from pluginkit import Client, InvalidConfigError, LegacyRegistry, Manager, find_with_capability
from pluginkit._legacy import read_spec_file
from pluginkit.testing import FakeRuntime

# Hosts that never reach a resolver (numbers, localhost, or refused by the
# parser before any lookup), so the test does not depend on DNS.
_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "a" * 64 + ".com",  # a label over 63 bytes: IDNA refuses it
    "a" * 300,
    "x..y",
    ".",
    "..",
    "\u00e9" * 70,
    "[::1",
    "[zz]",
    "",
    "h\x00st",
    "h st",
    "\udcff",
]
_SCHEMES = ["unix", "tcp", "http", "https", "HTTP", "ftp", "", "unix:", "tcp:/"]
_PORTS = ["", ":1", ":0", ":65535", ":65536", ":-1", ":x", ":" + "9" * 30, ":"]


def _text(rng: random.Random, size: int) -> str:
    alphabet = string.printable + "\u00e9\u2028\udcff\x00\ufeff"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _address(rng: random.Random) -> str:
    scheme = rng.choice(_SCHEMES)
    if scheme.lower() == "unix" and rng.random() < 0.5:
        paths = ["", "/", "/x" * 100, "/nope.sock", "\x00", "rel/p.sock"]
        return f"{scheme}://" + rng.choice(paths)
    address = f"{scheme}://{rng.choice(_HOSTS)}{rng.choice(_PORTS)}"
    if rng.random() < 0.3:
        address += rng.choice(["/", "/path?q#f", "?", "#", "@", "%zz"])
    if rng.random() < 0.1:
        address = rng.choice(["user@", "u:p@", "@@"]).join(address.split("://", 1))
    return address


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kinds = ["str", "num", "bool", "null", "list", "obj", "addr"]
    kind = rng.choice(kinds if depth < 3 else [*kinds[:4], "addr"])
    if kind == "str":
        return _text(rng, rng.randrange(12))
    if kind == "num":
        return rng.choice([0, -1, 1.5, 10**30, 2**63])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == "obj":
        keys = ["Addr", "addr", "TLSConfig", "CAFile", "CertFile", "KeyFile", "InsecureSkipVerify"]
        return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return _address(rng)


def _spec_content(rng: random.Random) -> tuple[str, bytes]:
    """One random spec file: (extension, bytes)."""
    roll = rng.random()
    if roll < 0.45:
        text = _address(rng)
        if rng.random() < 0.2:
            text = rng.choice([" ", "\n", "\t"]) + text + rng.choice(["", "\n", "\r\n x"])
        return ".spec", text.encode("utf-8", "surrogatepass")
    if roll < 0.8:
        doc: dict[str, object] = {"Addr": _address(rng)}
        if rng.random() < 0.6:
            tls = {k: _json_value(rng) for k in rng.sample(["CAFile", "CertFile", "KeyFile"], 2)}
            tls["InsecureSkipVerify"] = _json_value(rng)
            doc[rng.choice(["TLSConfig", "tlsconfig", "TLSCONFIG"])] = rng.choice(
                [tls, _json_value(rng)]
            )
        if rng.random() < 0.2:
            doc = _json_value(rng)  # type: ignore[assignment]
        raw = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.1:
            raw = raw[: rng.randrange(len(raw) + 1)]  # truncated
        if rng.random() < 0.05:
            raw = "[" * 10_000 + "]" * 10_000  # nested too deeply
        return ".json", raw.encode("utf-8", "surrogatepass")
    ext = rng.choice([".spec", ".json"])
    return ext, bytes(rng.randrange(256) for _ in range(rng.randrange(64)))


def _write_fuzzed(specs: Path, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = []
    for index in range(count):
        ext, content = _spec_content(rng)
        name = f"f{index:04d}"
        path = specs / f"{name}{ext}"
        if rng.random() < 0.2:
            (specs / name).mkdir()
            path = specs / name / f"{name}{ext}"
        path.write_bytes(content)
        names.append(name)
    return names


@pytest.mark.parametrize(
    ("addr", "reason"),
    [
        ("http://" + "a" * 64 + ".com", "label empty or too long"),
        ("tcp://" + "a" * 64 + ":80", "label too long"),
        ("https://" + "\u00e9" * 70 + ":443", "label empty or too long"),
        ("http://x..y:80", "label empty or too long"),
    ],
)
def test_spec_with_a_host_idna_refuses(tmp_path: Path, addr: str, reason: str):
    """A host no Host header can carry (label too long or empty) is a clear InvalidConfigError."""
    path = tmp_path / "p.spec"
    path.write_text(addr)
    with pytest.raises(InvalidConfigError) as info:
        read_spec_file("p", str(path))
    host = addr.split("://", 1)[1].rsplit(":", 1)[0] if addr.count(":") > 1 else addr[7:]
    assert str(info.value) == (
        f'plugin "p": {path}: invalid plugin address {addr!r}: host {host!r} is not a valid'
        f" host name ({reason})"
    )
    assert info.value.path == str(path)


def test_fuzzed_spec_files_parse_or_fail_clearly(tmp_path: Path):
    """1,000 random spec files: each parses to an address a Client accepts, or raises
    InvalidConfigError naming the file (never any other exception)."""
    names = _write_fuzzed(tmp_path, 1000, seed=13)
    outcomes = {"ok": 0, "refused": 0}
    for name in names:
        path = next(p for p in [*tmp_path.glob(f"{name}.*"), *tmp_path.glob(f"{name}/{name}.*")])
        try:
            addr, tls = read_spec_file(name, str(path))
        except InvalidConfigError as exc:
            error: InvalidConfigError | None = exc
        else:
            error = None
        if error is not None:
            message = str(error)
            assert message.startswith(f'plugin "{name}": '), message
            assert f"{path}" in message, message
            assert error.path == str(path), message
            outcomes["refused"] += 1
            continue
        Client(addr, tls=tls if addr.lower().startswith("https://") else None).close()
        outcomes["ok"] += 1
    assert outcomes["ok"] > 50, outcomes
    assert outcomes["refused"] > 500, outcomes


def test_fuzzed_spec_files_hide_no_good_plugin(short_tmp: Path, caplog: pytest.LogCaptureFixture):
    """Among 1,000 random spec files, get_all and find_with_capability still return
    every good plugin (socket and spec-file ones), in scan order."""
    sockets, specs = short_tmp / "run", short_tmp / "etc"
    sockets.mkdir()
    specs.mkdir()
    _write_fuzzed(specs, 1000, seed=2026)
    with (
        HTTPPluginServer(sockets / "good-sock.sock", {"Plugin.Activate": activate("VolumeDriver")}),
        HTTPPluginServer(None, {"Plugin.Activate": activate("VolumeDriver")}) as tcp,
    ):
        (specs / "good-spec.spec").write_text(tcp.addr)
        (specs / "good-json.json").write_text(json.dumps({"Addr": tcp.addr}))
        with LegacyRegistry([sockets], [specs], activation_timeout=2.0) as reg:
            with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
                found = [p.name for p in reg.get_all("VolumeDriver")]
                assert found == ["good-sock", "good-json", "good-spec"]
            with Manager(
                short_tmp / "root", runtime=FakeRuntime(), run_root=short_tmp / "r", legacy=reg
            ) as manager:
                plugins = find_with_capability("volumedriver", manager=manager)
                assert [p.name for p in plugins] == found
    assert "skipping legacy plugin f" in caplog.text
