"""read_small_file: bounded, non-blocking reads of files someone else wrote."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pluginkit._files import FileKindError, FileTooLargeError, read_small_file


def test_reads_a_regular_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert read_small_file(path, 10) == b"0123456789"
    assert read_small_file(os.fspath(path), 1 << 20) == b"0123456789"


def test_an_empty_file_reads_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    assert read_small_file(path, 10) == b""


def test_a_file_one_byte_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLargeError, match=r"^larger than the limit of 10 bytes$") as info:
        read_small_file(path, 10)
    assert info.value.limit == 10


def test_a_file_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # 2.2 MiB: more than one 1 MiB read
    path = tmp_path / "f"
    path.write_bytes(data)
    assert read_small_file(path, len(data)) == data


def test_a_file_whose_size_says_nothing_is_read_to_its_end() -> None:
    """procfs shows size 0 and sysfs 4096 whatever they hold: both are read until the end."""
    with open("/proc/self/maps", "rb") as f:
        expected_start = f.readline()
    got = read_small_file("/proc/self/maps", 1 << 24)
    assert got.startswith(expected_start)
    assert got.endswith(b"\n")
    assert got.count(b"\n") > 5  # more than one line: read past the first read
    sysfs = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if sysfs.exists():
        assert os.stat(sysfs).st_size == 4096
        assert read_small_file(sysfs, 4096) == sysfs.read_bytes()


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    done: list[BaseException] = []

    def read() -> None:
        try:
            read_small_file(path, 10)
        except BaseException as exc:
            done.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock it before failing
        with open(path, "wb"):
            pass
        pytest.fail("read_small_file blocked on a FIFO")
    assert len(done) == 1
    assert isinstance(done[0], FileKindError)
    assert str(done[0]) == "not a regular file but a FIFO"


def test_a_link_to_an_endless_device_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zero"
    path.symlink_to("/dev/zero")
    with pytest.raises(FileKindError, match=r"^not a regular file but a character device$"):
        read_small_file(path, 10)


def test_a_directory_and_a_missing_file_raise_their_os_errors(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        read_small_file(tmp_path, 10)
    with pytest.raises(FileNotFoundError):
        read_small_file(tmp_path / "missing", 10)
