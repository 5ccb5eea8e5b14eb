"""LegacyRegistry: discovery and activation (ports of pkg/plugins discovery/plugin tests)."""

# Nested with-blocks read as "server, then registry, then expected error".
# ruff: noqa: SIM117

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _client_helpers import (
    HTTPPluginServer,
    RawServer,
    Request,
    activate,
    echo,
    full_backlog,
    read_request,
    reply,
    wait_for,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import (
    Client,
    ErrInadequateCapability,
    ErrNotFound,
    InvalidConfigError,
    InvalidReferenceError,
    LegacyRegistry,
    PluginCallError,
    PluginConnectionError,
    PluginProtocolError,
    PluginTimeoutError,
    TLSConfig,
)
from pluginkit._legacy import MAX_SPEC_BYTES, check_name, read_spec_file


@pytest.fixture
def dirs(short_tmp: Path) -> tuple[Path, Path]:
    sockets, specs = short_tmp / "run", short_tmp / "etc"
    sockets.mkdir()
    specs.mkdir()
    return sockets, specs


@pytest.fixture
def registry(dirs: tuple[Path, Path]) -> Iterator[LegacyRegistry]:
    with LegacyRegistry([dirs[0]], [dirs[1]], activation_timeout=5) as reg:
        yield reg


def listen(path: Path) -> socket.socket:
    """A bare listening unix socket (accepts, never answers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def plugin_server(path: Path, *implements: str) -> HTTPPluginServer:
    path.parent.mkdir(parents=True, exist_ok=True)
    return HTTPPluginServer(path, {"Plugin.Activate": activate(*implements), "Test.Echo": echo})


# -- discovery: ports of discovery_test.go / discovery_unix_test.go ------------


@pytest.mark.parametrize(
    ("file", "addr"),
    [
        ("echo.spec", "unix://var/lib/docker/plugins/echo.sock"),
        ("echo/echo.spec", "unix://var/lib/docker/plugins/echo.sock"),
        ("foo.spec", "tcp://localhost:8080"),
        ("foo/foo.spec", "tcp://localhost:8080"),
    ],
)
def test_file_spec_plugin(registry: LegacyRegistry, dirs: tuple[Path, Path], file: str, addr: str):
    """A .spec file gives name = file stem, its URL, and insecure-skip-verify TLS."""
    path = dirs[1] / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"  {addr}\n")
    name = Path(file).stem
    found = registry._locate(name)
    assert (found.name, found.addr, found.source) == (name, addr, str(path))
    assert found.tls == TLSConfig(insecure_skip_verify=True)


def test_spec_without_scheme_is_refused(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """`localhost:8080` (Docker takes "localhost" as the scheme) is an error naming the file."""
    path = dirs[1] / "bar.spec"
    path.write_text("localhost:8080")
    with pytest.raises(InvalidConfigError) as info:
        registry._locate("bar")
    assert str(info.value) == (
        f"plugin \"bar\": {path}: invalid plugin address 'localhost:8080': no scheme"
        " (expected unix://, tcp://, http:// or https://)"
    )
    assert info.value.path == str(path)


def test_file_json_spec_plugin(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A .json file's Name is ignored; Addr and the TLS files are kept."""
    (dirs[1] / "example.json").write_text(
        json.dumps(
            {
                "Name": "plugin-example",
                "Addr": "https://example.com/docker/plugin",
                "TLSConfig": {
                    "CAFile": "/usr/shared/docker/certs/example-ca.pem",
                    "CertFile": "/usr/shared/docker/certs/example-cert.pem",
                    "KeyFile": "/usr/shared/docker/certs/example-key.pem",
                },
            }
        )
    )
    found = registry._locate("example")
    assert (found.name, found.addr) == ("example", "https://example.com/docker/plugin")
    assert found.tls == TLSConfig(
        ca_file="/usr/shared/docker/certs/example-ca.pem",
        cert_file="/usr/shared/docker/certs/example-cert.pem",
        key_file="/usr/shared/docker/certs/example-key.pem",
        insecure_skip_verify=False,
    )


def test_file_json_spec_plugin_without_tls(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A .json file without TLSConfig has no TLS settings."""
    (dirs[1] / "example.json").write_text('{"Name": "x", "Addr": "https://example.com/p"}')
    assert registry._locate("example").tls is None


def test_json_tls_without_ca_skips_verify(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A TLSConfig without CAFile skips verification, as in Docker; keys are case-insensitive."""
    (dirs[1] / "ex.json").write_text('{"addr": "https://h:1", "tlsconfig": {"certfile": "/c"}}')
    assert registry._locate("ex").tls == TLSConfig(cert_file="/c", insecure_skip_verify=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"Addr": 5}', '"Addr" must be a string, not int'),
        ('{"Addr": "tcp://h:1", "TLSConfig": []}', '"TLSConfig" must be an object, not list'),
        (
            '{"Addr": "tcp://h:1", "TLSConfig": {"CAFile": 1}}',
            '"TLSConfig.CAFile" must be a string',
        ),
        (
            '{"Addr": "tcp://h:1", "TLSConfig": {"InsecureSkipVerify": "yes"}}',
            '"TLSConfig.InsecureSkipVerify" must be true or false, not str',
        ),
        ('{"Addr": ""}', "the plugin address is empty"),
        ('{"Addr": "ftp://h:1"}', "unknown scheme 'ftp'"),
    ],
)
def test_malformed_json_spec(
    registry: LegacyRegistry, dirs: tuple[Path, Path], content: str, message: str
):
    """Malformed .json files give an InvalidConfigError naming the file and the problem."""
    path = dirs[1] / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidConfigError) as info:
        registry._locate("bad")
    assert str(info.value).startswith(f'plugin "bad": {path}')
    assert message in str(info.value)


def test_local_socket(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """echo.sock, then echo/echo.sock, are found with a unix:// address."""
    for relative in ("echo.sock", "echo/echo.sock"):
        path = dirs[0] / relative
        with listen(path):
            first, second = registry._locate("echo"), registry._locate("echo")
            assert first == second
            assert (first.name, first.addr) == ("echo", f"unix://{path}")
            assert first.tls == TLSConfig(insecure_skip_verify=True)
        path.unlink()


def test_socket_wins_over_spec(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """Sockets come before spec files; .spec before .json."""
    (dirs[1] / "p.json").write_text('{"Addr": "tcp://json:1"}')
    (dirs[1] / "p.spec").write_text("tcp://spec:1")
    assert registry._locate("p").addr == "tcp://spec:1"
    with listen(dirs[0] / "p.sock"):
        assert registry._locate("p").addr == f"unix://{dirs[0]}/p.sock"


def test_scan(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """An empty directory gives no names; echo.spec gives ["echo"]."""
    assert registry.scan() == []
    (dirs[1] / "echo.spec").write_text("unix://var/lib/docker/plugins/echo.sock")
    assert registry.scan() == ["echo"]


def test_scan_not_plugins(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """not-a-plugin/foo.{sock,spec} are ignored; not-a-plugin/not-a-plugin.spec is found."""
    sub = dirs[1] / "not-a-plugin"
    sub.mkdir()
    (sub / "foo.spec").write_text("tcp://h:1")
    with listen(sub / "foo.sock"):
        assert registry.scan() == []
        (sub / "not-a-plugin.spec").write_text("tcp://h:1")
        assert registry.scan() == ["not-a-plugin"]


def test_scan_order_and_deduplication(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """Sockets first, then spec files, sorted; a name defined twice is listed once."""
    (dirs[1] / "b.spec").write_text("tcp://h:1")
    (dirs[1] / "a.json").write_text('{"Addr": "tcp://h:1"}')
    (dirs[1] / "z.spec").write_text("tcp://h:1")
    with listen(dirs[0] / "z.sock"), listen(dirs[0] / "y" / "y.sock"):
        assert registry.scan() == ["y", "z", "a", "b"]


def test_scan_skips_regular_file_named_sock(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A regular file called x.sock is not a plugin; get() says it is not a socket."""
    path = dirs[0] / "x.sock"
    path.write_text("")
    assert registry.scan() == []
    with pytest.raises(InvalidConfigError) as info:
        registry.get("x", "VolumeDriver")
    assert str(info.value) == f'plugin "x": {path} is not a socket'


def test_scan_skips_directory_without_nested_socket(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """A directory in the socket dir without N/N.sock is not a plugin."""
    (dirs[0] / "empty").mkdir()
    assert registry.scan() == []


def test_scan_skips_a_socket_dir_that_is_a_file(short_tmp: Path, caplog: pytest.LogCaptureFixture):
    """A 'directory' that cannot be listed is skipped with a warning; other dirs still count."""
    bogus = short_tmp / "file"
    bogus.write_text("")
    specs = short_tmp / "specs"
    specs.mkdir()
    (specs / "ok.spec").write_text("tcp://h:1")
    with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
        with LegacyRegistry([bogus], [specs]) as reg:
            assert reg.scan() == ["ok"]
    assert f"skipping plugin directory {bogus}: Not a directory" in caplog.text


def test_unreadable_spec_dir_is_skipped(short_tmp: Path):
    """An unreadable spec dir (rootless Docker, moby#43111) is skipped, not fatal."""
    locked = short_tmp / "locked"
    locked.mkdir()
    (locked / "hidden.spec").write_text("tcp://h:1")
    locked.chmod(0o000)
    readable = short_tmp / "open"
    readable.mkdir()
    (readable / "ok.spec").write_text("tcp://h:1")
    short_tmp.chmod(0o755)
    # Root reads anything: scan in a forked child that dropped to "nobody".
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            records: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
            logger = logging.getLogger("pluginkit.legacy")
            logger.addHandler(handler)
            names = LegacyRegistry([], [locked, readable]).scan()
            os.write(write, json.dumps([names, records]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        names, records = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert names == ["ok"]
    assert records == [f"skipping plugin directory {locked}: Permission denied"]


# -- names -----------------------------------------------------------------


def test_empty_name(registry: LegacyRegistry):
    """An empty name fails at once with Docker's text."""
    with pytest.raises(InvalidReferenceError, match=r"^Unable to find plugin without name$"):
        registry.get("", "VolumeDriver")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", ".", "x\0y"])
def test_unsafe_names_are_refused(registry: LegacyRegistry, name: str):
    """Names that would leave the plugin directories are refused."""
    with pytest.raises(InvalidReferenceError) as info:
        registry.get(name, "VolumeDriver")
    assert str(info.value).startswith(f"invalid plugin name {name!r}")


@given(st.text(min_size=1, max_size=40))
def test_name_check_property(name: str):
    """check_name accepts exactly the names that stay one path component."""
    unsafe = "/" in name or "\0" in name or name in (".", "..")
    try:
        check_name(name)
    except InvalidReferenceError:
        assert unsafe
    else:
        assert not unsafe
        assert os.path.basename(os.path.join("/x", name)) == name


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60), ext=st.sampled_from([".spec", ".json"]))
def test_spec_parser_never_crashes(tmp_path_factory: pytest.TempPathFactory, text: str, ext: str):
    """Any spec/json content parses to a usable address or raises InvalidConfigError."""
    path = tmp_path_factory.mktemp("spec") / f"p{ext}"
    path.write_text(text)
    try:
        addr, _tls = read_spec_file("p", str(path))
    except InvalidConfigError as exc:
        message = str(exc)
    else:
        Client(addr).close()  # parses as a plugin address
        return
    assert message.startswith(f'plugin "p": {path}')


@given(
    addr=st.sampled_from(["unix:///run/p.sock", "tcp://127.0.0.1:80", "https://h.example:443"]),
    pad=st.sampled_from(["", " ", "\n", "\t\n "]),
)
def test_spec_whitespace_is_trimmed(tmp_path_factory: pytest.TempPathFactory, addr: str, pad: str):
    """Whitespace around the URL of a .spec file does not matter."""
    path = tmp_path_factory.mktemp("spec") / "p.spec"
    path.write_text(pad + addr + pad)
    assert read_spec_file("p", str(path)) == (addr, TLSConfig(insecure_skip_verify=True))


# -- get and activation ----------------------------------------------------


def test_get_activates_and_checks_capability(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """get() activates over the socket and returns a legacy Plugin with lower-case capabilities."""
    with plugin_server(dirs[0] / "vol.sock", "VolumeDriver", "NetworkDriver") as server:
        plugin = registry.get("vol", "volumedriver")
        assert (plugin.name, plugin.addr, plugin.id, plugin.is_legacy) == (
            "vol",
            f"unix://{dirs[0]}/vol.sock",
            None,
            True,
        )
        assert plugin.capabilities == ("volumedriver", "networkdriver")
        assert plugin.client.call("Test.Echo", {"a": 1}) == {"a": 1}
        assert registry.get("vol", "NetworkDriver") is plugin
        with pytest.raises(ErrInadequateCapability) as info:
            registry.get("vol", "IpamDriver")
        activations = [r for r in server.requests if r.method == "Plugin.Activate"]
    assert str(info.value) == 'plugin "vol" found, but not with "ipamdriver" capability'
    assert len(activations) == 1
    assert activations[0].body == b""


def test_get_without_capability_accepts_any(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """get(name, None) activates and returns the plugin whatever it implements, even nothing."""
    with plugin_server(dirs[0] / "odd.sock", "SecretProvider") as server:
        plugin = registry.get("odd", None)
        assert plugin.capabilities == ("secretprovider",)
        assert registry.get("odd", "secretprovider") is plugin
        activations = [r for r in server.requests if r.method == "Plugin.Activate"]
    assert len(activations) == 1
    with plugin_server(dirs[0] / "bare.sock") as server:
        assert registry.get("bare", None).capabilities == ()


def test_get_not_found_is_immediate(registry: LegacyRegistry):
    """A plain not-found fails at once with Docker's text (no 15 s retry by default)."""
    with pytest.raises(ErrNotFound) as info:
        registry.get("this-plugin-does-not-exist", "VolumeDriver")
    assert str(info.value) == 'plugin "this-plugin-does-not-exist" not found'


def test_get_waits_for_a_plugin_that_appears(dirs: tuple[Path, Path]):
    """With retry_timeout, get() waits (Docker's backoff) for a plugin that is not there yet."""
    holder: list[HTTPPluginServer] = []

    def start_later() -> None:
        time.sleep(0.05)
        holder.append(plugin_server(dirs[0] / "late.sock", "VolumeDriver").__enter__())

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        with LegacyRegistry([dirs[0]], [dirs[1]], backoff_unit=0.02) as reg:
            assert reg.get("late", "VolumeDriver", retry_timeout=5).name == "late"
    finally:
        thread.join()
        for server in holder:
            server.__exit__(None, None, None)


def test_get_via_spec_file_and_tcp(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A .spec file pointing at a TCP plugin is activated over TCP."""
    with HTTPPluginServer(None, {"Plugin.Activate": activate("authz")}) as server:
        (dirs[1] / "auth.spec").write_text(server.addr)
        plugin = registry.get("auth", "AUTHZ")
        assert plugin.addr == server.addr
        assert server.requests[0].headers["host"] == server.addr.removeprefix("tcp://")


def test_activation_once_under_concurrency(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """Many concurrent get() calls share one Plugin.Activate."""
    gate = threading.Event()

    def slow_activate(request: Request) -> tuple[int, bytes]:
        gate.wait(5)
        return 200, b'{"Implements": ["VolumeDriver"]}'

    with HTTPPluginServer(dirs[0] / "p.sock", {"Plugin.Activate": slow_activate}) as server:
        results: list[object] = []
        threads = [
            threading.Thread(target=lambda: results.append(registry.get("p", "VolumeDriver")))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        gate.set()
        for thread in threads:
            thread.join()
        assert len(server.requests) == 1
    assert len(results) == 10
    assert all(result is results[0] for result in results)


def test_failed_activation_is_not_cached(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """An activation that failed is tried again by the next get()."""
    answers = [(500, b'{"Err": "not ready"}'), (200, b'{"Implements": ["VolumeDriver"]}')]

    with HTTPPluginServer(dirs[0] / "p.sock", {"Plugin.Activate": lambda r: answers.pop(0)}):
        with pytest.raises(PluginCallError, match=r"^Plugin\.Activate: not ready$"):
            registry.get("p", "VolumeDriver")
        assert registry.get("p", "VolumeDriver").name == "p"


def test_activation_timeout(dirs: tuple[Path, Path]):
    """A plugin that accepts and never answers fails with PluginTimeoutError (moby#33871)."""
    done = threading.Event()

    def hang(conn: socket.socket) -> None:
        read_request(conn)
        done.wait(5)

    with RawServer(dirs[0] / "hang.sock", hang):
        with LegacyRegistry([dirs[0]], [dirs[1]], activation_timeout=0.1) as reg:
            with pytest.raises(PluginTimeoutError) as info:
                reg.get("hang", "VolumeDriver")
        done.set()
    assert str(info.value) == (
        f'plugin "hang": Plugin.Activate: plugin at unix://{dirs[0]}/hang.sock'
        " did not answer within 0.1 s"
    )


def test_dead_socket_fails_fast(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A socket file nobody listens on fails at once with the plugin named."""
    listen(dirs[0] / "dead.sock").close()
    with pytest.raises(PluginConnectionError) as info:
        registry.get("dead", "VolumeDriver")
    assert str(info.value) == (
        f'plugin "dead": Plugin.Activate: cannot connect to plugin at unix://{dirs[0]}/dead.sock:'
        " Connection refused"
    )


def test_activate_reply_must_be_a_manifest(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A non-list Implements is a protocol error; {} implements nothing."""
    replies = {"bad": b'{"Implements": "VolumeDriver"}', "none": b"{}"}
    with (
        HTTPPluginServer(
            dirs[0] / "bad.sock", {"Plugin.Activate": lambda r: (200, replies["bad"])}
        ),
        HTTPPluginServer(
            dirs[0] / "none.sock", {"Plugin.Activate": lambda r: (200, replies["none"])}
        ),
    ):
        with pytest.raises(Exception, match='"Implements" must be a list of strings'):
            registry.get("bad", "VolumeDriver")
        with pytest.raises(ErrInadequateCapability):
            registry.get("none", "VolumeDriver")


def test_get_all_skips_a_plugin_with_a_full_backlog(
    registry: LegacyRegistry, dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
):
    """A plugin that does not accept (its listen backlog full) is tried again for a quarter
    of a second, then skipped: it does not hold get_all up for the activation timeout."""
    path = dirs[0] / "full.sock"
    with full_backlog(path), plugin_server(dirs[0] / "good.sock", "VolumeDriver"):
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
            assert [p.name for p in registry.get_all("VolumeDriver")] == ["good"]
        assert 0.2 < time.monotonic() - start < 2  # activation_timeout is 5
    assert caplog.messages == [
        f'skipping legacy plugin full: plugin "full": Plugin.Activate: cannot connect to plugin'
        f" at unix://{path}: Resource temporarily unavailable (its listen backlog stayed full)"
    ]


_ACTIVATED = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 32\r\nConnection: close\r\n\r\n"
    b'{"Implements": ["VolumeDriver"]}'
)


def test_get_all_waits_for_a_plugin_whose_backlog_drains(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """Many names on one plugin whose backlog is tiny: the activations that find it full are
    made again once it has room (all but 4 of these 60 failed when they came at once)."""
    server = RawServer(dirs[0].parent / "one.sock", lambda conn: reply(conn, _ACTIVATED), backlog=1)
    with server:
        for i in range(60):
            (dirs[1] / f"p{i:02d}.spec").write_text(f"unix://{server.path}\n")
        assert sorted(p.name for p in registry.get_all("VolumeDriver")) == [
            f"p{i:02d}" for i in range(60)
        ]


def test_get_all_waits_while_a_slow_plugin_keeps_accepting(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """A plugin that takes one connection every 30 ms through a backlog of 1 needs ~0.9 s for
    30 names, well past the quarter second of patience: it is waited for because it keeps
    accepting (patience counts from the last connection that went through; when it counted
    from each call's first try, the last ~20 were skipped, and a loaded CI host skipped a few
    of the 60 above)."""
    server = RawServer(
        dirs[0].parent / "slow.sock", lambda conn: reply(conn, _ACTIVATED), backlog=1, pace=0.03
    )
    with server:
        for i in range(30):
            (dirs[1] / f"p{i:02d}.spec").write_text(f"unix://{server.path}\n")
        start = time.monotonic()
        assert sorted(p.name for p in registry.get_all("VolumeDriver")) == [
            f"p{i:02d}" for i in range(30)
        ]
        assert time.monotonic() - start > 0.25  # the patience was indeed outlasted
    assert server.accepted == 30


DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON, deeper than Python's decoder goes


def test_too_deeply_nested_manifest_is_skipped(
    registry: LegacyRegistry, dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
):
    """A Plugin.Activate reply nested too deeply fails that plugin only, never get_all."""
    with (
        HTTPPluginServer(dirs[0] / "deep.sock", {"Plugin.Activate": lambda r: (200, DEEP)}),
        plugin_server(dirs[0] / "good.sock", "VolumeDriver"),
    ):
        with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
            assert [p.name for p in registry.get_all("VolumeDriver")] == ["good"]
        with pytest.raises(PluginProtocolError) as info:
            registry.get("deep", "VolumeDriver")
    expected = (
        f'plugin "deep": Plugin.Activate: reply from plugin at unix://{dirs[0]}/deep.sock'
        f" is not JSON: it is nested too deeply (reply starts with {DEEP[:60]!r})"
    )
    assert str(info.value) == expected
    assert caplog.messages == [f"skipping legacy plugin deep: {expected}"]


def test_too_deeply_nested_json_spec_file_is_skipped(
    registry: LegacyRegistry, dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
):
    """A .json spec file nested too deeply is an InvalidConfigError; get_all skips it."""
    path = dirs[1] / "deep.json"
    path.write_bytes(DEEP)
    with plugin_server(dirs[0] / "good.sock", "VolumeDriver"):
        with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
            assert [p.name for p in registry.get_all("VolumeDriver")] == ["good"]
        with pytest.raises(InvalidConfigError) as info:
            registry.get("deep", "VolumeDriver")
    expected = f'plugin "deep": {path} is not valid JSON: it is nested too deeply'
    assert str(info.value) == expected
    assert info.value.path == str(path)
    assert caplog.messages == [f"skipping legacy plugin deep: {expected}"]


def test_spec_files_that_are_not_regular_files_are_not_plugins(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """A FIFO .spec (open() would block) and a .json linked to /dev/zero are passed over."""
    os.mkfifo(dirs[1] / "fifo.spec")
    (dirs[1] / "zero.json").symlink_to("/dev/zero")
    with plugin_server(dirs[0] / "good.sock", "VolumeDriver"):
        assert [p.name for p in registry.get_all("VolumeDriver")] == ["good"]
        for name in ("fifo", "zero"):
            with pytest.raises(ErrNotFound):
                registry.get(name, "VolumeDriver")


def test_reading_a_spec_file_swapped_for_a_fifo_fails_at_once(tmp_path: Path):
    """Swapped after the registry saw a regular file: an error naming it, not a hang."""
    fifo, zero = tmp_path / "fifo.spec", tmp_path / "zero.json"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    with pytest.raises(InvalidConfigError) as info:
        read_spec_file("fifo", str(fifo))
    assert str(info.value) == f'plugin "fifo": cannot read {fifo}: not a regular file but a FIFO'
    with pytest.raises(InvalidConfigError) as info:
        read_spec_file("zero", str(zero))
    assert str(info.value) == (
        f'plugin "zero": cannot read {zero}: not a regular file but a character device'
    )


def test_a_spec_file_over_the_size_limit_is_an_error(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """A spec file larger than MAX_SPEC_BYTES is refused, naming the file and the limit."""
    path = dirs[1] / "big.spec"
    path.write_bytes(b"tcp://h:1" + b" " * MAX_SPEC_BYTES)
    with pytest.raises(InvalidConfigError) as info:
        registry.get("big", "VolumeDriver")
    assert str(info.value) == (
        f'plugin "big": cannot read {path}: larger than the limit of {MAX_SPEC_BYTES} bytes'
    )


# -- handlers ----------------------------------------------------------------


def test_handle_runs_once_per_plugin_also_for_earlier_ones(
    registry: LegacyRegistry, dirs: tuple[Path, Path]
):
    """A handler runs for plugins activated before and after it is added, once each."""
    seen: list[tuple[str, str]] = []
    with (
        plugin_server(dirs[0] / "a.sock", "VolumeDriver"),
        plugin_server(dirs[0] / "b.sock", "volumedriver"),
        plugin_server(dirs[0] / "c.sock", "NetworkDriver"),
    ):
        registry.get("a", "VolumeDriver")
        registry.handle("VolumeDriver", lambda name, client: seen.append(("first", name)))
        assert seen == [("first", "a")]
        registry.get("b", "VolumeDriver")
        registry.get("a", "VolumeDriver")
        registry.get("c", "NetworkDriver")
        registry.handle("volumedriver", lambda name, client: seen.append(("second", name)))
    assert seen == [("first", "a"), ("first", "b"), ("second", "a"), ("second", "b")]


def test_handler_may_call_get(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """A handler that looks up its own plugin does not deadlock (Docker's would)."""
    got: list[str] = []

    def handler(name: str, client: Client) -> None:
        got.append(registry.get(name, "VolumeDriver").name)

    registry.handle("VolumeDriver", handler)
    with plugin_server(dirs[0] / "p.sock", "VolumeDriver"):
        registry.get("p", "VolumeDriver")
    assert got == ["p"]


def test_failing_handler_is_logged(
    registry: LegacyRegistry, dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
):
    """A handler that raises is logged; the plugin is still returned."""

    def handler(name: str, client: Client) -> None:
        raise RuntimeError("handler bug")

    registry.handle("VolumeDriver", handler)
    with plugin_server(dirs[0] / "p.sock", "VolumeDriver"):
        with caplog.at_level(logging.ERROR, logger="pluginkit.legacy"):
            assert registry.get("p", "VolumeDriver").name == "p"
    assert "volumedriver handler for plugin p failed" in caplog.text


# -- get_all -------------------------------------------------------------------


def test_get_all_skips_broken_plugins(dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture):
    """Good plugins come in scan order; broken, dead and hanging ones are logged and skipped."""
    sockets, specs = dirs
    (specs / "broken.spec").write_text("no-scheme")
    listen(sockets / "dead.sock").close()
    done = threading.Event()

    def hang(conn: socket.socket) -> None:
        read_request(conn)
        done.wait(5)

    with (
        plugin_server(sockets / "b.sock", "VolumeDriver"),
        plugin_server(sockets / "a" / "a.sock", "VolumeDriver"),
        plugin_server(sockets / "net.sock", "NetworkDriver"),
        RawServer(sockets / "hang.sock", hang),
        HTTPPluginServer(None, {"Plugin.Activate": activate("VolumeDriver")}) as tcp,
    ):
        (specs / "remote.json").write_text(json.dumps({"Addr": tcp.addr}))
        with LegacyRegistry([sockets], [specs], activation_timeout=1.0) as reg:
            with caplog.at_level(logging.WARNING, logger="pluginkit.legacy"):
                found = reg.get_all("VolumeDriver")
            assert [p.name for p in found] == ["a", "b", "remote"]
            assert [p.name for p in reg.get_all("networkdriver")] == ["net"]
        done.set()
    assert "skipping legacy plugin broken" in caplog.text
    assert (
        f'skipping legacy plugin dead: plugin "dead": Plugin.Activate: cannot connect to plugin'
        f" at unix://{sockets}/dead.sock: Connection refused"
    ) in caplog.text
    assert 'plugin "hang": Plugin.Activate: plugin at' in caplog.text


def test_get_all_activates_each_plugin_once(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """Repeated get_all() and get() reuse the activated plugins (moby PR #20686)."""
    with plugin_server(dirs[0] / "p.sock", "VolumeDriver") as server:
        first = registry.get_all("VolumeDriver")
        second = registry.get_all("VolumeDriver")
        assert first == second
        assert registry.get("p", "VolumeDriver") is first[0]
        assert len(server.requests) == 1


def test_get_all_runs_handlers(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """Plugins activated by get_all() reach the handlers."""
    seen: list[str] = []
    registry.handle("VolumeDriver", lambda name, client: seen.append(name))
    with (
        plugin_server(dirs[0] / "x.sock", "VolumeDriver"),
        plugin_server(dirs[0] / "y.sock", "VolumeDriver"),
    ):
        registry.get_all("VolumeDriver")
    assert seen == ["x", "y"]


def test_get_all_many_plugins(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """get_all() activates dozens of plugins at once."""
    servers = [plugin_server(dirs[0] / f"p{i:02}.sock", "VolumeDriver") for i in range(40)]
    for server in servers:
        server.__enter__()
    try:
        found = registry.get_all("VolumeDriver")
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    assert [p.name for p in found] == [f"p{i:02}" for i in range(40)]


def test_get_all_uses_the_socket_get_would_use(registry: LegacyRegistry, dirs: tuple[Path, Path]):
    """With both N.sock and N/N.sock, get_all() and get() both use N.sock."""
    with plugin_server(dirs[0] / "n.sock", "VolumeDriver"), listen(dirs[0] / "n" / "n.sock"):
        (plugin,) = registry.get_all("VolumeDriver")
        assert plugin.addr == f"unix://{dirs[0]}/n.sock"
        registry.close()
        assert registry.get("n", "VolumeDriver").addr == plugin.addr


def test_socket_path_too_long_fails_every_get(
    short_tmp: Path, dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
):
    """A socket whose path is too long for connect() fails each get(), never leaving it hung."""
    deep = short_tmp / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)  # bind() takes the short relative name
    with listen(Path("p.sock")):
        monkeypatch.undo()
        expected = f"unix socket path '{deep}/p.sock' is too long"
        with LegacyRegistry([deep], [dirs[1]], activation_timeout=5) as reg:
            errors: list[str] = []

            def get() -> None:
                try:
                    reg.get("p", "VolumeDriver")
                except InvalidConfigError as exc:
                    errors.append(str(exc))

            for attempt in (1, 2):
                thread = threading.Thread(target=get, daemon=True)
                thread.start()
                thread.join(5)
                assert not thread.is_alive(), "get() hangs on the entry the first one left"
                assert errors == [expected] * attempt


def test_get_all_activates_many_tcp_plugins_at_once(dirs: tuple[Path, Path]):
    """get_all() waits for all its TCP activations at once, not in batches behind slow ones."""
    count = 24
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    lock = threading.Lock()
    waiting: list[socket.socket] = []
    everyone = threading.Event()  # every plugin's request is in: answer them all

    def serve(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            with lock:
                waiting.append(conn)
                if len(waiting) == count:
                    everyone.set()
            if everyone.wait(5):
                body = b'{"Implements": ["VolumeDriver"]}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    for i in range(count):
        (dirs[1] / f"t{i:02}.spec").write_text(f"tcp://127.0.0.1:{port}")
    try:
        with LegacyRegistry([dirs[0]], [dirs[1]], activation_timeout=3) as reg:
            found = reg.get_all("VolumeDriver")
    finally:
        everyone.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()
    assert [p.name for p in found] == [f"t{i:02}" for i in range(count)]


def test_get_all_loop_leaks_no_fds_or_threads(dirs: tuple[Path, Path]):
    """Repeated get_all() over broken plugins keeps the process's fds and threads flat."""
    sockets, specs = dirs
    (specs / "broken.spec").write_text("no-scheme")
    (specs / "tcpdead.spec").write_text("tcp://127.0.0.1:1")
    listen(sockets / "dead.sock").close()

    def hang(conn: socket.socket) -> None:  # until the client hangs up
        read_request(conn)
        while conn.recv(4096):
            pass

    def garbage(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnotjs")

    with (
        plugin_server(sockets / "good.sock", "VolumeDriver"),
        RawServer(sockets / "hang.sock", hang),
        RawServer(sockets / "drop.sock", read_request),
        RawServer(sockets / "garbage.sock", garbage),
        HTTPPluginServer(None, {"Plugin.Activate": activate("VolumeDriver")}) as tcp,
    ):
        (specs / "remote.json").write_text(json.dumps({"Addr": tcp.addr}))
        with LegacyRegistry([sockets], [specs], activation_timeout=0.05) as reg:
            reg.get_all("VolumeDriver")
            fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
            for _ in range(20):
                found = reg.get_all("VolumeDriver")
            wait_for(lambda: threading.active_count() <= threads)
            # The test servers close their ends of the last connections in
            # their own threads: wait for that too (one CI run counted one fd
            # over, once, in 2,600 tests; a leak never comes back down).
            wait_for(lambda: len(os.listdir("/proc/self/fd")) <= fds)
    assert [p.name for p in found] == ["good", "remote"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation_timeout": 0}, "activation_timeout must be > 0, not 0"),
        ({"retry_timeout": -1}, "retry_timeout must be >= 0, not -1"),
        ({"retry_timeout": float("nan")}, "retry_timeout must be >= 0, not nan"),
        ({"backoff_unit": 0}, "backoff_unit must be > 0, not 0"),
    ],
)
def test_bad_settings_are_refused_at_once(
    dirs: tuple[Path, Path], kwargs: dict[str, float], message: str
):
    """Bad timeouts are refused by the constructor, not by the first get()."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        LegacyRegistry([dirs[0]], [dirs[1]], **kwargs)


@pytest.mark.parametrize("retry_timeout", [-1.0, float("nan")])
def test_bad_retry_timeout_of_get_is_refused(registry: LegacyRegistry, retry_timeout: float):
    """get(retry_timeout=...) below 0 or NaN (NaN waited forever for a missing plugin) fails."""
    with pytest.raises(ValueError, match=f"^retry_timeout must be >= 0, not {retry_timeout}$"):
        registry.get("missing", "VolumeDriver", retry_timeout=retry_timeout)
