"""Logging plugins: Docker's log entry stream, and LogDriver following real FIFOs."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluginkit import Client
from pluginkit.sdk import LogDriver, PluginServer, logdriver
from pluginkit.sdk.logdriver import (
    LogEntry,
    LogInfo,
    LogStreamError,
    PartialLogMetadata,
    decode_entry,
    encode_entry,
    read_entries,
)
from tests._sdk_helpers import RawClient, wait_for
from tests.conftest import build_go_program

ENTRIES = [
    LogEntry(source="stdout", time_nano=1_700_000_000_123_456_789, line=b"hello"),
    LogEntry(source="stderr", time_nano=1, line=b""),
    LogEntry(),
    LogEntry(source="stdout", time_nano=-5, line=b"\x00\xff" * 9000, partial=True),
    LogEntry(
        source="stdout",
        time_nano=42,
        line=b"piece",
        partial=True,
        partial_log_metadata=PartialLogMetadata(last=True, id="abc", ordinal=2),
    ),
    LogEntry(line=b"x", partial_log_metadata=PartialLogMetadata(ordinal=-3)),
]


def _frames(entries: list[LogEntry]) -> bytes:
    return b"".join(encode_entry(e) for e in entries)


# -- the stream format -------------------------------------------------------------


def test_encoding_is_protobuf_behind_a_big_endian_length() -> None:
    """An entry is its protobuf size (4 bytes, big-endian), then the fields in order."""
    data = encode_entry(LogEntry(source="stdout", time_nano=300, line=b"hi", partial=True))
    assert data == b"\x00\x00\x00\x11" + (
        b"\x0a\x06stdout"  # 1: source
        b"\x10\xac\x02"  # 2: time_nano 300
        b"\x1a\x02hi"  # 3: line
        b"\x20\x01"  # 4: partial
    )
    assert encode_entry(LogEntry()) == b"\x00\x00\x00\x00"


def test_read_entries_gives_back_what_was_encoded() -> None:
    """A stream of several entries, read in 64 KiB pieces, gives the same entries."""
    assert list(read_entries(io.BytesIO(_frames(ENTRIES)))) == ENTRIES


_entries = st.builds(
    LogEntry,
    source=st.sampled_from(["", "stdout", "stderr", "é"]),
    time_nano=st.integers(-(2**63), 2**63 - 1),
    line=st.binary(max_size=300),
    partial=st.booleans(),
    partial_log_metadata=st.none()
    | st.builds(
        PartialLogMetadata,
        last=st.booleans(),
        id=st.text(max_size=10),
        ordinal=st.integers(-(2**31), 2**31 - 1),
    ),
)


@settings(max_examples=200, deadline=None)
@given(_entries)
def test_any_entry_round_trips(entry: LogEntry) -> None:
    """decode_entry(encode_entry(e)) == e for every entry."""
    assert decode_entry(encode_entry(entry)[4:]) == entry


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decoding_any_bytes_fails_cleanly(data: bytes) -> None:
    """Arbitrary bytes decode to an entry or raise LogStreamError; a decoded one re-encodes."""
    try:
        entry = decode_entry(data)
    except LogStreamError:
        return
    assert decode_entry(encode_entry(entry)[4:]) == entry


def test_unknown_fields_are_skipped() -> None:
    """Fields a newer engine adds (any wire type) are skipped."""
    message = (
        b"\x0a\x06stdout"
        b"\x30\x07"  # 6: varint
        b"\x39"
        + b"\x00" * 8  # 7: fixed64
        + b"\x42\x03abc"  # 8: bytes
        + b"\x4d"
        + b"\x00" * 4  # 9: fixed32
        + b"\x1a\x02ok"
    )
    assert decode_entry(message) == LogEntry(source="stdout", line=b"ok")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x00\x05\x0a\x03ab", "the log stream ends in the middle of an entry (8 bytes)"),
        (b"\x00\x00", "the log stream ends in the middle of an entry (2 bytes)"),
        (
            b"\x01\x00\x00\x01",
            "a log entry claims 16777217 bytes, more than the 1048576 allowed",
        ),
        (b"\x00\x00\x00\x02\x0a\x05", "log entry: a field runs past the end of the message"),
        (b"\x00\x00\x00\x01\x80", "log entry: a number runs past the end of the message"),
        (b"\x00\x00\x00\x02\x33\x00", "log entry: unsupported protobuf wire type 3"),
        (b"\x00\x00\x00\x02\x08\x01", "log entry: field source has wire type 0"),
        (
            b"\x00\x00\x00\x0b\x10" + b"\xff" * 10,
            "log entry: a number is longer than ten bytes",
        ),
    ],
)
def test_malformed_streams_name_the_problem(data: bytes, message: str) -> None:
    """A truncated, oversized or corrupt stream raises LogStreamError saying what is wrong."""
    with pytest.raises(LogStreamError) as raised:
        list(read_entries(io.BytesIO(data)))
    assert str(raised.value) == message


def test_source_that_is_not_utf8_is_refused() -> None:
    """A text field with invalid UTF-8 is a LogStreamError."""
    with pytest.raises(LogStreamError, match=r"^log entry: a text field is not UTF-8: "):
        decode_entry(b"\x0a\x01\xff")


GO_PEER = r"""
package main

import (
	"encoding/json"
	"io"
	"os"

	"github.com/docker/docker/api/types/plugins/logdriver"
)

func main() {
	if os.Args[1] == "encode" {
		var entries []logdriver.LogEntry
		if err := json.NewDecoder(os.Stdin).Decode(&entries); err != nil {
			panic(err)
		}
		enc := logdriver.NewLogEntryEncoder(os.Stdout)
		for i := range entries {
			if err := enc.Encode(&entries[i]); err != nil {
				panic(err)
			}
		}
		return
	}
	dec := logdriver.NewLogEntryDecoder(os.Stdin)
	out := []logdriver.LogEntry{}
	for {
		var e logdriver.LogEntry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			panic(err)
		}
		out = append(out, e)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""


def _go_json(entry: LogEntry) -> dict[str, Any]:
    """The entry as Go's generated struct marshals to JSON (omitempty everywhere)."""
    data: dict[str, Any] = {}
    if entry.source:
        data["source"] = entry.source
    if entry.time_nano:
        data["time_nano"] = entry.time_nano
    if entry.line:
        data["line"] = base64.b64encode(entry.line).decode()
    if entry.partial:
        data["partial"] = True
    meta = entry.partial_log_metadata
    if meta is not None:
        data["partial_log_metadata"] = {
            k: v for k, v in (("last", meta.last), ("id", meta.id), ("ordinal", meta.ordinal)) if v
        }
    return data


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_program(GO_PEER, tmp_path_factory.mktemp("go"), "logpeer")


@pytest.mark.go
@pytest.mark.slow
def test_docker_decodes_our_stream(go_peer: Path) -> None:
    """Docker's own Go decoder reads the entries pluginkit encodes."""
    result = subprocess.run(
        [str(go_peer), "decode"], input=_frames(ENTRIES), capture_output=True, check=True
    )
    assert json.loads(result.stdout) == [_go_json(e) for e in ENTRIES]


@pytest.mark.go
@pytest.mark.slow
def test_we_decode_dockers_stream(go_peer: Path) -> None:
    """pluginkit reads the entries Docker's own Go encoder writes, byte for byte the same."""
    result = subprocess.run(
        [str(go_peer), "encode"],
        input=json.dumps([_go_json(e) for e in ENTRIES]).encode(),
        capture_output=True,
        check=True,
    )
    assert result.stdout == _frames(ENTRIES)
    assert list(read_entries(io.BytesIO(result.stdout))) == ENTRIES


# -- LogDriver on real FIFOs ---------------------------------------------------------


class Collector(LogDriver):
    def __init__(self) -> None:
        self.got: list[tuple[str, LogEntry]] = []

    def log(self, info: LogInfo, entry: LogEntry) -> None:
        if entry.line == b"boom":
            raise RuntimeError("boom")
        self.got.append((info.container_id, entry))


class Reader(Collector):
    def read_logs(self, request: logdriver.ReadLogsRequest) -> Iterator[LogEntry]:
        for container_id, entry in self.got:
            if container_id == request.info.container_id:
                yield entry


@pytest.fixture
def engine_fifo(short_tmp: Path) -> Iterator[tuple[Path, int]]:
    """A FIFO opened the way the engine opens it (read-write, non-blocking)."""
    path = short_tmp / "fifo"
    os.mkfifo(path, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield path, fd
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write to the non-blocking FIFO as the engine does: wait while the pipe is full."""
    view = memoryview(data)
    while view:
        _, writable, _ = select.select([], [fd], [], 10)
        assert writable, "the FIFO stayed full: nobody reads it"
        with contextlib.suppress(BlockingIOError):
            view = view[os.write(fd, view) :]


def _serve(driver: LogDriver, short_tmp: Path) -> tuple[PluginServer, RawClient]:
    server = driver.server()
    server.start(short_tmp / "log.sock")
    return server, RawClient(short_tmp / "log.sock")


def test_entries_reach_log_in_order_until_stop(
    engine_fifo: tuple[Path, int], short_tmp: Path
) -> None:
    """StartLogging follows the FIFO; entries written before StopLogging all reach log()."""
    path, fd = engine_fifo
    driver = Collector()
    server, client = _serve(driver, short_tmp)
    with server, client:
        assert client.call("Plugin.Activate").json() == {"Implements": ["LogDriver"]}
        start = {"File": str(path), "Info": {"ContainerID": "c1", "ContainerName": "/web"}}
        assert client.call("LogDriver.StartLogging", start).json() == {}
        assert driver.following() == [str(path)]
        _write_all(fd, encode_entry(ENTRIES[0]))
        wait_for(lambda: len(driver.got) == 1)
        # the rest is written at once, right before StopLogging, as the engine does
        _write_all(fd, _frames(ENTRIES[1:]))
        assert client.call("LogDriver.StopLogging", {"File": str(path)}).json() == {}
        wait_for(lambda: driver.following() == [])
    assert driver.got == [("c1", e) for e in ENTRIES]


def test_a_failing_log_does_not_stop_the_stream(
    engine_fifo: tuple[Path, int], short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in log() is logged; later entries are still delivered."""
    path, fd = engine_fifo
    driver = Collector()
    server, client = _serve(driver, short_tmp)
    with server, client:
        client.call("LogDriver.StartLogging", {"File": str(path), "Info": {"ContainerID": "c"}})
        with caplog.at_level(logging.ERROR, logger="pluginkit.sdk"):
            _write_all(fd, _frames([LogEntry(line=b"boom"), LogEntry(line=b"after")]))
            wait_for(lambda: len(driver.got) == 1)
        client.call("LogDriver.StopLogging", {"File": str(path)})
        wait_for(lambda: driver.following() == [])
    assert driver.got == [("c", LogEntry(line=b"after"))]
    assert "LogDriver.log failed for c" in caplog.text


def test_a_corrupt_stream_is_drained_and_logged(
    engine_fifo: tuple[Path, int], short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a corrupt frame the rest is read and dropped (the writer never blocks)."""
    path, fd = engine_fifo
    driver = Collector()
    server, client = _serve(driver, short_tmp)
    with server, client, caplog.at_level(logging.ERROR, logger="pluginkit.sdk"):
        client.call("LogDriver.StartLogging", {"File": str(path), "Info": {"ContainerID": "c"}})
        _write_all(fd, encode_entry(LogEntry(line=b"ok")) + b"\xff\xff\xff\xff")
        wait_for(lambda: "is malformed" in caplog.text)
        # more than a pipe holds (64 KiB): without draining this write would fail
        _write_all(fd, b"\x00" * 160 * 1024)
        client.call("LogDriver.StopLogging", {"File": str(path)})
        wait_for(lambda: driver.following() == [])
    assert driver.got == [("c", LogEntry(line=b"ok"))]
    assert (
        f"log stream {path} is malformed, dropping the rest: a log entry claims "
        "4294967295 bytes, more than the 1048576 allowed"
    ) in caplog.text


def test_start_logging_errors(engine_fifo: tuple[Path, int], short_tmp: Path) -> None:
    """A FIFO already followed, or one that is not there, answers 500 with the reason."""
    path, _ = engine_fifo
    server, client = _serve(Collector(), short_tmp)
    with server, client:
        start = {"File": str(path), "Info": {"ContainerID": "c"}}
        assert client.call("LogDriver.StartLogging", start).status == 200
        again = client.call("LogDriver.StartLogging", start)
        assert (again.status, again.json()) == (
            500,
            {"Err": f"a logger for {path} already exists"},
        )
        missing = client.call("LogDriver.StartLogging", {"File": str(short_tmp / "nope")})
        assert (missing.status, missing.json()) == (
            500,
            {"Err": f"cannot open the log stream {short_tmp / 'nope'}: No such file or directory"},
        )
        bad = client.call("LogDriver.StartLogging", {"Info": {}})
        assert bad.status == 400
        client.call("LogDriver.StopLogging", {"File": str(path)})
        # stopping what is not followed is not an error (the engine retries nothing)
        assert client.call("LogDriver.StopLogging", {"File": "/nowhere"}).json() == {}


def test_capabilities_follow_read_logs(short_tmp: Path) -> None:
    """Capabilities says ReadLogs exactly when the driver implements read_logs."""
    server, client = _serve(Collector(), short_tmp)
    with server, client:
        assert client.call("LogDriver.Capabilities").json() == {"Cap": {"ReadLogs": False}}
        assert client.call("LogDriver.ReadLogs", {}).status == 404
    assert Reader().capabilities() == logdriver.CapabilitiesResponse(
        logdriver.LogCapability(read_logs=True)
    )


def test_read_logs_streams_entries(short_tmp: Path) -> None:
    """ReadLogs replies with the entry stream (chunked), readable by read_entries."""
    driver = Reader()
    driver.got = [("c1", ENTRIES[0]), ("c2", ENTRIES[1]), ("c1", ENTRIES[4])]
    server = driver.server()
    server.start(short_tmp / "log.sock")
    with server, Client(server.address) as client:
        request = {"Info": {"ContainerID": "c1"}, "Config": {"Tail": -1, "Follow": False}}
        with client.stream("LogDriver.ReadLogs", request) as body:
            assert list(read_entries(body)) == [ENTRIES[0], ENTRIES[4]]


def test_containers_started_at_once_in_threads_mode(short_tmp: Path) -> None:
    """With a thread pool, StartLogging calls arriving together each get their follower."""
    driver = Collector()
    paths = [short_tmp / f"fifo{n}" for n in range(8)]
    ends = []
    for path in paths:
        os.mkfifo(path, 0o700)
        ends.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))
    server = driver.server(threads=4)
    server.start(short_tmp / "log.sock")
    clients = [RawClient(short_tmp / "log.sock") for _ in paths]
    try:
        for n, (client, path) in enumerate(zip(clients, paths, strict=True)):
            start = {"File": str(path), "Info": {"ContainerID": f"c{n}"}}
            client.send(client.request_bytes("LogDriver.StartLogging", json.dumps(start).encode()))
        assert [c.read_reply().status for c in clients] == [200] * len(paths)
        assert driver.following() == sorted(str(p) for p in paths)
        for n, end in enumerate(ends):
            _write_all(end, encode_entry(LogEntry(line=f"line {n}".encode())))
        wait_for(lambda: len(driver.got) == len(paths))
        assert sorted(driver.got) == sorted(
            (f"c{n}", LogEntry(line=f"line {n}".encode())) for n in range(len(paths))
        )
        for client, path in zip(clients, paths, strict=True):
            assert client.call("LogDriver.StopLogging", {"File": str(path)}).json() == {}
        wait_for(lambda: driver.following() == [])
    finally:
        for client in clients:
            client.close()
        server.stop()
        for end in ends:
            os.close(end)


def test_a_stream_that_cannot_be_read_ends_its_follower(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A File that opens but fails to read (a directory) is logged; its follower ends."""
    driver = Collector()
    server, client = _serve(driver, short_tmp)
    directory = short_tmp / "not-a-fifo"
    directory.mkdir()
    with server, client, caplog.at_level(logging.ERROR, logger="pluginkit.sdk"):
        start = {"File": str(directory), "Info": {"ContainerID": "c"}}
        assert client.call("LogDriver.StartLogging", start).json() == {}
        wait_for(lambda: driver.following() == [])
    assert f"cannot read the log stream {directory}: [Errno 21] Is a directory" in caplog.text
    assert driver.got == []
