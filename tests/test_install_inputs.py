"""Hostile install inputs: each fails fast with a clear PluginError naming it, leaving nothing."""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _manager_helpers import Env

from pluginkit import (
    ErrNotFound,
    InstallLimitError,
    InstallLimits,
    InvalidArchiveError,
    InvalidConfigError,
    Manager,
    load_config,
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


def _member(name: str, kind: bytes = tarfile.REGTYPE, **kwargs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755
    for key, value in kwargs.items():
        setattr(info, key, value)
    return info


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _plugin_members(env: Env) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    config = (env.plugin_dir() / "config.json").read_bytes()
    return [(_member("config.json"), config), (_member("rootfs", tarfile.DIRTYPE), None)]


def _nothing_left(env: Env, m: Manager) -> None:
    assert m.list() == []
    assert list((env.root / "tmp").iterdir()) == []
    assert list((env.root / "plugins").iterdir()) == []


def _within(seconds: float, call: Callable[[], object]) -> BaseException:
    """Run ``call`` in a thread; fail if it has not finished in time; return what it raised."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert box, "it did not raise"
    return box[0]


# -- config.json -------------------------------------------------------------------------


def test_config_json_fifo_is_refused_at_once(env: Env, m: Manager) -> None:
    """A config.json that is a FIFO fails at once (it used to block create() forever)."""
    ctx = env.plugin_dir()
    (ctx / "config.json").unlink()
    os.mkfifo(ctx / "config.json")
    exc = _within(5, lambda: m.create("fifo", ctx))
    assert type(exc) is InvalidConfigError
    assert str(exc) == f"invalid plugin config {ctx}/config.json: not a regular file but a FIFO"
    assert exc.path == f"{ctx}/config.json"
    _nothing_left(env, m)


def test_config_json_linked_to_dev_zero_is_refused(env: Env, m: Manager) -> None:
    """A config.json linking to /dev/zero is refused (it used to be read forever)."""
    ctx = env.plugin_dir()
    (ctx / "config.json").unlink()
    (ctx / "config.json").symlink_to("/dev/zero")
    exc = _within(5, lambda: m.create("zero", ctx))
    assert type(exc) is InvalidConfigError
    assert str(exc) == f"config.json in {ctx} resolves outside it (to /dev/zero)"
    # load_config itself follows the link, and refuses a device.
    exc = _within(5, lambda: load_config(ctx / "config.json"))
    assert str(exc) == (
        f"invalid plugin config {ctx}/config.json: not a regular file but a character device"
    )
    _nothing_left(env, m)


def test_config_json_over_the_size_limit(env: Env) -> None:
    """A config.json larger than InstallLimits.max_config_bytes is refused, naming the limit."""
    m = env.manager(install_limits=InstallLimits(max_config_bytes=1000))
    ctx = env.plugin_dir(Description="x" * 2000)
    with pytest.raises(InstallLimitError) as info:
        m.install(ctx, name="big")
    assert str(info.value) == (
        f"invalid plugin config {ctx}/config.json: larger than the limit of 1000 bytes"
        " (InstallLimits.max_config_bytes)"
    )
    assert (info.value.limit, info.value.value) == ("max_config_bytes", 1000)
    assert m.install(env.plugin_dir("small"), name="small").name == "small:latest"


def test_default_config_size_limit_is_one_mib(short_tmp: Path) -> None:
    """load_config reads at most 1 MiB by default."""
    path = short_tmp / "config.json"
    path.write_bytes(b" " * (1 << 20) + b"{}")
    with pytest.raises(InstallLimitError, match="larger than the limit of 1048576 bytes"):
        load_config(path)


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (
            {"Interface": {"Types": ["nonsense"], "Socket": "p.sock"}},
            "Interface.Types[0]",
            '"nonsense" is not a plugin interface type (expected'
            ' <prefix>.<capability>/<version>, e.g. "docker.volumedriver/1.0")',
        ),
        (
            {"Interface": {"Types": ["docker.volumedriver/1.0", "/1.0"], "Socket": "p.sock"}},
            "Interface.Types[1]",
            '"/1.0" is not a plugin interface type (expected'
            ' <prefix>.<capability>/<version>, e.g. "docker.volumedriver/1.0")',
        ),
        (
            {"Entrypoint": [""]},
            "Entrypoint[0]",
            'No command specified (the program to run is "")',
        ),
        (
            {"Entrypoint": ["/plugin", "a\x00b"]},
            "Entrypoint[1]",
            "must not contain a NUL character",
        ),
    ],
)
def test_bad_types_and_entrypoint_are_refused(
    env: Env, m: Manager, extra: dict[str, Any], field: str, message: str
) -> None:
    """Types Docker cannot look up and an empty program are refused, with Docker's words."""
    ctx = env.plugin_dir(**extra)
    with pytest.raises(InvalidConfigError) as info:
        m.install(ctx, name="bad")
    assert str(info.value) == f"invalid plugin config {ctx}/config.json: {field}: {message}"
    assert info.value.field == field
    _nothing_left(env, m)


# -- sources -----------------------------------------------------------------------------


def test_source_name_over_255_bytes(env: Env, m: Manager) -> None:
    """A source whose name is longer than a file name can be is named, not a raw OSError."""
    source = env.tmp / ("x" * 300)
    with pytest.raises(InvalidConfigError) as info:
        m.install(source)
    assert str(info.value) == f"plugin source {source} cannot be used: File name too long"
    with pytest.raises(ErrNotFound) as not_found:
        m.privileges(os.fspath(source))
    assert str(not_found.value) == f'plugin "{source}" not found'


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_source_that_is_no_file_fails_at_once(env: Env, m: Manager, kind: str) -> None:
    """A source that is a FIFO (it blocked the reader) or a device is refused at once."""
    if kind == "fifo":
        source = env.tmp / "p.tar"
        os.mkfifo(source)
        what = "a FIFO"
    else:
        source = Path("/dev/zero")
        what = "a socket or device"
    exc = _within(5, lambda: m.install(source, name="p"))
    assert type(exc) is InvalidConfigError
    assert str(exc) == (
        f"plugin source {source} is neither a directory nor a regular file but {what}"
    )
    exc = _within(5, lambda: m.privileges(source))
    assert type(exc) is InvalidConfigError
    _nothing_left(env, m)


def test_rootfs_linked_to_etc_is_not_copied(env: Env, m: Manager) -> None:
    """A rootfs that is a symlink to /etc is refused: the host's /etc is never copied."""
    ctx = env.plugin_dir()
    (ctx / "rootfs" / "plugin").unlink()
    (ctx / "rootfs").rmdir()
    (ctx / "rootfs").symlink_to("/etc")
    with pytest.raises(InvalidConfigError) as info:
        m.install(ctx, name="etc")
    assert str(info.value) == f"rootfs in {ctx} resolves outside it (to /etc)"
    assert info.value.path == f"{ctx}/rootfs"
    with pytest.raises(InvalidConfigError, match="resolves outside it"):
        m.privileges(ctx)
    _nothing_left(env, m)


def test_rootfs_linked_inside_the_source_is_copied(env: Env, m: Manager) -> None:
    """A rootfs link to a directory inside the plugin directory is fine."""
    ctx = env.plugin_dir()
    (ctx / "rootfs").rename(ctx / "image")
    (ctx / "rootfs").symlink_to("image")
    p = m.install(ctx, name="inside")
    assert (env.root / "plugins" / str(p.id) / "rootfs" / "plugin").is_file()


def _deep_dir(top: Path, depth: int) -> None:
    """Make top/d/d/.../d ``depth`` levels deep without recursion (os.makedirs recurses)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _remove_deep(top: Path) -> None:
    """Delete what _deep_dir made (shutil.rmtree recurses too)."""
    path = os.fspath(top)
    while os.path.isdir(os.path.join(path, "d")):
        path = os.path.join(path, "d")
    os.unlink(os.path.join(path, "f"))
    while path != os.fspath(top):
        os.rmdir(path)
        path = os.path.dirname(path)


def test_deep_directory_source_hits_max_depth(env: Env, m: Manager) -> None:
    """A rootfs 1,500 directories deep fails with InstallLimitError (it was a RecursionError)."""
    ctx = env.plugin_dir()
    _deep_dir(ctx / "rootfs", 1500)
    try:
        with pytest.raises(InstallLimitError) as info:
            m.install(ctx, name="deep")
        shown = "rootfs" + "/d" * 256
        assert str(info.value) == (
            f"plugin directory {ctx}: '{shown[:60]}...{shown[-60:]}' is nested more than 256"
            " directories deep (InstallLimits.max_depth)"
        )
        _nothing_left(env, m)
    finally:
        _remove_deep(ctx / "rootfs")


def test_directory_source_within_a_small_depth_limit(env: Env) -> None:
    """max_depth counts directories below the plugin directory (rootfs is 1)."""
    m = env.manager(install_limits=InstallLimits(max_depth=4))
    ctx = env.plugin_dir()
    (ctx / "rootfs" / "a" / "b" / "c").mkdir(parents=True)
    m.install(ctx, name="ok")
    (ctx / "rootfs" / "a" / "b" / "c" / "d").mkdir()
    with pytest.raises(InstallLimitError) as info:
        m.install(ctx, name="deep")
    assert str(info.value) == (
        f"plugin directory {ctx}: 'rootfs/a/b/c/d' is nested more than 4 directories deep"
        " (InstallLimits.max_depth)"
    )


# -- archives ----------------------------------------------------------------------------


def test_truncated_archive(env: Env, m: Manager) -> None:
    """A truncated tar raises InvalidArchiveError, not tarfile.ReadError."""
    members = [*_plugin_members(env), (_member("rootfs/big"), os.urandom(100_000))]
    whole = _tar(env.tmp / "whole.tar", members).read_bytes()
    archive = env.tmp / "torn.tar"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidArchiveError) as info:
        m.install(archive, name="torn")
    assert str(info.value) == (
        f"cannot read archive {archive}: it is truncated or corrupt (unexpected end of data)"
    )
    assert info.value.path == os.fspath(archive)
    _nothing_left(env, m)


def test_truncated_compressed_archive(env: Env, m: Manager) -> None:
    """A truncated .tar.gz raises InvalidArchiveError, not EOFError."""
    members = [*_plugin_members(env), (_member("rootfs/big"), os.urandom(100_000))]
    whole = _tar(env.tmp / "whole.tgz", members, "w:gz").read_bytes()
    archive = env.tmp / "torn.tgz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidArchiveError) as info:
        m.install(archive, name="torn")
    assert str(info.value) == (
        f"cannot read archive {archive}: it is truncated or corrupt (Compressed file ended"
        " before the end-of-stream marker was reached)"
    )
    _nothing_left(env, m)


def test_archive_bomb_stops_at_max_bytes(env: Env) -> None:
    """A small .tar.gz unpacking to 64 MiB stops at max_bytes, before writing past it."""
    m = env.manager(install_limits=InstallLimits(max_bytes=16 << 20))
    archive = env.tmp / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in _plugin_members(env):
            tar.addfile(info, io.BytesIO(data) if data else None)
        for index in range(4):
            zeros = _member(f"rootfs/zero{index}", size=16 << 20)
            tar.addfile(zeros, io.BytesIO(bytes(16 << 20)))
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(InstallLimitError) as info:
        m.install(archive, name="bomb")
    assert str(info.value) == (
        f"archive {archive} unpacks to more than {16 << 20} bytes (InstallLimits.max_bytes)"
    )
    assert (info.value.limit, info.value.value, info.value.path) == (
        "max_bytes",
        16 << 20,
        os.fspath(archive),
    )
    _nothing_left(env, m)


def test_default_max_bytes_is_checked_before_reading(env: Env, m: Manager) -> None:
    """A member claiming 2 GiB is refused by the default 1 GiB limit before its data is read."""
    archive = env.tmp / "claims.tar"
    blocks = b""
    for info, data in _plugin_members(env):
        info.size = len(data or b"")
        blocks += info.tobuf(tarfile.GNU_FORMAT)
        if data:
            blocks += data + bytes(-len(data) % tarfile.BLOCKSIZE)
    # A header saying 2 GiB, and no data at all after it.
    blocks += _member("rootfs/huge", size=2 << 30).tobuf(tarfile.GNU_FORMAT)
    archive.write_bytes(blocks)
    with pytest.raises(InstallLimitError, match=r"unpacks to more than 1073741824 bytes"):
        m.install(archive, name="claims")
    _nothing_left(env, m)


def test_archive_with_too_many_entries(env: Env) -> None:
    """Thousands of empty files stop at max_entries."""
    m = env.manager(install_limits=InstallLimits(max_entries=100))
    members = _plugin_members(env) + [(_member(f"rootfs/f{i}"), b"") for i in range(1000)]
    archive = _tar(env.tmp / "many.tar.gz", members, "w:gz")
    with pytest.raises(InstallLimitError) as info:
        m.install(archive, name="many")
    assert str(info.value) == (
        f"archive {archive} holds more than 100 files, directories and links"
        " (InstallLimits.max_entries)"
    )
    _nothing_left(env, m)


def test_archive_nested_too_deeply(env: Env, m: Manager) -> None:
    """A member 1,500 directories deep is an InstallLimitError (it was a RecursionError)."""
    name = "rootfs/" + "d/" * 1500 + "f"
    archive = _tar(env.tmp / "deep.tar", [*_plugin_members(env), (_member(name), b"x")])
    with pytest.raises(InstallLimitError) as info:
        m.install(archive, name="deep")
    assert str(info.value) == (
        f"archive {archive}: '{name[:60]}...{name[-60:]}' is nested more than 256 directories"
        " deep (InstallLimits.max_depth)"
    )
    _nothing_left(env, m)


def test_archive_member_name_too_long(env: Env, m: Manager) -> None:
    """A member whose file name is over 255 bytes is an InvalidArchiveError naming it."""
    name = "rootfs/" + "n" * 300
    archive = _tar(env.tmp / "long.tar", [*_plugin_members(env), (_member(name), b"x")])
    with pytest.raises(InvalidArchiveError) as info:
        m.install(archive, name="long")
    assert str(info.value) == (
        f"cannot extract member '{name[:60]}...{name[-60:]}' of {archive}: File name too long"
    )
    assert info.value.member == name
    _nothing_left(env, m)


def test_archive_never_creates_directories_through_a_link(env: Env, m: Manager) -> None:
    """rootfs/a -> /outside, then rootfs/a/new/f: no directory appears outside (it used to)."""
    outside = env.tmp / "outside"
    outside.mkdir()
    members = [
        *_plugin_members(env),
        (_member("rootfs/a", tarfile.SYMTYPE, linkname=os.fspath(outside)), None),
        (_member("rootfs/a/new/f"), b"x"),
    ]
    archive = _tar(env.tmp / "through.tar", members)
    with pytest.raises(InvalidArchiveError) as info:
        m.install(archive, name="through")
    assert str(info.value) == (
        f"unsafe member 'rootfs/a/new/f' in {archive}: it would be written through a symlink"
    )
    assert list(outside.iterdir()) == []
    _nothing_left(env, m)


def test_archive_within_limits_installs(env: Env) -> None:
    """Limits that an archive fits exactly let it through."""
    members = [*_plugin_members(env), (_member("rootfs/a", tarfile.DIRTYPE), None)]
    members.append((_member("rootfs/a/f"), b"x" * 1000))
    archive = _tar(env.tmp / "fits.tar", members)
    config_size = len(members[0][1] or b"")
    m = env.manager(
        install_limits=InstallLimits(max_bytes=config_size + 1000, max_entries=4, max_depth=2)
    )
    p = m.install(archive, name="fits")
    assert (env.root / "plugins" / str(p.id) / "rootfs" / "a" / "f").read_bytes() == b"x" * 1000


def test_gzip_garbage_is_not_a_tar(env: Env, m: Manager) -> None:
    """A gzip file holding no tar is refused as such."""
    archive = env.tmp / "junk.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar at all" * 100))
    with pytest.raises(InvalidConfigError, match="is neither a plugin directory nor a tar archive"):
        m.install(archive, name="junk")
    _nothing_left(env, m)


@pytest.mark.parametrize("field", ["max_bytes", "max_entries", "max_depth", "max_config_bytes"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_install_limits_must_be_positive_ints(field: str, value: object) -> None:
    """InstallLimits refuses what is not an int > 0."""
    message = f"InstallLimits.{field} must be an int > 0, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        InstallLimits(**{field: value})
